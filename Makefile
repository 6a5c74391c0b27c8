# Two commands on a fresh machine with only python3 and make: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ELIGEX := $(BIN)/eligex
SHARED := ../shared/data

.PHONY: demo test test-llm install bench vocab lock wheel clean

install: $(VENV)/.installed

# Exact versions of every dependency come from requirements.lock; the project itself is editable.
$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

demo: install
	$(ELIGEX) import examples/trials evals/records
	$(ELIGEX) extract --all
	$(ELIGEX) eval --split test --out reports/demo
	@echo
	@echo "The structured eligibility of the seed trial (all of it: structured/NCT06450314.json):"
	@$(ELIGEX) show NCT06450314
	@echo
	@echo "Raw records:        raw/"
	@echo "Structured records: structured/"
	@echo "Database:           eligex.duckdb"
	@echo "Eval report:        reports/demo/report.md (and report.html)"
	@echo
	@echo "Review the extractions, correct them and turn them into gold files (Ctrl+C stops it):"
	@echo "  .venv/bin/eligex review    # serves http://127.0.0.1:8765/ on this workspace"

# The browser test needs Debian's chromium; install it when missing (CI runs as root).
test: install
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	$(BIN)/python -m pytest

# The openai backend against a real server: llama-cpp-python's, running Gemma 3 270M on the CPU.
# Both are installed once per machine into ~/.cache/eligex-llm (ELIGEX_LLM_CACHE; see tests/local_llm.py).
# The first time builds llama.cpp from source: about an hour on 2 busy cores; then minutes per run.
test-llm: install
	$(BIN)/python tests/local_llm.py install
	ELIGEX_REAL_LLM=1 $(BIN)/python -m pytest tests/test_real_llm.py

# The wheel, built offline with the pinned setuptools (dist/).
wheel: install
	$(BIN)/python -m pip wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation --no-index -w dist .

bench: install
	$(BIN)/python bench/run.py

# Rebuild extract/rules/vocab/built/ from ../shared/data/vocab-sources (by hand; the result is committed).
vocab: install
	$(BIN)/python -m extract.rules.vocab_build

# Refresh requirements.lock after changing dependencies in pyproject.toml.
lock:
	rm -rf /tmp/eligex-lock && $(PYTHON) -m venv /tmp/eligex-lock
	/tmp/eligex-lock/bin/pip install --quiet -e '.[test]'
	/tmp/eligex-lock/bin/pip freeze --all --exclude-editable | grep -v '^pip==' > requirements.lock  # --all: setuptools too

clean:
	rm -rf $(VENV) build dist raw/clinicaltrials.gov raw/local structured/*.json eligex.duckdb reports
