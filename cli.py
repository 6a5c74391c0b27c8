"""eligex: clinical-trial eligibility criteria to structured, evidence-grounded JSON.

Data goes to stdout, diagnostics and progress to stderr. Exit codes: 0 success, 1 some records
failed (each named on stderr), 2 bad input or usage (a busy, full or read-only workspace too), 3 an
upstream service failed, 130 interrupted, 141 the reader of stdout closed it (`| head`).
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import sys
from pathlib import Path

import click
import duckdb

from extract.display import Progress, iso, print_table
from extract.errors import EligexError, InputError, log, one_line, redact
from extract.export import FORMATS, TABLES
from extract.review import DEFAULT_PORT
from extract.store import Workspace
from schemas import EligibilityRecord, normalise_nct_id

SCHEMA_FILE = Path(__file__).parent / "schemas" / "eligibility-record.schema.json"


def record_json_schema() -> dict:
    return EligibilityRecord.model_json_schema()


def progress(length: int | None, label: str) -> Progress:
    """Progress on stderr: a bar on a terminal, else a line every few seconds (extract/display.py)."""
    return Progress(length, label)


def run_async(coroutine, uses=None):
    """Run `coroutine`; then close the HTTP client that `uses` (a backend, or a client) holds, in the
    same event loop: its pooled connections would otherwise be cleaned up after the loop is gone."""

    async def main():
        try:
            return await coroutine
        finally:
            close = getattr(getattr(uses, "client", uses), "close", None)
            if asyncio.iscoroutinefunction(close):
                await close()

    return asyncio.run(main())


def fail_if(failures: list[str] | dict[str, str]) -> None:
    """Name every failure on stderr and exit 1 if there was any."""
    lines = failures if isinstance(failures, list) else [f"{k}: {v}" for k, v in failures.items()]
    for line in lines:
        click.echo(f"failed: {line}", err=True)
    if lines:
        sys.exit(1)


class _Notices(logging.Handler):
    """eligex's notices (retries) on stderr, as `warning: ...` lines; resolved when said, so that
    it follows stderr wherever it goes (click's test runner swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"{record.levelname.lower()}: {record.getMessage()}", err=True)


def warn(lines: list[str]) -> None:
    for line in lines:
        click.echo(f"warning: {line}", err=True)


# Failures of the workspace's storage, not of eligex: a full disk, a read-only or forbidden folder.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


class Eligex(click.Group):
    def invoke(self, ctx):
        try:
            result = super().invoke(ctx)
            sys.stdout.flush()  # a closed pipe shows here, not at exit
            return result
        except BrokenPipeError:
            # The reader of stdout stopped (`| head`): nothing more is wanted, and nothing is left to flush.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)
        except EligexError as error:
            click.echo(f"Error: {redact(str(error))}", err=True)
            sys.exit(error.exit_code)
        except KeyboardInterrupt:
            work = Progress.latest
            where = f" at {work.where()} ({work.label})" if work else ""
            run = f"; run {work.run_id} is marked interrupted" if work and work.run_id else ""
            click.echo(f"\ninterrupted{where}{run}; what was stored stays, and running again goes on", err=True)
            sys.exit(130)
        except OSError as error:
            if error.errno not in STORAGE_ERRNOS:
                raise
            where = f": {error.filename}" if error.filename else ""
            root = ctx.obj.root if isinstance(ctx.obj, Workspace) else None
            if error.filename and root and not Path(error.filename).resolve().is_relative_to(root):
                click.echo(f"Error: cannot use {error.filename}: {error.strerror}", err=True)
            else:
                click.echo(f"Error: cannot write to the workspace ({error.strerror}{where})", err=True)
            sys.exit(2)
        except duckdb.Error as error:  # DuckDB says a storage failure in its own words, within its own errors
            if not any(os.strerror(number) in str(error) for number in STORAGE_ERRNOS):
                raise
            click.echo(f"Error: cannot write to the workspace database ({one_line(str(error))})", err=True)
            sys.exit(2)


@click.group(cls=Eligex)
@click.option(
    "--workspace",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="ELIGEX_WORKSPACE",
    default=".",
    show_default=True,
    help="Folder holding raw/, structured/ and eligex.duckdb (env ELIGEX_WORKSPACE).",
)
@click.version_option(package_name="eligex")
@click.pass_context
def main(ctx: click.Context, workspace: Path) -> None:
    """Turn clinical-trial eligibility criteria into structured, evidence-grounded JSON.

    Typical use: `eligex import FILES...` or `eligex fetch --cond ...`, then `eligex extract --all`,
    then `eligex eval`.
    """
    if not any(isinstance(handler, _Notices) for handler in log.handlers):
        log.addHandler(_Notices())
        log.setLevel(logging.INFO)
    ctx.obj = Workspace(workspace)


@main.command(name="import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.pass_obj
def import_command(workspace: Workspace, paths: tuple[Path, ...]) -> None:
    """Import trial records from files or folders.

    Reads ClinicalTrials.gov API v2 study JSON, v2 pages {"studies": [...]}, JSONL of studies,
    classic XML (<clinical_study>), the flat 2026 export, and plain JSONL or CSV rows with
    nct_id, title, conditions, eligibility_text, sex, minimum_age, maximum_age; and ZIP archives
    of such files (the registry's full download), read from the archive, resumed after a crash.
    A file that cannot be read is reported with its reason and the rest goes on; exit code 1 if
    any failed.
    """
    from extract.importer import archive_members, files_under, import_files

    files = files_under(paths)
    # A step per file, and per member of a ZIP archive (the registry's full download: one study each).
    steps = sum(len(archive_members(path)) if path.suffix.lower() == ".zip" else 1 for path in files)
    with workspace.writing():
        with progress(steps, "importing") as bar:
            summary = import_files(workspace, files, on_file=lambda path: bar.update(1), on_member=bar.update,
                                   on_note=lambda line: click.echo(line, err=True))  # fmt: skip
    warn(summary.warnings)
    click.echo(f"imported {len(files)} files into {workspace.root}: {summary.line()}", err=True)
    fail_if(summary.failures)


def options(*decorators):
    """Several click options as one decorator, in the order given (one definition for every command using them)."""

    def apply(command):
        for decorator in reversed(decorators):
            command = decorator(command)
        return command

    return apply


SEARCH_OPTIONS = options(
    click.option("--cond", help="Search: condition or disease (query.cond)."),
    click.option("--term", help="Search: any words (query.term)."),
    click.option("--intr", help="Search: intervention or treatment (query.intr)."),
    click.option("--status", "statuses", multiple=True, help="Search: overall status(es), e.g. RECRUITING; comma list."),
    click.option("--phase", "phases", multiple=True, help="Search: phase(s), e.g. PHASE2,PHASE3; comma list."),
)
REGISTRY_OPTIONS = options(
    click.option("--page-size", type=click.IntRange(1, 1000), default=100, show_default=True, help="Search: studies per request."),
    click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=50, show_default=True, help="Requests per minute."),
    click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=30, show_default=True,
                 help="Seconds for a whole answer, per attempt."),
)  # fmt: skip


EXTRACTION_OPTIONS = options(
    click.option("--model", help="LLM model name (openai backend); default from ELIGEX_MODEL."),
    click.option("--concurrency", type=click.IntRange(1, 256), default=8, show_default=True,
                 help="Trials extracted at once: requests in flight for the openai backend; the hybrid packs up to ELIGEX_PACK_TRIALS of them a request."),
    click.option("--workers", type=click.IntRange(1, 256), default=os.cpu_count() or 1, show_default="the number of cores",
                 help="Processes extracting at once, for the rules backend."),
)  # fmt: skip


def search_of(cond, term, intr, statuses, phases, updated_since=None):
    """The registry search the options describe (extract/fetch.py's `Search`)."""
    from extract.fetch import Search, comma_list

    return Search(cond=cond, term=term, intr=intr, statuses=tuple(comma_list(statuses)),
                  phases=tuple(comma_list(phases)), updated_since=updated_since.date() if updated_since else None)  # fmt: skip


def registry_settings(rate: float, timeout: float):
    from extract.fetch import DEFAULT_URL, Settings

    return Settings(base_url=os.environ.get("ELIGEX_CTGOV_URL") or DEFAULT_URL, rate=rate, timeout=timeout)


@main.command()
@click.option("--nct", "nct_ids", multiple=True, help="Study id(s) to fetch; repeat or give a comma list.")
@SEARCH_OPTIONS
@click.option("--updated-since", type=click.DateTime(["%Y-%m-%d"]), help="Search: last updated on or after this date.")
@click.option("--limit", type=click.IntRange(min=1), help="Search: stop after this many studies.")
@REGISTRY_OPTIONS
@click.pass_obj
def fetch(workspace: Workspace, nct_ids, cond, term, intr, statuses, phases, updated_since, limit, page_size, rate,
          timeout) -> None:  # fmt: skip
    """Fetch studies from the ClinicalTrials.gov API v2 (env ELIGEX_CTGOV_URL) by id or by search.

    Studies are stored as `import` stores them: one whose content is unchanged is not rewritten.
    Requests are spaced to --rate and retried on 429, 5xx, timeouts and broken connections. An id
    that is unknown, cannot be had or comes back as another study is named and the rest goes on
    (exit code 1); a stored study the registry answers 404 for is marked removed from the registry
    (`show` says so, `export` leaves it out). A search page that cannot be had ends the search (exit
    code 3), keeping what was stored before it. A search ends at --limit, at the registry's total
    count, or at a page that brings no new study. A registry that cannot be reached stops the fetch
    at once (exit code 3).
    """
    from extract.fetch import comma_list, fetch_ids, fetch_search

    settings = registry_settings(rate, timeout)
    ids = comma_list(nct_ids)
    search = search_of(cond, term, intr, statuses, phases, updated_since)
    if ids and search.params():
        raise InputError("fetch by --nct ids or by search options, not both")
    if not ids and not search.params() and not limit:
        raise InputError("name studies (--nct) or search (--cond, --term, --intr, --status, --phase, --updated-since)")
    ids = nct_ids_of(ids)
    with workspace.writing():
        with progress(len(ids) or limit, "fetching") as bar:  # a search's total is known from its first page
            if ids:
                summary = asyncio.run(fetch_ids(workspace, ids, settings, bar.advance_to))
            else:
                summary = asyncio.run(fetch_search(workspace, search, settings, limit, page_size, bar.advance_to))
    warn(summary.warnings)
    click.echo(f"fetched into {workspace.root}: {summary.line()}", err=True)
    fail_if(summary.failures)


@main.command()
@SEARCH_OPTIONS
@REGISTRY_OPTIONS
@click.option("--backend", type=click.Choice(["rules", "openai", "hybrid"]), default="rules", show_default=True,
              help="The backend that extracts the changed trials.")
@EXTRACTION_OPTIONS
@click.option("--full", is_flag=True, help="Search everything again, not only what changed since the mark; studies "
              "found before and no longer are asked for by id (404: marked removed).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object instead of a line.")
@click.pass_obj
def sync(workspace: Workspace, cond, term, intr, statuses, phases, page_size, rate, timeout, backend, model,
         concurrency, workers, full, as_json) -> None:  # fmt: skip
    """Fetch the studies a search finds that changed since its last sync, then extract them.

    The search's mark (the latest last-update date of the studies it stored, in the database)
    is sent as the registry's last-update filter, inclusive; the first sync of a search fetches all
    of it. The mark advances with each page stored, so a sync that stops (exit code 3 when the
    registry fails) goes on from there when run again, and the trials it stored are extracted
    then. Withdrawn studies are counted. A whole search (the first sync, --full) asks by id for the
    studies it found before and no longer finds: those the registry answers 404 for are marked
    removed. The summary goes to stdout (--json: one object).
    """
    from extract import sync as syncing

    search = search_of(cond, term, intr, statuses, phases)
    if not search.params():
        raise InputError("name the search to sync (--cond, --term, --intr, --status, --phase)")
    settings = registry_settings(rate, timeout)
    chosen = make_backend(backend, model, workspace)
    with workspace.writing():
        with progress(None, "syncing") as bar:
            result = asyncio.run(syncing.sync_search(workspace, search, settings, page_size, bar.advance_to, full))
        fetched = result.summary
        warn(fetched.warnings)
        since = f"updated since {result.since}" if result.since else "of the whole search"
        click.echo(f"fetched the studies {since} into {workspace.root}: {fetched.line()}", err=True)
        changed = syncing.changed(workspace, result)
        extracted = extract_trials(workspace, chosen, changed, workers=workers, concurrency=concurrency, skip_if_none=True)
        if extracted is not None:
            say_extracted(workspace, chosen, extracted)
        withdrawn = workspace.withdrawn(changed)
        syncing.finished(workspace, result)
    report = {
        "search": json.loads(search.key()), "since": result.since.isoformat() if result.since else None,
        "mark": result.mark.isoformat() if result.mark else None, "new": fetched.new, "changed": fetched.changed,
        "unchanged": fetched.unchanged, "failed": len(fetched.failures), "withdrawn": withdrawn,
        "left_search": result.left, "removed": fetched.removed,
        "extracted": extracted.extracted if extracted else 0, "extraction_failed": len(extracted.failures) if extracted else 0,
        "run_id": extracted.run_id if extracted else None, "mark_held_back": result.held_back,
    }  # fmt: skip
    if as_json:
        click.echo(json.dumps(report))
    else:
        held = f" (held back: {result.held_back})" if result.held_back else ""
        click.echo(f"synced {search.key()}: {fetched.new} new, {fetched.changed} changed, {fetched.unchanged} unchanged, "
                   f"{len(fetched.failures)} failed; {len(withdrawn)} withdrawn, {len(fetched.removed)} removed; "
                   f"{report['extracted']} extracted, "
                   f"{report['extraction_failed']} failed; mark {report['mark'] or 'none'}{held}")  # fmt: skip
    fail_if(fetched.failures + [f"{i}: {reason}" for i, reason in (extracted.failures if extracted else {}).items()])


JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON for programs instead of a table.")


@main.command()
@click.argument("nct_id")
@JSON_OPTION
@click.pass_obj
def criteria(workspace: Workspace, nct_id: str, as_json: bool) -> None:
    """Print a stored trial's criteria (id, kind, offsets, text); --json: one JSON object per line."""
    from extract.display import criteria_table
    from extract.text import segment

    with workspace.writing():
        trial = _stored_trials(workspace, [nct_id])[0]
    criteria = segment(trial.eligibility_text)
    if as_json:
        for criterion in criteria:
            click.echo(criterion.model_dump_json())
    else:
        print_table(criteria_table(criteria))


@main.command()
@click.option("--check", is_flag=True, help=f"Exit 1 if {SCHEMA_FILE.name} differs from the models.")
@click.option("--patient", is_flag=True, help="The JSON Schema of the patient profile `eligex match` reads instead.")
@click.option("--format", "fmt", type=click.Choice(["json", "markdown"]), default="json", show_default=True,
              help="markdown: a field-by-field reference, the one in docs/ (record.md, patient.md).")
def schema(check: bool, patient: bool, fmt: str) -> None:
    """Print the JSON Schema of the structured record (the contract, version 1), or of the patient profile.

    \b
    Examples:
      eligex schema > schemas/eligibility-record.schema.json
      eligex schema --patient --format markdown > docs/patient.md
    """
    if check and (patient or fmt != "json"):
        raise click.UsageError(f"--check compares the record's JSON Schema with {SCHEMA_FILE.name} only")
    if patient:
        from schemas.patient import Patient

        model_schema, option = Patient.model_json_schema(), " --patient"
    else:
        model_schema, option = record_json_schema(), ""
    if fmt == "markdown":
        from schemas.reference import markdown_reference

        click.echo(markdown_reference(model_schema, option=f" {option.strip()}" if option else ""))
        return
    text = json.dumps(model_schema, indent=2) + "\n"
    if check:
        if not SCHEMA_FILE.exists() or SCHEMA_FILE.read_text() != text:
            raise click.ClickException(f"{SCHEMA_FILE} is out of date: run `eligex schema > {SCHEMA_FILE}`")
        return
    click.echo(text, nl=False)


@main.command(name="extract")
@click.argument("nct_ids", nargs=-1)
@click.option("--all", "all_trials", is_flag=True, help="Extract every stored trial.")
@click.option(
    "--backend",
    type=click.Choice(["rules", "openai", "hybrid"]),
    help="Default: openai when OPENAI_API_KEY or OPENAI_BASE_URL is set, else rules.",
)
@EXTRACTION_OPTIONS
@click.option("--force", is_flag=True, help="Extract again even when the current record is up to date.")
@click.option("--refresh", is_flag=True,
              help="Ask the LLM again instead of answering from its cache; the new answers replace the cached ones "
                   "(openai backend; implies --force).")  # fmt: skip
@click.pass_obj
def extract_command(workspace: Workspace, nct_ids, all_trials, backend, model, concurrency, workers, force, refresh) -> None:
    """Extract structured eligibility from stored trials into structured/<NCT>.json and the database.

    One trial's failure never stops the batch: it is stored with its reason and named at the end
    (exit code 1). Trials whose record is up to date (same content, same backend version) are
    skipped unless --force. The rules backend runs in --workers processes, the openai backend with
    --concurrency requests in flight.
    """
    _check_choice(nct_ids, all_trials)
    chosen = make_backend(backend, model, workspace, refresh=refresh)
    force = force or refresh
    with workspace.writing():
        named = _check_stored(workspace, list(nct_ids) or None)
        summary = extract_trials(workspace, chosen, named, force=force, workers=workers, concurrency=concurrency)
    say_extracted(workspace, chosen, summary)
    fail_if(summary.failures)


def extract_trials(workspace: Workspace, chosen, named: list[str] | None, *, force: bool = False, workers: int,
                   concurrency: int, skip_if_none: bool = False):  # fmt: skip
    """Extract the trials named (None: all) that are not up to date (unless `force`), with progress on
    stderr: the rules in `workers` processes, the LLM with `concurrency` requests in flight. The
    run's summary; None, and no run, when `skip_if_none` and every trial is up to date."""
    from extract.pipeline import new_run_id, plan, planned_trials, run_extraction, run_in_pool

    work = plan(workspace, chosen, named, force)
    if skip_if_none and not work.to_extract:
        return None
    if chosen.name == "rules":
        with progress(work.to_extract, f"extracting ({chosen.name})") as bar:
            bar.run_id = new_run_id(chosen)
            return run_in_pool(workspace, chosen, work, workers=workers, on_done=lambda _: bar.update(), run_id=bar.run_id)
    trials = planned_trials(workspace, chosen, work)
    announce(chosen, trials, work.skipped)  # its own progress first, then the run's
    with progress(work.to_extract, f"extracting ({chosen.name})") as bar:
        bar.run_id = new_run_id(chosen)
        return run_async(
            run_extraction(workspace, chosen, trials, skipped=work.skipped, concurrency=concurrency,
                           on_done=lambda _: bar.update(), run_id=bar.run_id),
            chosen,
        )  # fmt: skip


def say_extracted(workspace: Workspace, chosen, summary) -> None:
    """The run's one line (and its tokens and cost, if any) on stderr."""
    model_note = f", model {chosen.model}" if chosen.model else ""
    click.echo(
        f"backend {chosen.name}{model_note}, run {summary.run_id}: {summary.extracted} extracted, "
        f"{summary.skipped} up to date, {len(summary.failures)} failed; records in {workspace.structured_dir}",
        err=True,
    )
    if summary.input_tokens:
        click.echo(f"tokens: {summary.input_tokens} in, {summary.output_tokens} out; cost ${summary.cost_usd:.4f}", err=True)


def announce(backend, trials, up_to_date: int, price_factor: float = 1.0) -> None:
    """Before the first paid call: which backend and model will run, on how many trials (`trials`: the
    ones not up to date), at what cost."""
    if backend.name == "rules" or not os.environ.get("OPENAI_API_KEY"):
        return
    from extract.pipeline import estimate

    # The hybrid plans each trial first (the rules' reading of its criteria): minutes for 10,000 trials.
    with progress(len(trials), f"estimating ({backend.name})") as bar:
        cost = estimate(backend, trials, on_trial=bar.update)
    price = f"about ${cost.usd * price_factor:.2f}" if cost.usd is not None else f"unknown (no price for {backend.model} in the price table)"
    click.echo(
        f"backend {backend.name}, model {backend.model}: {cost.requests} requests for {cost.trials} trials "
        f"({cost.cached} answered from the cache, {up_to_date} up to date); estimated cost {price} "
        f"for about {cost.input_tokens:,} input and {cost.output_tokens:,} output tokens",
        err=True,
    )


def make_backend(name: str | None, model: str | None, workspace: Workspace | None = None, refresh: bool = False):
    """The backend asked for, or the default: the LLM when one is configured, else rules.

    Given a workspace, the LLM backend answers from the workspace's cache (extract/cache.py);
    `refresh` asks it again instead. The rules backend has no cache: `refresh` is a usage error.
    """
    if name is None:
        name = "openai" if os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL") else "rules"
    if name == "rules":
        if refresh:
            raise InputError("--refresh asks the LLM again instead of its cache: the rules backend has no cache "
                             "(use --force to extract again)")  # fmt: skip
        from extract.rules import RulesBackend

        return RulesBackend()
    from extract.cache import CachedBackend
    from extract.llm import OpenAIBackend

    llm = OpenAIBackend.from_environment(model=model)
    if name == "hybrid":  # the rules draft, confirmed, corrected or completed by the model (extract/hybrid.py)
        from extract.hybrid import HybridBackend
        from extract.rules import RulesBackend

        llm = HybridBackend.from_environment(RulesBackend(), llm)
    return llm if workspace is None else CachedBackend(llm, workspace, refresh=refresh)


@main.group(name="batch")
def batch_group() -> None:
    """Extract through the provider's Batch API: half the price, answers within 24 hours.

    `submit` sends the trials, `status` follows the batch, `collect` stores the records as
    `extract` does (and fills the LLM cache). Needs OPENAI_API_KEY or OPENAI_BASE_URL.
    """


@batch_group.command(name="submit")
@click.argument("nct_ids", nargs=-1)
@click.option("--all", "all_trials", is_flag=True, help="Submit every stored trial.")
@click.option("--model", help="LLM model name; default from ELIGEX_MODEL.")
@click.option("--force", is_flag=True, help="Submit again even when the current record is up to date.")
@click.pass_obj
def batch_submit(workspace: Workspace, nct_ids, all_trials, model, force) -> None:
    """Write, upload and create a batch for the trials that need a request; print it (JSON).

    Up-to-date trials are skipped (unless --force) and trials whose answer is cached are extracted
    at once. Running it again after a crash resumes the unfinished submission of the same requests.
    """
    from extract import batch
    from extract.llm import OpenAIBackend

    _check_choice(nct_ids, all_trials)
    with workspace.writing():
        llm = OpenAIBackend.from_environment(model=model)
        trials = _stored_trials(workspace, list(nct_ids) or None)
        if os.environ.get("OPENAI_API_KEY"):
            from extract.cache import CachedBackend
            from extract.pipeline import up_to_date

            done = set() if force else up_to_date(workspace, llm)
            announce(CachedBackend(llm, workspace), [t for t in trials if t.nct_id not in done], len(done),
                     price_factor=batch.BATCH_PRICE_FACTOR)  # fmt: skip
        report = run_async(batch.submit(workspace, llm, trials, force=force), llm)
    click.echo(json.dumps(report))


@batch_group.command(name="status")
@click.argument("ref", metavar="[BATCH_OR_RUN]", required=False)
@click.option("--wait", is_flag=True, help="Poll until the batch is finished.")
@click.option("--interval", type=click.FloatRange(min=0, min_open=True), default=60, show_default=True,
              help="Seconds between polls with --wait.")  # fmt: skip
@click.pass_obj
def batch_status(workspace: Workspace, ref, wait, interval) -> None:
    """Print a batch's state and request counts (JSON); default: the newest batch."""
    from extract import batch
    from extract.llm import OpenAIBackend

    def show_progress(report: dict) -> None:
        if not report["batch_id"]:
            click.echo(f"run {report['run_id']}: {report['state']}, not submitted yet; "
                       "run `eligex batch submit` again with the same trials to resume", err=True)  # fmt: skip
            return
        counts = report["request_counts"] or {}
        done = counts.get("completed", 0) + counts.get("failed", 0)
        click.echo(f"batch {report['batch_id']}: {report['state']}, {done}/{counts.get('total', '?')} done", err=True)

    client = OpenAIBackend.from_environment().client
    report = run_async(batch.watch(workspace, client, ref, wait=wait, interval=interval, on_poll=show_progress), client)
    click.echo(json.dumps(report))


@batch_group.command(name="collect")
@click.argument("ref", metavar="[BATCH_OR_RUN]", required=False)
@click.pass_obj
def batch_collect(workspace: Workspace, ref) -> None:
    """Download a finished batch's output and errors and store its records (default: the newest batch).

    A failed request is named with its reason (exit code 1); an expired or cancelled batch keeps
    what completed. Collecting again does nothing.
    """
    from extract import batch
    from extract.llm import OpenAIBackend

    with workspace.writing():
        row = batch.find(workspace, ref)
        llm = OpenAIBackend.from_environment(model=row["model"])
        summary = run_async(batch.collect(workspace, llm, row), llm)
    if summary is None:
        click.echo(f"batch {row['batch_id']} (run {row['run_id']}) was collected already", err=True)
        return
    click.echo(json.dumps(summary.as_dict()))
    click.echo(f"run {summary.run_id}: {summary.extracted} extracted, {len(summary.failures)} failed; "
               f"cost ${summary.cost_usd:.4f} (batch price)", err=True)  # fmt: skip
    fail_if(summary.failures)


@main.command()
@click.argument("nct_id")
@click.option(
    "--part",
    type=click.Choice(["eligibility", "criteria", "extraction", "trial", "source"]),
    help="Print only this part of the record (JSON).",
)
@click.option("--format", "fmt", type=click.Choice(["card", "html"]),
              help="The trial card instead: card in Markdown, html a self-contained page.")  # fmt: skip
@JSON_OPTION
@click.pass_obj
def show(workspace: Workspace, nct_id: str, part: str | None, fmt: str | None, as_json: bool) -> None:
    """Print the current structured record of one trial: a table of its facts, --json the record, or
    --format its trial card."""
    from extract.display import record_table, registry_state

    [nct_id] = nct_ids_of([nct_id])
    record = workspace.current_record(nct_id)  # a file written whole: readable while another process works
    if record is None:
        raise InputError(f"no structured record for {nct_id}: run `eligex extract {nct_id}` first")
    state = registry_state(record.trial, workspace.removed(nct_id))
    if state:
        warn([f"{nct_id} is {state}"])
    if fmt:
        from extract.cards import render

        if part or as_json:
            raise InputError("--format prints the trial card; --part and --json print the record: pass one of them")
        click.echo(render(record, fmt), nl=False)
    elif as_json or part:
        document = record.model_dump(mode="json")
        click.echo(json.dumps(document[part] if part else document, indent=2, ensure_ascii=False))
    else:
        print_table(record_table(record, state))


@main.command(name="export")
@click.option("--out", required=True, help="File to write, or - for stdout; a folder for --format cards.")
@click.option("--format", "fmt", type=click.Choice([*FORMATS, "cards", "fhir", "ctml"]),
              help="Default: from --out's extension (x.parquet), else jsonl (csv for a long table). cards: each "
              "trial's card, NCT….md and NCT….html, in the folder --out. fhir: one FHIR R5 Bundle (JSON) of a "
              "ResearchStudy and its eligibility EvidenceVariable per trial. ctml: MatchMiner CTML, one JSON "
              "document per trial and line, with what CTML cannot state in its notes.")  # fmt: skip
@click.option("--table", type=click.Choice(TABLES), default="records", show_default=True,
              help="records: one per trial, nested as the contract; or one row per biomarker test, prior therapy or lab.")  # fmt: skip
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="Only records extracted on or after this date.")
@click.pass_obj
def export_command(workspace: Workspace, out: str, fmt: str | None, table: str, since) -> None:
    """Export the current structured records for downstream apps (the JSON Schema beside them) or analysts.

    Parquet and CSV columns are typed from the contract, so every export has the same columns.

    \b
    Examples:
      eligex export --out records.parquet
      eligex export --format fhir --out trials.fhir.json    # FHIR R5 Bundle, validated by fhir.resources
      eligex export --format ctml --out - | head -1         # CTML, validated by schemas/ctml.schema.json
    """
    from extract.export import Listed, choose_format, export, iter_current_records, write_schema

    fmt = choose_format(out, fmt, table)
    listed = Listed()  # what the export left out (removed studies) and kept marked (withdrawn ones)
    records = iter_current_records(workspace, since.date() if since else None, listed)  # one at a time: flat memory
    if fmt != "cards" and out != "-" and Path(out).is_dir():
        raise InputError(f"--out {out} is a folder: name the file to write")
    if fmt == "fhir":
        from extract.interop import write_fhir

        records = list(records)  # a FHIR Bundle holds every record
        write_fhir(records, out)
        said = f"exported {len(records)} records to {'stdout' if out == '-' else out} as {fmt}"
    elif fmt == "cards":
        from extract.cards import write_cards

        records = list(records)
        folder = Path(out)
        if out == "-" or (folder.exists() and not folder.is_dir()):
            raise InputError(f"--out {out} is a file: cards are written to a folder")
        write_cards(records, folder)
        said = f"wrote the cards of {len(records)} trial{'' if len(records) == 1 else 's'} to {out}"
    else:
        count = export(records, out, fmt, table)
        where = "stdout" if out == "-" else out
        beside = table == "records" and fmt != "ctml" and out != "-"  # the contract's schema, for contract records
        schema = f" (schema: {write_schema(out, record_json_schema())})" if beside else ""
        said = f"exported {count} records to {where} as {fmt}{'' if table == 'records' else f', table {table}'}{schema}"
    click.echo(said + (f"; {listed.line()}" if listed.line() else ""), err=True)


@main.command(name="match")
@click.argument("nct_ids", nargs=-1)
@click.option("--patient", "patient_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="The patient profile, JSON (`eligex schema --patient` describes it).")
@click.option("--all", "all_trials", is_flag=True, help="Match against every current record of the workspace.")
@click.option("--records", "records_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Read contract records from this folder (NCT*.json, e.g. structured/) instead of a workspace.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_obj
def match_command(workspace: Workspace, nct_ids, patient_file: Path, all_trials: bool, records_dir: Path | None,
                  fmt: str) -> None:  # fmt: skip
    """Check if a patient qualifies: each trial's verdict (eligible, ineligible, uncertain) and every
    requirement met, failed, unknown (the profile lacks the fact) or not assessed (not structured).

    \b
    Examples:
      eligex match --patient patient.json NCT06450314
      eligex match --patient patient.json --all --format json
      eligex match --patient patient.json --records structured/
    """
    from extract.export import Listed
    from extract.match import match_all
    from extract.match_io import load_patient, read_records, render_table

    patient = load_patient(patient_file)
    listed = Listed()  # the records of removed studies are left out, and said
    if records_dir is not None:
        if nct_ids or all_trials:
            raise InputError("give --records DIR, or trial ids / --all from the workspace, not both")
        records, failures = read_records(records_dir, listed.removed)
    else:
        from extract.display import registry_state
        from extract.export import current_records

        _check_choice(nct_ids, all_trials)
        nct_ids = nct_ids_of(nct_ids)
        if all_trials:
            records = current_records(workspace, listed=listed)
        else:  # a study named is matched as asked, its state said
            records = [r for i in nct_ids if (r := workspace.current_record(i))]
            warn([f"{r.nct_id} is {state}" for r in records if (state := registry_state(r.trial, workspace.removed(r.nct_id)))])
        found = {record.nct_id for record in records}
        failures = [f"{i}: no structured record: run `eligex extract {i}` first" for i in nct_ids if i not in found]
    warn([listed.line()] if listed.line() else [])
    results = match_all(patient, records)
    if fmt == "json":
        for result in results:
            click.echo(json.dumps(result.as_dict(), ensure_ascii=False))
    else:
        click.echo(render_table(results, {r.nct_id: r for r in records}), nl=False)
    fail_if(failures)


@main.command()
@JSON_OPTION
@click.pass_obj
def runs(workspace: Workspace, as_json: bool) -> None:
    """List extraction runs, newest first: a table, or --json one object per line (ISO 8601 times)."""
    from extract.display import runs_table

    with workspace.writing():  # which runs died unfinished is settled on opening
        listed = workspace.runs()
    for run in listed:
        run["summary"] = json.loads(run["summary"]) if run["summary"] else None
    if as_json:
        for run in listed:
            click.echo(json.dumps({key: iso(value) for key, value in run.items()}))
    else:
        print_table(runs_table(listed))


@main.command(name="eval")
@click.option("--run", "run_id", help="Score this stored run (see `eligex runs`) instead of extracting now.")
@click.option(
    "--backend",
    type=click.Choice(["rules", "openai", "hybrid"]),
    help="Extract the split's gold trials now with this backend. Default: as for `extract`.",
)
@click.option("--model", help="LLM model name (openai backend); default from ELIGEX_MODEL.")
@click.option("--split", type=click.Choice(["dev", "test", "all"]), help="Gold trials of evals/splits.json.  [default: dev]")
@click.option("--gold", "gold_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Score against every gold file (NCT*.json) in this folder instead of the project's split.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Report folder. Default: reports/<run_id> in the workspace.")
@click.option("--fail-under", type=click.FloatRange(0, 1), metavar="F1", help="Exit 1 when micro F1 is below F1.")
@click.option("--compare", nargs=2, metavar="RUN_A RUN_B",
              help="Print per-field deltas of two stored runs on the split; compare.html (in --out) adds, per trial, "
              "what B fixed and broke.")
@click.pass_obj
def eval_command(workspace: Workspace, run_id, backend, model, split, gold_dir, out, fail_under, compare) -> None:
    """Score extractions against the hand-labelled gold files in evals/gold (split in evals/splits.json).

    Without --run, extracts the split's gold trials now (a new stored run, which changes no record
    `show` and `export` serve) and scores them; with --run, scores a stored run of that split.
    Writes metrics.json, report.md and report.html to reports/<run_id>/ in the workspace (or
    --out) and prints report.md. A trial whose extraction failed is scored as empty and named.
    With --compare, prints the per-field deltas and writes compare.html (what each trial gained
    and lost) to reports/compare-<A>-vs-<B>/ (or --out).
    """
    from extract.evaluate import harness
    from extract.evaluate.report import render_comparison, render_comparison_html
    from extract.pipeline import new_run_id, run_extraction
    from extract.store import atomic_write

    if sum(map(bool, (run_id, backend, compare))) > 1:
        raise InputError("pass one of --run, --backend and --compare")
    if gold_dir is not None and split is not None:
        raise InputError("--split picks among the project's gold files; with --gold every file in the folder is scored")
    gold = harness.load_gold(gold_dir or harness.GOLD_DIR)
    if gold_dir is None:
        split = split or "dev"
        nct_ids = harness.split_ids(split)
    elif not gold:
        raise InputError(f"no gold files (NCT*.json) in {gold_dir}")
    else:
        split, nct_ids = str(gold_dir), sorted(gold)
    failures: dict[str, str] = {}
    with workspace.writing():
        if compare:
            run_a, run_b = (harness.evaluate_run(workspace, run, nct_ids, split, gold)[0] for run in compare)
            click.echo(render_comparison(run_a, run_b, *compare), nl=False)
            page = (out or harness.report_dir(workspace, f"compare-{compare[0]}-vs-{compare[1]}")) / "compare.html"
            atomic_write(page, render_comparison_html(run_a, run_b, *compare).encode())
            click.echo(f"compared on {split} ({len(nct_ids)} trials); what each trial gained and lost: {page}", err=True)
            return
        if run_id is None:
            harness.check_imported(workspace, nct_ids)
            chosen = make_backend(backend, model, workspace)
            trials = list(workspace.trials(nct_ids))
            announce(chosen, trials, up_to_date=0)
            with progress(len(trials), f"extracting ({chosen.name})") as bar:
                bar.run_id = new_run_id(chosen)
                # force: every trial must be in this run, even one whose current record is up to date
                summary = run_async(
                    run_extraction(workspace, chosen, trials, force=True, on_done=lambda _: bar.update(),
                                   run_id=bar.run_id, split=split),
                    chosen,
                )  # fmt: skip
            run_id, failures = summary.run_id, summary.failures
        metrics, texts = harness.evaluate_run(workspace, run_id, nct_ids, split, gold)
    out_dir = out or harness.report_dir(workspace, run_id)
    click.echo(harness.write_reports(metrics, texts, out_dir), nl=False)
    for nct_id in metrics["not_extracted"]:
        click.echo(f"not extracted, scored as empty: {nct_id} {failures.get(nct_id, '')}".rstrip(), err=True)
    micro_f1 = metrics["micro"]["f1"] or 0.0
    click.echo(f"run {run_id}: micro F1 {micro_f1:.3f} on {split} ({len(nct_ids)} trials); reports in {out_dir}", err=True)
    if fail_under is not None and micro_f1 < fail_under:
        click.echo(f"micro F1 {micro_f1:.3f} is below --fail-under {fail_under}", err=True)
        sys.exit(1)


@main.command()
@click.option("--run", "run_id", help="Review this stored run's records (default: each trial's latest record).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to serve on. Anything but loopback lets others on the network change your gold files.")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True, help="Port (0: any free one).")
@click.option("--reviewer", envvar="ELIGEX_REVIEWER",
              help="Your name in the audit of changes (env ELIGEX_REVIEWER; default: the login name).")
@click.option("--evals", "evals_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Folder holding gold/ and splits.json (default: the project's evals/).")
@click.option("--no-browser", is_flag=True, help="Do not open a browser.")
@click.pass_obj
def review(workspace: Workspace, run_id, host, port, reviewer, evals_dir, no_browser) -> None:
    """Review extractions in a local web application, correct them, and mark trials reviewed.

    A trial list (filters, search, sorting), a review queue, and a page per trial: its criteria with
    every item's evidence marked, the structured fields (with gold where it exists) and forms to
    accept, edit, delete or add an item. "Mark trial reviewed" writes evals/gold/<NCT>.json
    (validated) and gives new gold a dev/test split. Every change is an audit row in the workspace's
    database, and can be undone. Stop it with Ctrl+C.
    """
    import getpass

    from extract.evaluate import harness
    from extract.review.server import bind, is_loopback, serve, url_of
    from extract.review.workbench import Workbench

    with workspace.writing():
        if run_id and workspace.run(run_id) is None:
            raise InputError(f"no run {run_id!r} in {workspace.db_path}; `eligex runs` lists them")
        if not workspace.trial_ids():
            raise InputError(f"no trials in {workspace.root}: run `eligex import` or `eligex fetch` first")
    evals_dir = evals_dir or harness.EVALS_DIR
    if not (evals_dir / "gold").is_dir():
        raise InputError(f"{evals_dir} has no gold/ folder")
    if not is_loopback(host):
        click.echo(f"warning: serving on {host}: anyone who can reach it can change the gold files", err=True)
    sock = bind(host, port)
    name = reviewer or os.environ.get("USER") or getpass.getuser() or "unknown"
    click.echo(f"eligex review: {url_of(sock)}/ (workspace {workspace.root}, reviewer {name}); Ctrl+C stops it", err=True)
    serve(Workbench(workspace, evals_dir, run_id=run_id, reviewer=name), sock, open_browser=not no_browser)


def _check_choice(nct_ids, all_trials: bool) -> None:
    if bool(nct_ids) == all_trials:
        raise InputError("name trials (NCT ids) or pass --all, not both")


def nct_ids_of(values) -> list[str]:
    """The ids given on the command line, normalised (`nct01234567` is NCT01234567); InputError on any other."""
    bad = [value for value in values if normalise_nct_id(value) is None]
    if bad:
        raise InputError(f"not an NCT id (NCT + 8 digits): {', '.join(bad)}")
    return [normalise_nct_id(value) for value in values]


def _check_stored(workspace: Workspace, nct_ids: list[str] | None) -> list[str] | None:
    """The ids named, normalised, once each is known to be stored (or None for all, once there is a trial)."""
    if nct_ids is not None:
        nct_ids = nct_ids_of(nct_ids)
        known = {row[0] for row in workspace.db.execute(
            "SELECT nct_id FROM trials WHERE nct_id IN (SELECT unnest(?))", [nct_ids]).fetchall()}  # fmt: skip
        missing = sorted(set(nct_ids) - known)
        if missing:
            raise InputError(f"not in the workspace: {', '.join(missing)} (import or fetch them first)")
    elif workspace.db.execute("SELECT count(*) FROM trials").fetchone()[0] == 0:
        raise InputError(f"no trials in {workspace.root}: run `eligex import` or `eligex fetch` first")
    return nct_ids


def _stored_trials(workspace: Workspace, nct_ids: list[str] | None):
    if nct_ids is not None:
        nct_ids = nct_ids_of(nct_ids)
    trials = list(workspace.trials(nct_ids))
    missing = sorted(set(nct_ids or []) - {t.nct_id for t in trials})
    if missing:
        raise InputError(f"not in the workspace: {', '.join(missing)} (import or fetch them first)")
    if not trials:
        raise InputError(f"no trials in {workspace.root}: run `eligex import` or `eligex fetch` first")
    return trials


if __name__ == "__main__":
    main()
