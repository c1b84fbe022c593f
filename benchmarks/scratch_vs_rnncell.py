"""How much slower is the course's scratch RNN than a loop of ``nn.RNNCell`` s? (Not a
test.)

Both run the same Python loop over time steps, so they should be close: the scratch cell
does two matrix products, two additions and a tanh per step, ``nn.RNNCell`` does the
same work in one C++ call. This script times one forward and backward pass of each, on
the same weights and inputs, side by side in one run (interleaved repeats, the median of
each), and prints the ratio scratch / cell loop per size. The course's target is a ratio
of at most 1.5. ``nn.RNN`` (the fused loop) is timed too, for reference.

    .venv/bin/python benchmarks/scratch_vs_rnncell.py
    .venv/bin/python benchmarks/scratch_vs_rnncell.py --device cuda --repeats 20
    .venv/bin/python benchmarks/scratch_vs_rnncell.py --size 100x32x16x64x2 --size
    20x1x1x8x1

A size is ``SEQ_LENxBATCHxINPUTxHIDDENxLAYERS``. The exit status is 0 unless ``--check``
is given and some ratio is above the target.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import torch

from rnn_course.device import describe_device, get_device
from rnn_course.timing import rnn_forward_backward, time_interleaved
from rnn_course.torch_bridge import cell_loop, torch_rnn_to_cells, torch_rnn_to_scratch

TARGET_RATIO = 1.5


@dataclass(frozen=True)
class Size:
    seq_len: int  # time steps in the sequence
    batch: int  # sequences processed together
    input_size: int  # features per step
    hidden_size: int  # units per layer
    num_layers: int  # stacked layers

    def __str__(self) -> str:
        sizes = (self.seq_len, self.batch, self.input_size, self.hidden_size)
        return "x".join(str(size) for size in (*sizes, self.num_layers))


DEFAULT_SIZES = [
    Size(5, 4, 6, 3, 2),  # chapter 5's classic example
    Size(50, 32, 16, 64, 1),
    Size(200, 32, 16, 64, 2),
    Size(100, 64, 32, 256, 2),
]


def parse_size(text: str) -> Size:
    parts = text.lower().split("x")
    try:
        numbers = [int(part) for part in parts]
    except ValueError:
        numbers = []
    if len(numbers) != 5 or min(numbers) < 1:
        raise argparse.ArgumentTypeError(
            "a size is SEQ_LENxBATCHxINPUTxHIDDENxLAYERS with five positive ints, "
            f"e.g. 50x32x16x64x1; got {text!r}"
        )
    return Size(*numbers)


def time_one_size(
    size: Size, device: torch.device, repeats: int, warmup: int, dtype: torch.dtype
) -> dict:
    """Median seconds of one forward+backward pass of nn.RNN, the cell loop and the
    scratch RNN.
    """
    torch.manual_seed(0)
    rnn = torch.nn.RNN(
        size.input_size, size.hidden_size, size.num_layers, device=device, dtype=dtype
    )
    cells = torch_rnn_to_cells(rnn)  # the same weights, one nn.RNNCell per layer
    scratch = torch_rnn_to_scratch(rnn)  # the same weights in the course's ScratchRNN
    x = torch.randn(
        size.seq_len, size.batch, size.input_size, device=device, dtype=dtype
    )
    with torch.no_grad():  # a wrong conversion would make the timings meaningless
        expected, _ = rnn(x)
        for name, (output, _) in [
            ("cell loop", cell_loop(cells, x)),
            ("scratch", scratch(x)),
        ]:
            difference = (output - expected).abs().max().item()
            if difference > 1e-4:
                raise RuntimeError(
                    f"{name} differs from nn.RNN by {difference:.2e} at size {size}"
                )
    functions = {
        "scratch": rnn_forward_backward(scratch, x, scratch.parameters()),
        "cell loop": rnn_forward_backward(
            lambda inputs: cell_loop(cells, inputs), x, cells.parameters()
        ),
        "nn.RNN": rnn_forward_backward(rnn, x, rnn.parameters()),
    }
    return time_interleaved(functions, repeats=repeats, warmup=warmup, device=device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--device",
        default="all",
        help="cpu, cuda, mps, or 'all' (the CPU, then the best accelerator if there is "
        "one); default: all",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=9,
        help="timed passes per implementation (default 9)",
    )
    parser.add_argument(
        "--warmup", type=int, default=2, help="untimed passes first (default 2)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for torch (default 1, as the book's chapters use)",
    )
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument(
        "--size",
        dest="sizes",
        type=parse_size,
        action="append",
        metavar="SxBxIxHxL",
        help="SEQ_LENxBATCHxINPUTxHIDDENxLAYERS; repeat for several "
        f"(default: {' '.join(str(size) for size in DEFAULT_SIZES)})",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit with status 1 if a ratio scratch / cell loop is above "
        f"{TARGET_RATIO}",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0 or args.threads < 1:
        parser.error("--repeats and --threads must be >= 1, --warmup >= 0")

    torch.set_num_threads(args.threads)
    if args.device == "all":
        accelerator = get_device()
        devices = [torch.device("cpu")] + (
            [accelerator] if accelerator.type != "cpu" else []
        )
    else:
        try:
            devices = [get_device(args.device)]
        except (RuntimeError, ValueError) as error:
            parser.error(str(error))
    dtype = getattr(torch, args.dtype)
    sizes = args.sizes or DEFAULT_SIZES

    print(
        f"torch {torch.__version__}, {args.dtype}, median of {args.repeats} "
        "interleaved repeats "
        f"after {args.warmup} warm-up passes; one forward + backward pass each"
    )
    worst = 0.0
    for device in devices:
        print(f"\n{describe_device(device)}")
        print(
            f"{'size (TxBxIxHxL)':>18} {'scratch ms':>11} {'cell loop ms':>13} "
            f"{'nn.RNN ms':>10} "
            f"{'scratch/cell':>13} {'cell/nn.RNN':>12}"
        )
        for size in sizes:
            seconds = time_one_size(size, device, args.repeats, args.warmup, dtype)
            ratio = seconds["scratch"] / seconds["cell loop"]
            worst = max(worst, ratio)
            print(
                f"{str(size):>18} {seconds['scratch'] * 1e3:>11.3f} "
                f"{seconds['cell loop'] * 1e3:>13.3f} "
                f"{seconds['nn.RNN'] * 1e3:>10.3f} {ratio:>13.2f} "
                f"{seconds['cell loop'] / seconds['nn.RNN']:>12.2f}"
            )
    verdict = "within" if worst <= TARGET_RATIO else "ABOVE"
    print(
        f"\nlargest ratio scratch / cell loop: {worst:.2f} ({verdict} the target of "
        f"{TARGET_RATIO})"
    )
    return 1 if args.check and worst > TARGET_RATIO else 0


if __name__ == "__main__":
    sys.exit(main())
