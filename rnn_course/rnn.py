"""Unrolling through time, and stacking layers (chapter 3).

Unrolling the memory cell over a sequence x₁ … x_T applies the *same* weights at every
step:

    h₁ = f(h₀ W_hᵀ + x₁ W_xᵀ + b),  h₂ = f(h₁ W_hᵀ + x₂ W_xᵀ + b),  …

A stacked (multi-layer) RNN feeds layer ℓ's hidden states to layer ℓ+1 as its inputs;
the network's ``output`` is the last layer's hidden state at every step, and ``h_n`` is
every layer's hidden state at the last step. Shapes follow ``nn.RNN`` exactly:

    input   (seq_len, batch, input_size)     or (batch, seq_len, input_size) when
    batch_first
    h_0     (num_layers, batch, hidden_size) — also when batch_first
    output  (seq_len, batch, hidden_size)    or (batch, seq_len, hidden_size) when
    batch_first
    h_n     (num_layers, batch, hidden_size) — also when batch_first
"""

from __future__ import annotations

import torch

from .cell import MemoryCell, rnn_cell_step
from .validate import require_positive_int, require_same_device_dtype, require_tensor


def rnn_layer_forward(
    x: torch.Tensor,
    h0: torch.Tensor,
    W_x: torch.Tensor,
    W_h: torch.Tensor,
    b: torch.Tensor,
    nonlinearity: str = "tanh",
) -> torch.Tensor:
    """Unroll one layer over time. x (seq_len, batch, input_size), h0 (batch,
    hidden_size).

    Returns every hidden state h₁ … h_T as (seq_len, batch, hidden_size).
    """
    hidden_states = []
    h_t = h0  # (batch, hidden)
    for x_t in x:  # x_t: (batch, input)
        h_t = rnn_cell_step(x_t, h_t, W_x, W_h, b, nonlinearity)  # (batch, hidden)
        hidden_states.append(h_t)
    return torch.stack(hidden_states)  # (seq_len, batch, hidden)


class ScratchRNN(torch.nn.Module):
    """A stacked RNN built from :class:`~rnn_course.cell.MemoryCell` s, with
    ``nn.RNN``'s interface.

    ``cells[k]`` holds layer k's ``W_x``, ``W_h`` and ``b``; layer 0 reads
    ``input_size`` features, every later layer reads the ``hidden_size`` states of the
    layer below.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        batch_first: bool = False,
        dtype: torch.dtype = torch.float32,
        device=None,
    ):
        super().__init__()
        require_positive_int(num_layers, "num_layers")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.nonlinearity = nonlinearity
        self.batch_first = batch_first
        self.cells = torch.nn.ModuleList(
            MemoryCell(
                input_size if layer == 0 else hidden_size,
                hidden_size,
                nonlinearity,
                dtype,
                device,
            )
            for layer in range(num_layers)
        )

    def forward(
        self, x: torch.Tensor, h0: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(output, h_n)`` exactly as ``nn.RNN`` does (shapes in the module
        docstring).
        """
        layout = (
            "(batch, seq_len, input_size)"
            if self.batch_first
            else "(seq_len, batch, input_size)"
        )
        require_tensor(x, "x", ndim=3, shape_hint=layout)
        require_same_device_dtype(self.cells[0].W_x, "the RNN's weights", x, "x")
        if self.batch_first:
            x = x.transpose(0, 1)  # (seq_len, batch, input)
        seq_len, batch, features = x.shape
        if seq_len == 0:
            raise ValueError(
                "x is an empty sequence (seq_len = 0); an RNN needs at least one step"
            )
        if features != self.input_size:
            raise ValueError(
                f"x must have input_size = {self.input_size} features in its last "
                "dimension, "
                f"got {features} (shape {tuple(x.shape)} with layout {layout})"
            )
        h0 = self._initial_state(h0, batch, x)
        layer_input = (
            x  # (seq_len, batch, input) for layer 0, then (seq_len, batch, hidden)
        )
        last_states = []
        for layer, cell in enumerate(self.cells):
            layer_input = rnn_layer_forward(
                layer_input, h0[layer], cell.W_x, cell.W_h, cell.b, self.nonlinearity
            )
            last_states.append(layer_input[-1])  # (batch, hidden)
        output = layer_input  # the last layer's hidden states: (seq_len, batch, hidden)
        h_n = torch.stack(last_states)  # (num_layers, batch, hidden)
        if self.batch_first:
            output = output.transpose(
                0, 1
            )  # (batch, seq_len, hidden); h_n keeps its layout
        return output, h_n

    def _initial_state(
        self, h0: torch.Tensor | None, batch: int, x: torch.Tensor
    ) -> torch.Tensor:
        expected = (self.num_layers, batch, self.hidden_size)
        if h0 is None:
            return x.new_zeros(expected)  # h₀ = 0 for every layer
        require_tensor(h0, "h0", ndim=3, shape_hint="(num_layers, batch, hidden_size)")
        require_same_device_dtype(x, "x", h0, "h0")
        if tuple(h0.shape) != expected:
            hint = (
                " (h0 stays (num_layers, batch, hidden_size) even when "
                "batch_first=True)"
                if self.batch_first
                else ""
            )
            raise ValueError(
                f"h0 must be (num_layers, batch, hidden_size) = {expected}, "
                f"got {tuple(h0.shape)}{hint}"
            )
        return h0

    def extra_repr(self) -> str:
        return f"batch_first={self.batch_first}"
