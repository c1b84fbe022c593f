"""rnn_course: the helper package of the course "Recurrent neural networks from first
principles".

One small module per idea, in chapter order:

================  ===========================================================  =======
module            what it holds                                                chapter
================  ===========================================================  =======
``data``          Seattle weather (offline), time splits, windows, sines       1, 6
``neuron``        a neuron, the fixed-window predictor, persistence baseline   1
``cell``          the memory cell hₜ = tanh(hₜ₋₁W_hᵀ + xₜW_xᵀ + b)             2
``rnn``           the unrolled, stacked RNN with ``nn.RNN``'s interface        3
``plotting``      the unrolled diagram, gradient norms over time               2-4
``bptt``          backpropagation through time by hand, truncation, clipping   4
``torch_bridge``  weights to and from ``nn.RNN`` / ``nn.RNNCell``, cell loops  5
``timing``        side-by-side timing (interleaved repeats, medians)           5
``train``         an ``nn.RNN`` forecaster: training, multi-step, packing      6
``text``          Shakespeare (offline), characters, streams, sampling         7
``gated``         LSTM and GRU from scratch, ``nn.LSTM`` / ``nn.GRU`` twins    8
``device``        CPU / CUDA / MPS, seeds, deterministic settings              all
``checks``        assertions whose messages name the likely mistake            exercises
================  ===========================================================  =======
"""

import importlib

__version__ = "0.1.0"
_SHORTCUTS = {
    "MemoryCell": "cell",
    "rnn_cell_step": "cell",
    "get_device": "device",
    "make_deterministic": "device",
    "seed_everything": "device",
    "ScratchRNN": "rnn",
}
"""``rnn_course.MemoryCell`` and the others, imported from their module when first used:
importing the package (or only its grader, ``rnn-course grade``) does not import
torch."""


def __getattr__(name: str):
    if name in _SHORTCUTS:
        return getattr(importlib.import_module(f".{_SHORTCUTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MemoryCell",
    "ScratchRNN",
    "get_device",
    "make_deterministic",
    "rnn_cell_step",
    "seed_everything",
]
