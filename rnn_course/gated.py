"""Gated cells: the LSTM and the GRU, built from the memory cell (chapter 8).

The memory cell of chapter 2 rewrites its whole state at every step, and chapter 4
showed the price: the gradient reaching an early step is a product of one factor per
step, and it vanishes. A gated cell adds gates, sigmoids between 0 and 1 computed from
xₜ and hₜ₋₁ like the memory cell's pre-activation, that decide how much of the old
state to keep.

LSTM (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000):

    iₜ = σ(xₜW_iiᵀ + b_ii + hₜ₋₁W_hiᵀ + b_hi)      input gate
    fₜ = σ(xₜW_ifᵀ + b_if + hₜ₋₁W_hfᵀ + b_hf)      forget gate
    gₜ = tanh(xₜW_igᵀ + b_ig + hₜ₋₁W_hgᵀ + b_hg)   candidate (the memory cell itself)
    oₜ = σ(xₜW_ioᵀ + b_io + hₜ₋₁W_hoᵀ + b_ho)      output gate
    cₜ = fₜ ⊙ cₜ₋₁ + iₜ ⊙ gₜ                       the cell state: kept, plus added
    hₜ = oₜ ⊙ tanh(cₜ)

GRU (Cho et al. 2014), as PyTorch computes it:

    rₜ = σ(xₜW_irᵀ + b_ir + hₜ₋₁W_hrᵀ + b_hr)      reset gate
    zₜ = σ(xₜW_izᵀ + b_iz + hₜ₋₁W_hzᵀ + b_hz)      update gate
    nₜ = tanh(xₜW_inᵀ + b_in + rₜ ⊙ (hₜ₋₁W_hnᵀ + b_hn))
    hₜ = (1 − zₜ) ⊙ nₜ + zₜ ⊙ hₜ₋₁

Cho et al. put the reset gate before the product, ``(rₜ ⊙ hₜ₋₁) W_hnᵀ``; PyTorch (and
cuDNN) after it, on ``hₜ₋₁W_hnᵀ + b_hn``: that is why ``b_hn`` is not redundant with
``b_in``. ``reset_after=False`` gives the paper's version, which PyTorch does not offer.

Layout, as in ``nn.LSTM`` / ``nn.GRU``: the gates' weights are stacked along the first
dimension in PyTorch's order (LSTM: i, f, g, o; GRU: r, z, n), so ``weight_ih`` is
(4·hidden, input) or (3·hidden, input), ``weight_hh`` (4·hidden, hidden) or
(3·hidden, hidden), and each of ``bias_ih``, ``bias_hh`` has one entry per row. The
parameters carry ``nn.LSTMCell``'s names, and layer k of a stack has ``nn.LSTM``'s
``weight_ih_l{k}`` …, so state dicts copy across.

Shapes of the stacked versions, exactly as ``nn.LSTM`` and ``nn.GRU``:

    input          (seq_len, batch, input_size) or (batch, seq_len, input_size)
    output         (seq_len, batch, hidden)     or (batch, seq_len, hidden)
    h_0, h_n, c_0, c_n   (num_layers, batch, hidden) — also when batch_first
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .validate import require_positive_int, require_same_device_dtype, require_tensor

LSTM_GATES = ("input", "forget", "cell", "output")
"""The order of the LSTM's gate blocks in weight_ih and weight_hh, as in PyTorch."""
GRU_GATES = ("reset", "update", "new")
"""The order of the GRU's gate blocks, as in PyTorch."""


def lstm_cell_step(
    x_t: torch.Tensor,
    h_prev: torch.Tensor,
    c_prev: torch.Tensor,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor,
    bias_ih: torch.Tensor,
    bias_hh: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM step: returns (hₜ, cₜ), both (batch, hidden).

    x_t (batch, input), h_prev and c_prev (batch, hidden), weight_ih (4·hidden, input),
    weight_hh (4·hidden, hidden), bias_ih and bias_hh (4·hidden,); gates i, f, g, o.
    """
    gates = (
        x_t @ weight_ih.T + bias_ih + h_prev @ weight_hh.T + bias_hh
    )  # (batch, 4·hid)
    i_pre, f_pre, g_pre, o_pre = gates.chunk(4, dim=1)  # each (batch, hidden)
    input_gate = torch.sigmoid(i_pre)  # (batch, hidden)
    forget_gate = torch.sigmoid(f_pre)  # (batch, hidden)
    candidate = torch.tanh(g_pre)  # (batch, hidden): chapter 2's cell
    output_gate = torch.sigmoid(o_pre)  # (batch, hidden)
    c_t = forget_gate * c_prev + input_gate * candidate  # (batch, hidden)
    h_t = output_gate * torch.tanh(c_t)  # (batch, hidden)
    return h_t, c_t


def gru_cell_step(
    x_t: torch.Tensor,
    h_prev: torch.Tensor,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor,
    bias_ih: torch.Tensor,
    bias_hh: torch.Tensor,
    reset_after: bool = True,
) -> torch.Tensor:
    """One GRU step: returns hₜ (batch, hidden).

    x_t (batch, input), h_prev (batch, hidden), weight_ih (3·hidden, input), weight_hh
    (3·hidden, hidden), biases (3·hidden,); gates in r, z, n order. ``reset_after=True``
    is PyTorch's GRU, ``False`` the original paper's (reset gate before the product).
    """
    from_input = x_t @ weight_ih.T + bias_ih  # (batch, 3·hidden)
    i_r, i_z, i_n = from_input.chunk(3, dim=1)  # each (batch, hidden)
    W_hr, W_hz, W_hn = weight_hh.chunk(3, dim=0)  # each (hidden, hidden)
    b_hr, b_hz, b_hn = bias_hh.chunk(3)  # each (hidden,)
    reset = torch.sigmoid(i_r + h_prev @ W_hr.T + b_hr)  # (batch, hidden)
    update = torch.sigmoid(i_z + h_prev @ W_hz.T + b_hz)  # (batch, hidden)
    if reset_after:
        recurrent = reset * (h_prev @ W_hn.T + b_hn)  # (batch, hidden): PyTorch
    else:
        recurrent = (reset * h_prev) @ W_hn.T + b_hn  # (batch, hidden): Cho et al.
    new = torch.tanh(i_n + recurrent)  # (batch, hidden)
    return (1 - update) * new + update * h_prev  # (batch, hidden)


class _GatedCell(nn.Module):
    """Parameters shaped like nn.LSTMCell's / nn.GRUCell's: ``gates`` blocks of rows."""

    gates = 1
    kind = ""

    def __init__(
        self, input_size: int, hidden_size: int, dtype=torch.float32, device=None
    ):
        super().__init__()
        require_positive_int(input_size, "input_size")
        require_positive_int(hidden_size, "hidden_size")
        self.input_size = input_size
        self.hidden_size = hidden_size
        rows = self.gates * hidden_size
        bound = 1 / math.sqrt(
            hidden_size
        )  # PyTorch's initialisation: U(-1/√hid, 1/√hid)

        def uniform(*shape):
            values = torch.empty(*shape, dtype=dtype, device=device)
            return nn.Parameter(values.uniform_(-bound, bound))

        self.weight_ih = uniform(rows, input_size)  # (gates·hidden, input)
        self.weight_hh = uniform(rows, hidden_size)  # (gates·hidden, hidden)
        self.bias_ih = uniform(rows)  # (gates·hidden,)
        self.bias_hh = uniform(rows)  # (gates·hidden,)

    def _check_input(self, x_t: torch.Tensor) -> int:
        require_tensor(x_t, "x_t", ndim=2, shape_hint="(batch, input_size)")
        require_same_device_dtype(
            self.weight_ih, f"the {self.kind}'s weights", x_t, "x_t"
        )
        if x_t.shape[1] != self.input_size:
            raise ValueError(
                f"x_t must be (batch, input_size) = (batch, {self.input_size}), "
                f"got {tuple(x_t.shape)}"
            )
        return x_t.shape[0]

    def _state(self, state, name: str, batch: int, like: torch.Tensor) -> torch.Tensor:
        if state is None:
            return like.new_zeros(batch, self.hidden_size)  # a zero initial state
        require_tensor(state, name, ndim=2, shape_hint="(batch, hidden_size)")
        require_same_device_dtype(like, "x_t", state, name)
        if tuple(state.shape) != (batch, self.hidden_size):
            raise ValueError(
                f"{name} must be (batch, hidden_size) = ({batch}, {self.hidden_size}), "
                f"got {tuple(state.shape)}"
            )
        return state

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, hidden_size={self.hidden_size}"


class LSTMCell(_GatedCell):
    """The LSTM cell from scratch, with ``nn.LSTMCell``'s parameters and interface."""

    gates = 4
    kind = "LSTM cell"

    def forward(
        self, x_t: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x_t (batch, input), hx = (h_prev, c_prev) or None for zeros -> (hₜ, cₜ)."""
        batch = self._check_input(x_t)
        h_prev, c_prev = (None, None) if hx is None else hx
        h_prev = self._state(h_prev, "h_prev", batch, x_t)
        c_prev = self._state(c_prev, "c_prev", batch, x_t)
        return lstm_cell_step(
            x_t,
            h_prev,
            c_prev,
            self.weight_ih,
            self.weight_hh,
            self.bias_ih,
            self.bias_hh,
        )


class GRUCell(_GatedCell):
    """The GRU cell from scratch, with ``nn.GRUCell``'s parameters and interface.

    ``reset_after=False`` applies the reset gate before the product, as Cho et al. did.
    """

    gates = 3
    kind = "GRU cell"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        reset_after: bool = True,
        dtype=torch.float32,
        device=None,
    ):
        super().__init__(input_size, hidden_size, dtype, device)
        self.reset_after = reset_after

    def forward(
        self, x_t: torch.Tensor, h_prev: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x_t (batch, input), h_prev (batch, hidden) or None for zeros -> hₜ."""
        batch = self._check_input(x_t)
        h_prev = self._state(h_prev, "h_prev", batch, x_t)
        return gru_cell_step(
            x_t,
            h_prev,
            self.weight_ih,
            self.weight_hh,
            self.bias_ih,
            self.bias_hh,
            self.reset_after,
        )

    def extra_repr(self) -> str:
        return super().extra_repr() + f", reset_after={self.reset_after}"


def lstm_layer_forward(x, h0, c0, cell: LSTMCell):
    """Unroll one LSTM layer: x (seq_len, batch, input), h0 and c0 (batch, hidden).

    Returns (every hₜ (seq_len, batch, hidden), the last cell state c_T (batch, hid)).
    """
    hidden_states = []
    h_t, c_t = h0, c0  # (batch, hidden) each
    for x_t in x:  # (batch, input)
        h_t, c_t = cell(x_t, (h_t, c_t))  # (batch, hidden) each
        hidden_states.append(h_t)
    return torch.stack(hidden_states), c_t  # (seq_len, batch, hidden), (batch, hidden)


def gru_layer_forward(x, h0, cell: GRUCell):
    """Unroll one GRU layer: x (seq_len, batch, input), h0 (batch, hidden) -> all hₜ."""
    hidden_states = []
    h_t = h0  # (batch, hidden)
    for x_t in x:  # (batch, input)
        h_t = cell(x_t, h_t)  # (batch, hidden)
        hidden_states.append(h_t)
    return torch.stack(hidden_states)  # (seq_len, batch, hidden)


class _GatedStack(nn.Module):
    """A stack of gated cells with nn.LSTM's / nn.GRU's layouts and parameter names."""

    cell_class = _GatedCell

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        batch_first: bool = False,
        dtype=torch.float32,
        device=None,
        **cell_options,
    ):
        super().__init__()
        require_positive_int(num_layers, "num_layers")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.batch_first = batch_first
        self.cells = nn.ModuleList(
            self.cell_class(
                input_size if layer == 0 else hidden_size,
                hidden_size,
                dtype=dtype,
                device=device,
                **cell_options,
            )
            for layer in range(num_layers)
        )

    def _time_first(self, x: torch.Tensor) -> torch.Tensor:
        layout = (
            "(batch, seq_len, input_size)"
            if self.batch_first
            else "(seq_len, batch, input_size)"
        )
        require_tensor(x, "x", ndim=3, shape_hint=layout)
        require_same_device_dtype(self.cells[0].weight_ih, "the weights", x, "x")
        if self.batch_first:
            x = x.transpose(0, 1)  # (seq_len, batch, input)
        if x.shape[0] == 0:
            raise ValueError(
                "x is an empty sequence (seq_len = 0); it needs at least one step"
            )
        if x.shape[2] != self.input_size:
            raise ValueError(
                f"x must have input_size = {self.input_size} features in its last "
                f"dimension, got shape {tuple(x.shape)} with layout {layout}"
            )
        return x

    def _initial(self, state, name: str, x: torch.Tensor) -> torch.Tensor:
        expected = (self.num_layers, x.shape[1], self.hidden_size)
        if state is None:
            return x.new_zeros(expected)  # zeros for every layer
        require_tensor(
            state, name, ndim=3, shape_hint="(num_layers, batch, hidden_size)"
        )
        require_same_device_dtype(x, "x", state, name)
        if tuple(state.shape) != expected:
            raise ValueError(
                f"{name} must be (num_layers, batch, hidden_size) = {expected}, got "
                f"{tuple(state.shape)} ({name} is never batch-first)"
            )
        return state

    def _batch_layout(self, output: torch.Tensor) -> torch.Tensor:
        return output.transpose(0, 1) if self.batch_first else output

    def extra_repr(self) -> str:
        return f"num_layers={self.num_layers}, batch_first={self.batch_first}"


class ScratchLSTM(_GatedStack):
    """A stacked LSTM of :class:`LSTMCell` s; returns ``(output, (h_n, c_n))``."""

    cell_class = LSTMCell

    def forward(
        self, x: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None
    ):
        """x in the layout of ``batch_first``; hx = (h_0, c_0) or None, as nn.LSTM."""
        x = self._time_first(x)  # (seq_len, batch, input)
        h0, c0 = (None, None) if hx is None else hx
        h0, c0 = self._initial(h0, "h_0", x), self._initial(c0, "c_0", x)
        layer_input = x  # (seq_len, batch, input), then (seq_len, batch, hidden)
        last_h, last_c = [], []
        for layer, cell in enumerate(self.cells):
            layer_input, c_last = lstm_layer_forward(
                layer_input, h0[layer], c0[layer], cell
            )
            last_h.append(layer_input[-1])  # (batch, hidden)
            last_c.append(c_last)  # (batch, hidden)
        h_n, c_n = (
            torch.stack(last_h),
            torch.stack(last_c),
        )  # (layers, batch, hidden) each
        return self._batch_layout(layer_input), (h_n, c_n)


class ScratchGRU(_GatedStack):
    """A stacked GRU from :class:`GRUCell` s; ``forward`` returns ``(output, h_n)``."""

    cell_class = GRUCell

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        batch_first: bool = False,
        reset_after: bool = True,
        dtype=torch.float32,
        device=None,
    ):
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            batch_first,
            dtype,
            device,
            reset_after=reset_after,
        )
        self.reset_after = reset_after

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None):
        """x in the layout of ``batch_first``; h0 (layers, batch, hidden) or None."""
        x = self._time_first(x)  # (seq_len, batch, input)
        h0 = self._initial(h0, "h_0", x)
        layer_input = x  # (seq_len, batch, input), then (seq_len, batch, hidden)
        last_h = []
        for layer, cell in enumerate(self.cells):
            layer_input = gru_layer_forward(layer_input, h0[layer], cell)
            last_h.append(layer_input[-1])  # (batch, hidden)
        return self._batch_layout(layer_input), torch.stack(last_h)


# Conversion both ways: nn.LSTM <-> ScratchLSTM, nn.GRU <-> ScratchGRU, and the cells.
_PARAMETERS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
_SCRATCH_OF = {
    nn.LSTM: ScratchLSTM,
    nn.GRU: ScratchGRU,
    nn.LSTMCell: LSTMCell,
    nn.GRUCell: GRUCell,
}
_TORCH_OF = {scratch: torch_class for torch_class, scratch in _SCRATCH_OF.items()}


def _copy_parameters(
    source: nn.Module, target: nn.Module, source_suffix: str, target_suffix: str
) -> None:
    with torch.no_grad():
        for name in _PARAMETERS:
            value = getattr(source, name + source_suffix, None)
            target_parameter = getattr(target, name + target_suffix)
            if value is None:  # nn.LSTM(bias=False): the biases are zero
                target_parameter.zero_()
            else:
                target_parameter.copy_(value)


def _check_torch_module(module: nn.Module) -> None:
    if type(module) not in _SCRATCH_OF:
        raise TypeError(
            "expected an nn.LSTM, nn.GRU, nn.LSTMCell or nn.GRUCell, "
            f"got {type(module).__name__}"
        )
    if getattr(module, "bidirectional", False):
        raise ValueError(
            "a bidirectional LSTM/GRU is not covered by the scratch versions"
        )
    if getattr(module, "proj_size", 0):
        raise ValueError(
            "an LSTM with proj_size is not covered by the scratch versions"
        )


def from_torch(module: nn.Module) -> nn.Module:
    """The scratch twin of an nn.LSTM, nn.GRU, nn.LSTMCell or nn.GRUCell.

    Same weights, same function; a module built with ``bias=False`` gets zero biases.
    """
    _check_torch_module(module)
    weight = module.weight_ih_l0 if hasattr(module, "num_layers") else module.weight_ih
    options = {"dtype": weight.dtype, "device": weight.device}
    if hasattr(module, "num_layers"):  # nn.LSTM / nn.GRU
        scratch = _SCRATCH_OF[type(module)](
            module.input_size,
            module.hidden_size,
            module.num_layers,
            module.batch_first,
            **options,
        )
        for layer, cell in enumerate(scratch.cells):
            _copy_parameters(module, cell, f"_l{layer}", "")
        return scratch
    scratch = _SCRATCH_OF[type(module)](
        module.input_size, module.hidden_size, **options
    )
    _copy_parameters(module, scratch, "", "")
    return scratch


def to_torch(scratch: nn.Module) -> nn.Module:
    """The PyTorch twin of a ScratchLSTM, ScratchGRU, LSTMCell or GRUCell."""
    if type(scratch) not in _TORCH_OF:
        raise TypeError(
            "expected a ScratchLSTM, ScratchGRU, LSTMCell or GRUCell of "
            f"rnn_course.gated, got {type(scratch).__name__}"
        )
    if not getattr(scratch, "reset_after", True):
        raise ValueError(
            "PyTorch's GRU applies the reset gate after the product (reset_after=True);"
            " a GRU with reset_after=False has no nn.GRU twin"
        )
    cells = scratch.cells if hasattr(scratch, "cells") else [scratch]
    weight = cells[0].weight_ih
    options = {"dtype": weight.dtype, "device": weight.device}
    torch_class = _TORCH_OF[type(scratch)]
    if hasattr(scratch, "cells"):
        module = torch_class(
            scratch.input_size,
            scratch.hidden_size,
            scratch.num_layers,
            batch_first=scratch.batch_first,
            **options,
        )
        for layer, cell in enumerate(cells):
            _copy_parameters(cell, module, "", f"_l{layer}")
        return module
    module = torch_class(scratch.input_size, scratch.hidden_size, **options)
    _copy_parameters(scratch, module, "", "")
    return module


def torch_to_cells(module: nn.LSTM | nn.GRU) -> nn.ModuleList:
    """One nn.LSTMCell (or nn.GRUCell) per layer of ``module``, with its weights."""
    _check_torch_module(module)
    if type(module) not in (nn.LSTM, nn.GRU):
        raise TypeError(f"expected an nn.LSTM or nn.GRU, got {type(module).__name__}")
    cell_class = nn.LSTMCell if isinstance(module, nn.LSTM) else nn.GRUCell
    weight = module.weight_ih_l0
    cells = nn.ModuleList()
    for layer in range(module.num_layers):
        cell_input = module.input_size if layer == 0 else module.hidden_size
        cell = cell_class(
            cell_input, module.hidden_size, dtype=weight.dtype, device=weight.device
        )
        _copy_parameters(module, cell, f"_l{layer}", "")
        cells.append(cell)
    return cells


def gated_cell_loop(cells, x: torch.Tensor, hx=None, batch_first: bool = False):
    """Loop nn.LSTMCell s or nn.GRUCell s (one per layer) over a sequence by hand.

    Returns what ``nn.LSTM`` returns, ``(output, (h_n, c_n))``, for LSTM cells, and what
    ``nn.GRU`` returns, ``(output, h_n)``, for GRU cells; hx as those modules take it.
    """
    if len(cells) == 0:
        raise ValueError("cells is empty: give one nn.LSTMCell or nn.GRUCell per layer")
    is_lstm = isinstance(cells[0], (nn.LSTMCell, LSTMCell))
    layout = "(batch, seq_len, input)" if batch_first else "(seq_len, batch, input)"
    require_tensor(x, "x", ndim=3, shape_hint=layout)
    if batch_first:
        x = x.transpose(0, 1)  # (seq_len, batch, input)
    shape = (len(cells), x.shape[1], cells[0].hidden_size)  # (layers, batch, hidden)
    if hx is None:
        hx = (x.new_zeros(shape), x.new_zeros(shape)) if is_lstm else x.new_zeros(shape)
    states = hx if is_lstm else (hx,)
    for state in states:
        if tuple(state.shape) != shape:
            raise ValueError(
                f"initial states must be (layers, batch, hidden) = {shape}, "
                f"got {tuple(state.shape)} (never batch-first)"
            )
    h = list(states[0].unbind(0))  # one (batch, hidden) per layer
    c = list(states[1].unbind(0)) if is_lstm else None
    outputs = []
    for x_t in x:  # (batch, input)
        layer_input = x_t
        for layer, cell in enumerate(cells):
            if is_lstm:
                h[layer], c[layer] = cell(layer_input, (h[layer], c[layer]))
            else:
                h[layer] = cell(layer_input, h[layer])  # (batch, hidden)
            layer_input = h[layer]
        outputs.append(layer_input)  # the top layer's state at step t
    output = torch.stack(outputs)  # (seq_len, batch, hidden)
    if batch_first:
        output = output.transpose(0, 1)  # (batch, seq_len, hidden)
    if is_lstm:
        return output, (torch.stack(h), torch.stack(c))
    return output, torch.stack(h)


def input_gradient_norms(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """‖∂L/∂xₜ‖ for every step t, averaged over the batch, with L = Σ h_T (last output).

    ``model`` is any of ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` or their scratch versions,
    time first; x (seq_len, batch, input). Returns (seq_len,): how much the last state
    still depends on each input, the gradient path a gate keeps open or closes.
    """
    require_tensor(x, "x", ndim=3, shape_hint="(seq_len, batch, input)")
    if getattr(model, "batch_first", False):
        raise ValueError(
            "input_gradient_norms expects a time-first model (batch_first=False)"
        )
    x = x.detach().clone().requires_grad_(True)
    output, _ = model(x)  # (seq_len, batch, hidden)
    (gradient,) = torch.autograd.grad(output[-1].sum(), x)  # (seq_len, batch, input)
    return torch.linalg.vector_norm(gradient, dim=2).mean(dim=1)  # (seq_len,)
