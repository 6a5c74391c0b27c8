"""Where the main process of an eligex command spends its time: cProfile of it (pool workers run
unprofiled), the DuckDB statements it runs (count and seconds, per statement), and, for
`extract --workers`, the writer's time (`save_results`) apart from the time spent waiting on the
workers, the record bytes stored and the flushes (`syncfs`).

    PROF_OUT=/tmp/p.out .venv/bin/python bench/writer_profile.py --workspace WS extract --all --backend rules --workers 2 --force

Run it from the checkout to measure (its code comes first on the path). Prints the statements and a
summary on stderr; `python -m pstats /tmp/p.out` reads the profile.
"""
from __future__ import annotations

import collections
import cProfile
import os
import sys
import time

sys.path.insert(0, os.getcwd())
import cli  # noqa: E402
import extract.parallel as parallel  # noqa: E402
import extract.pipeline as pipeline  # noqa: E402
import extract.store as store  # noqa: E402

stats = {"save_s": 0.0, "wait_s": 0.0, "batches": 0, "syncs": 0, "sync_s": 0.0, "bytes": 0}
sql_seconds: collections.Counter = collections.Counter()
sql_count: collections.Counter = collections.Counter()


def timed(function, seconds: str, count: str):
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            stats[seconds] += time.perf_counter() - started
            stats[count] += 1

    return wrapper


def start_worker(parent: int, _start=parallel.start_worker) -> None:
    sys.setprofile(None)  # a forked worker inherits the profiler: not what is measured
    _start(parent)


def save_results(self, run_id, results, serve=True, _save=timed(store.Workspace.save_results, "save_s", "batches")):
    stats["bytes"] += sum(len(result.record or "") for result in results)
    return _save(self, run_id, results, serve)


def in_order(pool, work, items, ahead, _in_order=pipeline._in_order):
    """The pool's results, timing how long the writer waits for each."""
    results = _in_order(pool, work, items, ahead)
    while True:
        started = time.perf_counter()
        try:
            result = next(results)
        except StopIteration:
            return
        stats["wait_s"] += time.perf_counter() - started
        yield result


class Counted:
    """The workspace's connection, each statement counted and timed."""

    def __init__(self, db):
        self._db = db

    def execute(self, sql, *args):
        key = " ".join(sql.split())[:60]
        started = time.perf_counter()
        answer = self._db.execute(sql, *args)
        sql_seconds[key] += time.perf_counter() - started
        sql_count[key] += 1
        return self if answer is self._db else answer

    def __getattr__(self, name):
        return getattr(self._db, name)


def counted_db(self, _db=store.Workspace.db):
    real = _db.fget(self)
    if getattr(self, "_counted", None) is None or self._counted._db is not real:
        self._counted = Counted(real)
    return self._counted


parallel.start_worker = start_worker
pipeline._in_order = in_order
store.Workspace.save_results = save_results
store.sync_filesystem = timed(store.sync_filesystem, "sync_s", "syncs")
store.Workspace.db = property(counted_db)

if __name__ == "__main__":
    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.enable()
    try:
        cli.main(sys.argv[1:], standalone_mode=False)
    finally:
        profile.disable()
        stats["wall_s"] = time.perf_counter() - started
        stats["main_cpu_s"] = time.process_time()
        profile.dump_stats(os.environ.get("PROF_OUT", "writer_profile.out"))
        for key, seconds in sql_seconds.most_common(12):
            print(f"{seconds:8.3f}s {sql_count[key]:6d}  {key}", file=sys.stderr)
        print({key: round(value, 3) if isinstance(value, float) else value for key, value in stats.items()}, file=sys.stderr)
