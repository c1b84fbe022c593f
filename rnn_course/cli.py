"""The ``rnn-course`` command line."""

from __future__ import annotations

import argparse
import sys

import torch

from . import __version__
from .device import describe_device, get_device


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rnn-course", description="Helpers of the RNN course.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="print the package, torch and device versions in use")
    args = parser.parse_args(argv)
    if args.command == "info":
        print(f"rnn_course {__version__}, torch {torch.__version__}")
        print(f"device: {describe_device(get_device())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
