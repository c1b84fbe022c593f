"""Time every chapter and every solution notebook, one at a time, against the 30 s
target.

Not a test (tests never assert wall-clock times): run it on a quiet machine and read the
table.

    .venv/bin/python benchmarks/notebook_times.py            # chapters and solutions
    .venv/bin/python benchmarks/notebook_times.py book/04_bptt.ipynb

Each notebook runs in a fresh kernel from its own folder, kernel start included, as the
book build and nbgrader run it. CPU seconds (this process's children) are printed beside
wall seconds, since wall time on a shared machine also counts other people's work.
"""

from __future__ import annotations

import argparse
import pathlib
import resource
import sys
import time

import nbformat
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[1]
TARGET_SECONDS = 30.0


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_notebook(path: pathlib.Path) -> tuple[float, float]:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    cpu_before, start = children_cpu_seconds(), time.perf_counter()
    client.execute()
    return time.perf_counter() - start, children_cpu_seconds() - cpu_before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "notebooks",
        nargs="*",
        type=pathlib.Path,
        help="notebooks to time (default: book/*.ipynb and solutions/*/*.ipynb)",
    )
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted(ROOT.glob("book/*.ipynb")) + sorted(
        ROOT.glob("solutions/*/*.ipynb")
    )
    print(f"{'notebook':45} {'wall s':>7} {'cpu s':>7}  target {TARGET_SECONDS:.0f} s")
    slow = 0
    for path in notebooks:
        wall, cpu = time_notebook(path.resolve())
        verdict = "ok" if wall < TARGET_SECONDS else "OVER"
        slow += verdict == "OVER"
        print(
            f"{str(path.resolve().relative_to(ROOT)):45} {wall:7.1f} {cpu:7.1f}  "
            f"{verdict}",
            flush=True,
        )
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
