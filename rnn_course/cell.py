"""The memory cell (chapter 2).

One equation is the whole idea:

    hₜ = tanh(hₜ₋₁ W_hᵀ + xₜ W_xᵀ + b),   h₀ = 0

The cell's output hₜ is fed back as one of its own inputs at the next step, so hₜ
depends on every input seen so far: the cell has memory. The weights follow ``nn.RNN``'s
layout (``W_x`` is hidden×input, ``W_h`` is hidden×hidden), so they copy straight across
(chapter 5); ``nn.RNN`` splits ``b`` into two biases, ``b_ih + b_hh``.
"""

from __future__ import annotations

import math

import torch

from .validate import require_positive_int, require_same_device_dtype, require_tensor

ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}


def get_activation(nonlinearity: str):
    """``"tanh"`` (the default everywhere, as in ``nn.RNN``) or ``"relu"``."""
    if nonlinearity not in ACTIVATIONS:
        raise ValueError(
            f"nonlinearity must be one of {sorted(ACTIVATIONS)}, got {nonlinearity!r}"
        )
    return ACTIVATIONS[nonlinearity]


def rnn_cell_step(
    x_t: torch.Tensor,
    h_prev: torch.Tensor,
    W_x: torch.Tensor,
    W_h: torch.Tensor,
    b: torch.Tensor,
    nonlinearity: str = "tanh",
) -> torch.Tensor:
    """One step of the memory cell: hₜ = f(hₜ₋₁ W_hᵀ + xₜ W_xᵀ + b).

    x_t (batch, input_size), h_prev (batch, hidden_size), W_x (hidden_size, input_size),
    W_h (hidden_size, hidden_size), b (hidden_size,). Returns hₜ (batch, hidden_size).
    """
    activation = get_activation(nonlinearity)
    pre_activation = h_prev @ W_h.T + x_t @ W_x.T + b  # (batch, hidden)
    return activation(pre_activation)  # (batch, hidden)


class MemoryCell(torch.nn.Module):
    """The memory cell with its own weights, initialised like ``nn.RNNCell``:
    U(-1/√hidden, 1/√hidden).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        nonlinearity: str = "tanh",
        dtype: torch.dtype = torch.float32,
        device=None,
    ):
        super().__init__()
        require_positive_int(input_size, "input_size")
        require_positive_int(hidden_size, "hidden_size")
        get_activation(nonlinearity)  # fail early on an unknown name
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.nonlinearity = nonlinearity
        bound = 1 / math.sqrt(hidden_size)

        def uniform(*shape):
            return torch.nn.Parameter(
                torch.empty(*shape, dtype=dtype, device=device).uniform_(-bound, bound)
            )

        self.W_x = uniform(hidden_size, input_size)  # (hidden, input)
        self.W_h = uniform(hidden_size, hidden_size)  # (hidden, hidden)
        self.b = uniform(hidden_size)  # (hidden,)

    def forward(
        self, x_t: torch.Tensor, h_prev: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x_t (batch, input_size), h_prev (batch, hidden_size) or None for h₀ = 0 -> hₜ
        (batch, hidden_size).
        """
        require_tensor(x_t, "x_t", ndim=2, shape_hint="(batch, input_size)")
        require_same_device_dtype(self.W_x, "the cell's weights", x_t, "x_t")
        if x_t.shape[1] != self.input_size:
            raise ValueError(
                f"x_t must be (batch, input_size) = (batch, {self.input_size}), got "
                f"{tuple(x_t.shape)}"
            )
        batch = x_t.shape[0]
        if h_prev is None:
            h_prev = x_t.new_zeros(batch, self.hidden_size)  # h₀ = 0
        require_tensor(h_prev, "h_prev", ndim=2, shape_hint="(batch, hidden_size)")
        if tuple(h_prev.shape) != (batch, self.hidden_size):
            raise ValueError(
                f"h_prev must be (batch, hidden_size) = ({batch}, {self.hidden_size}), "
                f"got {tuple(h_prev.shape)}"
            )
        return rnn_cell_step(x_t, h_prev, self.W_x, self.W_h, self.b, self.nonlinearity)

    def extra_repr(self) -> str:
        return (
            f"input_size={self.input_size}, hidden_size={self.hidden_size}, "
            f"nonlinearity={self.nonlinearity!r}"
        )
