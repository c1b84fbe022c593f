"""Benchmark (not a test): ``rnn-course grade`` on the local pool against the same
command on a Dask ``LocalCluster`` (``--scheduler``), on the same submissions.

A temporary course copy and N submissions (a third correct, a third blank, a third
wrong; made as in ``grading_speed.py``) are graded twice, each time as a subprocess,
imports included:

1. ``rnn-course grade A submitted --workers W``;
2. ``rnn-course grade A submitted --scheduler tcp://127.0.0.1:PORT``, on a
   ``LocalCluster`` of W worker processes of one thread each, started (not timed) by
   this script; its workers start cold, as freshly started ``dask worker`` processes.

Prints both wall-clock times, the command lines, and whether the two grades.csv files
and the feedback pages are identical byte for byte.

    .venv/bin/python benchmarks/grading_on_dask.py               # N = 12, W = 2
    .venv/bin/python benchmarks/grading_on_dask.py --submissions 24 --no-sandbox
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from grading_speed import (  # noqa: E402
    BIN,
    course_copy,
    environment,
    generate,
    make_submissions,
)


def timed(command: list[str], cwd: Path) -> float:
    """Wall-clock seconds of one command (which must succeed)."""
    start = time.perf_counter()
    subprocess.run(
        command, cwd=cwd, env=environment(), check=True, stdout=subprocess.DEVNULL
    )
    return time.perf_counter() - start


def same_files(first: Path, second: Path) -> bool:
    """Whether two folders hold the same file names with the same bytes."""
    names = sorted(path.name for path in first.iterdir())
    return names == sorted(path.name for path in second.iterdir()) and all(
        (first / name).read_bytes() == (second / name).read_bytes() for name in names
    )


def main() -> None:
    from distributed import LocalCluster

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", default="ch02_memory_cell")
    parser.add_argument("--submissions", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--no-sandbox", action="store_true", help="no root or no bubblewrap here"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="grading-on-dask-"))
    try:
        course = course_copy(work / "course")
        submitted = work / "submissions"
        make_submissions(course, args.assignment, args.submissions, submitted)
        generate(course, args.assignment)
        print(
            f"{args.submissions} submissions of {args.assignment} ({os.cpu_count()} "
            f"cores, {args.workers} workers)"
        )
        command = [str(BIN / "rnn-course"), "grade", args.assignment, str(submitted)]
        command += ["--no-sandbox"] if args.no_sandbox else []
        local = command + ["--workers", str(args.workers)]
        local_seconds = timed(local + ["--output", str(work / "local")], course)
        print(f"local pool:        {local_seconds:7.1f} s   {' '.join(local[1:])}")
        with LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster:
            cluster.wait_for_workers(args.workers)
            dask = command + ["--scheduler", cluster.scheduler_address]
            dask_seconds = timed(dask + ["--output", str(work / "dask")], course)
        print(f"Dask LocalCluster: {dask_seconds:7.1f} s   {' '.join(dask[1:])}")
        table = (work / "local" / "grades.csv").read_bytes() == (
            work / "dask" / "grades.csv"
        ).read_bytes()
        feedback = same_files(work / "local" / "feedback", work / "dask" / "feedback")
        print(f"grades.csv identical: {table}; feedback pages identical: {feedback}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
