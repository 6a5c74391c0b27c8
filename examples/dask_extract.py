"""The extraction on Dask: stored trials in Parquet, records out in Parquet (the `dask` extra).

    .venv/bin/python examples/dask_extract.py TRIALS.parquet RECORDS.parquet [--scheduler processes]

TRIALS.parquet holds the workspace's trials as stored, columns nct_id and trial (JSON), e.g.
    duckdb eligex.duckdb "COPY (SELECT nct_id, trial FROM trials) TO 'trials.parquet'"
RECORDS.parquet gets one row per trial (extract/parallel.py's RESULT_COLUMNS): `record` is the
contract record as JSON (what `eligex extract` writes to structured/), or `error` says why not.
Locally Dask runs in processes on this machine; on a cluster, the same graph runs with a
`dask.distributed` Client of that cluster in place of the local scheduler.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a checkout; installed, eligex is importable anyway

import dask  # noqa: E402
import dask.dataframe as dd  # noqa: E402
import pandas  # noqa: E402

from extract.parallel import RESULT_COLUMNS, extract_frame  # noqa: E402

META = pandas.DataFrame({
    "nct_id": pandas.Series(dtype="string"), "content_sha256": pandas.Series(dtype="string"),
    "record": pandas.Series(dtype="string"), "error": pandas.Series(dtype="string"),
    "input_tokens": pandas.Series(dtype="int64"), "output_tokens": pandas.Series(dtype="int64"),
    "cost_usd": pandas.Series(dtype="float64"), "incomplete": pandas.Series(dtype="bool"),
})[list(RESULT_COLUMNS)]  # fmt: skip


def extract_parquet(trials: Path, out: Path, scheduler: str = "processes", partitions: int | None = None) -> int:
    """Extract every trial of `trials` into `out` (a folder of Parquet parts, one per partition); the count."""
    frame = dd.read_parquet(trials, columns=["nct_id", "trial"])
    if partitions:
        frame = frame.repartition(npartitions=partitions)
    results = frame.map_partitions(lambda part: extract_frame(part).astype(META.dtypes.to_dict()), meta=META)
    with dask.config.set(scheduler=scheduler):
        results.to_parquet(out, write_index=False)
        return int(dd.read_parquet(out, columns=["nct_id"]).shape[0].compute())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trials", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--scheduler", default="processes", choices=["processes", "threads", "synchronous"])
    parser.add_argument("--partitions", type=int)
    options = parser.parse_args()
    count = extract_parquet(options.trials, options.out, options.scheduler, options.partitions)
    print(f"extracted {count} trials into {options.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
