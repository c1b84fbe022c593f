"""Timing implementations against each other, fairly (chapter 5, and ``benchmarks/``).

One timing of one call says little: the first call allocates memory and picks kernels,
and another program or a change of CPU clock speed can slow any single run. Three habits
make a comparison of several implementations fair:

1. warm up: call each one before the clock starts;
2. interleave: time A, B, C, then B, C, A, then C, A, B, … so that a slow spell hits
   every implementation alike instead of all the runs of one of them;
3. take the median of the repeats, which ignores the odd slow run.

A GPU runs kernels asynchronously: a call returns once its work is queued, not done. The
clock is read only after :func:`synchronize`, or it measures the launch and not the
work.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Mapping

import torch

from .validate import require_positive_int


def synchronize(device: torch.device | str | None) -> None:
    """Wait until every queued kernel on ``device`` has finished (nothing to wait for on
    the CPU).
    """
    if device is None:
        return
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def time_interleaved(
    functions: Mapping[str, Callable[[], object]],
    repeats: int = 5,
    warmup: int = 1,
    device: torch.device | str | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Median seconds per call of each function, timed in turn with a rotating order.

    ``functions`` maps a name to a function without arguments. Each one is called
    ``warmup`` times untimed, then ``repeats`` times timed; round r starts with the r-th
    function, so no implementation always runs first or last. ``device`` is synchronised
    before and after every timed call. Returns ``{name: median seconds}`` in the order
    of ``functions``.
    """
    if not functions:
        raise ValueError(
            "functions is empty: give at least one {name: function} to time"
        )
    for name, function in functions.items():
        if not callable(function):
            raise TypeError(
                f"functions[{name!r}] must be a function without arguments, "
                f"got {type(function).__name__}"
            )
    require_positive_int(repeats, "repeats")
    if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0, got {warmup!r}")
    names = list(functions)
    for _ in range(warmup):
        for name in names:
            functions[name]()
    synchronize(device)
    seconds = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            synchronize(device)
            start = clock()
            functions[name]()
            synchronize(device)
            seconds[name].append(clock() - start)
    return {name: statistics.median(seconds[name]) for name in names}


def rnn_forward_backward(
    run: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    x: torch.Tensor,
    parameters: Iterable[torch.nn.Parameter],
) -> Callable[[], None]:
    """A function that does one forward and backward pass of an RNN, for timing.

    ``run(x)`` must return ``(output, h_n)`` like ``nn.RNN``; the loss is ``output.sum()
    + h_n.sum()``. The gradients of ``parameters`` are cleared before each pass, so
    repeated calls do the same work and leave the gradients of one pass.
    """
    parameters = list(parameters)
    if not parameters:
        raise ValueError(
            "parameters is empty: give the model's parameters so their gradients are "
            "cleared"
        )

    def forward_backward() -> None:
        for parameter in parameters:
            parameter.grad = None
        output, h_n = run(x)
        (output.sum() + h_n.sum()).backward()

    return forward_backward
