"""eligex: clinical-trial eligibility criteria to structured, evidence-grounded JSON.

Data goes to stdout, diagnostics and progress to stderr. Exit codes: 0 success, 1 some records
failed (each named on stderr), 2 bad input or usage, 3 an upstream service failed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import click

from extract.errors import EligexError, InputError, redact
from extract.export import FORMATS
from extract.store import Workspace
from schemas import EligibilityRecord, is_nct_id

SCHEMA_FILE = Path(__file__).parent / "schemas" / "eligibility-record.schema.json"


def record_json_schema() -> dict:
    return EligibilityRecord.model_json_schema()


def progress(length: int, label: str):
    """A progress bar on stderr (hidden when stderr is not a terminal)."""
    return click.progressbar(length=length, label=label, file=sys.stderr, show_pos=True)


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


class Eligex(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EligexError as error:
            click.echo(f"Error: {redact(str(error))}", err=True)
            sys.exit(error.exit_code)


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
    ctx.obj = Workspace(workspace)


@main.command(name="import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.pass_obj
def import_command(workspace: Workspace, paths: tuple[Path, ...]) -> None:
    """Import trial records from files or folders.

    Reads ClinicalTrials.gov API v2 study JSON, v2 pages {"studies": [...]}, JSONL of studies,
    classic XML (<clinical_study>), the flat 2026 export, and plain JSONL or CSV rows with
    nct_id, title, conditions, eligibility_text, sex, minimum_age, maximum_age. A file that cannot
    be read is reported with its reason and the rest goes on; exit code 1 if any failed.
    """
    from extract.importer import files_under, import_files

    files = files_under(paths)
    with workspace.writing():
        with progress(len(files), "importing") as bar:
            summary = import_files(workspace, files, on_file=lambda path: bar.update(1))
    click.echo(f"imported {len(files)} files into {workspace.root}: {summary.line()}", err=True)
    fail_if(summary.failures)


@main.command()
@click.option("--nct", "nct_ids", multiple=True, help="Study id(s) to fetch; repeat or give a comma list.")
@click.option("--cond", help="Search: condition or disease (query.cond).")
@click.option("--term", help="Search: any words (query.term).")
@click.option("--intr", help="Search: intervention or treatment (query.intr).")
@click.option("--status", "statuses", multiple=True, help="Search: overall status(es), e.g. RECRUITING; comma list.")
@click.option("--phase", "phases", multiple=True, help="Search: phase(s), e.g. PHASE2,PHASE3; comma list.")
@click.option("--updated-since", type=click.DateTime(["%Y-%m-%d"]), help="Search: last updated on or after this date.")
@click.option("--limit", type=click.IntRange(min=1), help="Search: stop after this many studies.")
@click.option("--page-size", type=click.IntRange(1, 1000), default=100, show_default=True, help="Search: studies per request.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=50, show_default=True, help="Requests per minute.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=30, show_default=True,
              help="Seconds for a whole answer, per attempt.")
@click.pass_obj
def fetch(workspace: Workspace, nct_ids, cond, term, intr, statuses, phases, updated_since, limit, page_size, rate,
          timeout) -> None:  # fmt: skip
    """Fetch studies from the ClinicalTrials.gov API v2 (env ELIGEX_CTGOV_URL) by id or by search.

    Studies are stored as `import` stores them: one whose content is unchanged is not rewritten.
    Requests are spaced to --rate and retried on 429, 5xx, timeouts and broken connections. An id
    that is unknown, cannot be had or comes back as another study is named and the rest goes on
    (exit code 1); a search page that cannot be had ends the search (exit code 3), keeping what was
    stored before it. A search ends at --limit, at the registry's total count, or at a page that
    brings no new study. A registry that cannot be reached stops the fetch at once (exit code 3).
    """
    from extract.fetch import DEFAULT_URL, Search, Settings, comma_list, fetch_ids, fetch_search

    settings = Settings(base_url=os.environ.get("ELIGEX_CTGOV_URL") or DEFAULT_URL, rate=rate, timeout=timeout)
    ids = comma_list(nct_ids)
    search = Search(
        cond=cond,
        term=term,
        intr=intr,
        statuses=tuple(comma_list(statuses)),
        phases=tuple(comma_list(phases)),
        updated_since=updated_since.date() if updated_since else None,
    )
    if ids and search.params():
        raise InputError("fetch by --nct ids or by search options, not both")
    if not ids and not search.params() and not limit:
        raise InputError("name studies (--nct) or search (--cond, --term, --intr, --status, --phase, --updated-since)")
    _check_ids(ids)
    with workspace.writing():
        with progress(len(ids) or limit or 0, "fetching") as bar:

            def advance(done: int, total: int | None) -> None:
                bar.length = total or done  # a search's total is known from its first page
                bar.update(done - bar.pos)

            if ids:
                summary = asyncio.run(fetch_ids(workspace, ids, settings, advance))
            else:
                summary = asyncio.run(fetch_search(workspace, search, settings, limit, page_size, advance))
    click.echo(f"fetched into {workspace.root}: {summary.line()}", err=True)
    fail_if(summary.failures)


@main.command()
@click.argument("nct_id")
@click.pass_obj
def criteria(workspace: Workspace, nct_id: str) -> None:
    """Print a stored trial's criteria, one JSON object per line (id, kind, start, end, text)."""
    from extract.text import segment

    trial = _stored_trials(workspace, [nct_id])[0]
    for criterion in segment(trial.eligibility_text):
        click.echo(criterion.model_dump_json())


@main.command()
@click.option("--check", is_flag=True, help=f"Exit 1 if {SCHEMA_FILE.name} differs from the models.")
def schema(check: bool) -> None:
    """Print the JSON Schema of the structured record (the contract, version 1)."""
    text = json.dumps(record_json_schema(), indent=2) + "\n"
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
    type=click.Choice(["rules", "openai"]),
    help="Default: openai when OPENAI_API_KEY or OPENAI_BASE_URL is set, else rules.",
)
@click.option("--model", help="LLM model name (openai backend); default from ELIGEX_MODEL.")
@click.option("--concurrency", type=click.IntRange(1, 256), default=8, show_default=True,
              help="Trials extracted at once: requests in flight, for the openai backend.")
@click.option("--force", is_flag=True, help="Extract again even when the current record is up to date.")
@click.pass_obj
def extract_command(workspace: Workspace, nct_ids, all_trials, backend, model, concurrency, force) -> None:
    """Extract structured eligibility from stored trials into structured/<NCT>.json and the database.

    One trial's failure never stops the batch: it is stored with its reason and named at the end
    (exit code 1). Trials whose record is up to date (same content, same backend version) are
    skipped unless --force.
    """
    from extract.pipeline import run_extraction

    _check_choice(nct_ids, all_trials)
    chosen = make_backend(backend, model, workspace)
    with workspace.writing():
        trials = _stored_trials(workspace, list(nct_ids) or None)
        with progress(len(trials), f"extracting ({chosen.name})") as bar:
            summary = run_async(
                run_extraction(
                    workspace, chosen, trials, force=force, concurrency=concurrency, on_done=lambda _: bar.update(1)
                ),
                chosen,
            )
    model_note = f", model {chosen.model}" if chosen.model else ""
    click.echo(
        f"backend {chosen.name}{model_note}, run {summary.run_id}: {summary.extracted} extracted, "
        f"{summary.skipped} up to date, {len(summary.failures)} failed; records in {workspace.structured_dir}",
        err=True,
    )
    if summary.input_tokens:
        click.echo(f"tokens: {summary.input_tokens} in, {summary.output_tokens} out; cost ${summary.cost_usd:.4f}", err=True)
    fail_if(summary.failures)


def make_backend(name: str | None, model: str | None, workspace: Workspace | None = None):
    """The backend asked for, or the default: the LLM when one is configured, else rules.

    The LLM backend caches its answers in the workspace's database when given one.
    """
    if name is None:
        name = "openai" if os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL") else "rules"
    if name == "rules":
        from extract.rules import RulesBackend

        return RulesBackend()
    from extract.llm import OpenAIBackend

    return OpenAIBackend.from_environment(model=model, workspace=workspace)


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
        llm = OpenAIBackend.from_environment(model=model, workspace=workspace)
        trials = _stored_trials(workspace, list(nct_ids) or None)
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

    client = OpenAIBackend.from_environment(workspace=workspace).client
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
        llm = OpenAIBackend.from_environment(model=row["model"], workspace=workspace)
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
    help="Print only this part of the record.",
)
@click.pass_obj
def show(workspace: Workspace, nct_id: str, part: str | None) -> None:
    """Print the current structured record of one trial (JSON)."""
    _check_ids([nct_id])
    record = workspace.current_record(nct_id)
    if record is None:
        raise InputError(f"no structured record for {nct_id}: run `eligex extract {nct_id}` first")
    document = record.model_dump(mode="json")
    click.echo(json.dumps(document[part] if part else document, indent=2, ensure_ascii=False))


@main.command(name="export")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="jsonl", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="File to write.")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="Only records extracted on or after this date.")
@click.pass_obj
def export_command(workspace: Workspace, fmt: str, out: Path, since) -> None:
    """Export the current structured records for downstream apps, with the JSON Schema beside them.

    Parquet keeps the contract's nesting (structs and lists); DuckDB, pandas and pyarrow read it.
    """
    from extract.export import current_records, export

    records = current_records(workspace, since.date() if since else None)
    schema_path = export(records, out, fmt, record_json_schema())
    click.echo(f"exported {len(records)} records to {out} (schema: {schema_path})", err=True)


@main.command()
@click.pass_obj
def runs(workspace: Workspace) -> None:
    """List extraction runs, newest first, one JSON object per line."""
    for run in workspace.runs():
        click.echo(json.dumps(run, default=str))


@main.command(name="eval")
@click.option("--run", "run_id", help="Score this stored run (see `eligex runs`) instead of extracting now.")
@click.option(
    "--backend",
    type=click.Choice(["rules", "openai"]),
    help="Extract the split's gold trials now with this backend. Default: as for `extract`.",
)
@click.option("--model", help="LLM model name (openai backend); default from ELIGEX_MODEL.")
@click.option("--split", type=click.Choice(["dev", "test", "all"]), help="Gold trials of evals/splits.json.  [default: dev]")
@click.option("--gold", "gold_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Score against every gold file (NCT*.json) in this folder instead of the project's split.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Report folder. Default: evals/reports/<run_id>.")
@click.option("--fail-under", type=click.FloatRange(0, 1), metavar="F1", help="Exit 1 when micro F1 is below F1.")
@click.option("--compare", nargs=2, metavar="RUN_A RUN_B", help="Print per-field deltas of two stored runs on the split.")
@click.pass_obj
def eval_command(workspace: Workspace, run_id, backend, model, split, gold_dir, out, fail_under, compare) -> None:
    """Score extractions against the hand-labelled gold files in evals/gold (split in evals/splits.json).

    Without --run, extracts the split's gold trials now (a new stored run) and scores them; with
    --run, scores a stored run. Writes metrics.json, report.md and report.html to
    evals/reports/<run_id>/ (or --out) and prints report.md. A trial whose extraction failed is
    scored as empty and named on stderr.
    """
    from extract.evaluate import harness
    from extract.evaluate.report import render_comparison
    from extract.pipeline import run_extraction

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
    if compare:
        run_a, run_b = (harness.evaluate_run(workspace, run, nct_ids, split, gold)[0] for run in compare)
        click.echo(render_comparison(run_a, run_b, *compare), nl=False)
        return
    failures: dict[str, str] = {}
    if run_id is None:
        with workspace.writing():
            harness.check_imported(workspace, nct_ids)
            chosen = make_backend(backend, model, workspace)
            trials = list(workspace.trials(nct_ids))
            with progress(len(trials), f"extracting ({chosen.name})") as bar:
                # force: every trial must be in this run, even one whose current record is up to date
                summary = run_async(
                    run_extraction(workspace, chosen, trials, force=True, on_done=lambda _: bar.update(1)), chosen
                )
            run_id, failures = summary.run_id, summary.failures
            metrics, texts = harness.evaluate_run(workspace, run_id, nct_ids, split, gold)
    else:
        metrics, texts = harness.evaluate_run(workspace, run_id, nct_ids, split, gold)
    out_dir = out or harness.report_dir(run_id)
    click.echo(harness.write_reports(metrics, texts, out_dir), nl=False)
    for nct_id in metrics["not_extracted"]:
        click.echo(f"not extracted, scored as empty: {nct_id} {failures.get(nct_id, '')}".rstrip(), err=True)
    micro_f1 = metrics["micro"]["f1"] or 0.0
    click.echo(f"run {run_id}: micro F1 {micro_f1:.3f} on {split} ({len(nct_ids)} trials); reports in {out_dir}", err=True)
    if fail_under is not None and micro_f1 < fail_under:
        click.echo(f"micro F1 {micro_f1:.3f} is below --fail-under {fail_under}", err=True)
        sys.exit(1)


def _check_choice(nct_ids, all_trials: bool) -> None:
    if bool(nct_ids) == all_trials:
        raise InputError("name trials (NCT ids) or pass --all, not both")


def _check_ids(nct_ids: list[str]) -> None:
    bad = [i for i in nct_ids if not is_nct_id(i)]
    if bad:
        raise InputError(f"not an NCT id (NCT + 8 digits): {', '.join(bad)}")


def _stored_trials(workspace: Workspace, nct_ids: list[str] | None):
    if nct_ids is not None:
        _check_ids(nct_ids)
    trials = list(workspace.trials(nct_ids))
    missing = sorted(set(nct_ids or []) - {t.nct_id for t in trials})
    if missing:
        raise InputError(f"not in the workspace: {', '.join(missing)} (import or fetch them first)")
    if not trials:
        raise InputError(f"no trials in {workspace.root}: run `eligex import` or `eligex fetch` first")
    return trials


if __name__ == "__main__":
    main()
