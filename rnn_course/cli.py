"""The ``rnn-course`` command line."""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .grading.command import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rnn-course", description="Helpers of the RNN course."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "info", help="print the package, torch and device versions in use"
    )
    grading = commands.add_parser(
        "grade",
        help=(
            "grade every submission of an assignment, sandboxed and in parallel"
            " (instructors)"
        ),
        description=(
            "Grade submissions with nbgrader underneath: student code runs in a "
            "bubblewrap sandbox, the tests (hidden ones too) run in the grader's own "
            "process. Writes grades.csv, feedback pages and the gradebook."
        ),
    )
    add_arguments(grading)
    args = parser.parse_args(argv)
    if args.command == "grade":
        return run(args)
    if args.command == "info":
        import torch  # (not for `grade`: its main process never needs torch)

        from .device import describe_device, get_device

        print(f"rnn_course {__version__}, torch {torch.__version__}")
        print(f"device: {describe_device(get_device())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
