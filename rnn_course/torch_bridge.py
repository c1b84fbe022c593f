"""``nn.RNN`` versus ``nn.RNNCell``, and the bridge to the scratch RNN (chapter 5).

PyTorch stores layer k's weights as

    weight_ih_l{k}  (hidden, input)   = our W_x
    weight_hh_l{k}  (hidden, hidden)  = our W_h
    bias_ih_l{k}    (hidden,)    }
    bias_hh_l{k}    (hidden,)    }  two biases that are only ever added: b = bias_ih +
    bias_hh

(cuDNN's kernels have both, so PyTorch does too.) Going from one bias to two, any split
works; we put all of b in ``bias_ih`` and zeros in ``bias_hh``.

``nn.RNN`` runs the whole sequence in one call (a fused loop in C++ or cuDNN).
``nn.RNNCell`` does one step; looping it by hand is slower but lets you act between
steps, e.g. feed a prediction back in as the next input.
"""

from __future__ import annotations

import torch

from .rnn import ScratchRNN
from .validate import require_tensor


def _check_supported(rnn: torch.nn.RNN) -> None:
    if not isinstance(rnn, torch.nn.RNN):
        raise TypeError(f"expected a torch.nn.RNN, got {type(rnn).__name__}")
    if rnn.bidirectional:
        raise ValueError(
            "bidirectional nn.RNN is not covered by the course's scratch RNN"
        )
    if getattr(rnn, "proj_size", 0):
        raise ValueError("nn.RNN with proj_size is not supported")


def torch_rnn_to_scratch(rnn: torch.nn.RNN) -> ScratchRNN:
    """A :class:`ScratchRNN` that computes exactly what ``rnn`` computes (b = bias_ih +
    bias_hh).
    """
    _check_supported(rnn)
    weight = rnn.weight_ih_l0
    scratch = ScratchRNN(
        rnn.input_size,
        rnn.hidden_size,
        rnn.num_layers,
        rnn.nonlinearity,
        rnn.batch_first,
        dtype=weight.dtype,
        device=weight.device,
    )
    with torch.no_grad():
        for layer, cell in enumerate(scratch.cells):
            cell.W_x.copy_(getattr(rnn, f"weight_ih_l{layer}"))
            cell.W_h.copy_(getattr(rnn, f"weight_hh_l{layer}"))
            if rnn.bias:
                cell.b.copy_(
                    getattr(rnn, f"bias_ih_l{layer}")
                    + getattr(rnn, f"bias_hh_l{layer}")
                )
            else:
                cell.b.zero_()
    return scratch


def scratch_to_torch_rnn(scratch: ScratchRNN) -> torch.nn.RNN:
    """An ``nn.RNN`` with the scratch weights: bias_ih_l{k} = b, bias_hh_l{k} = 0."""
    if not isinstance(scratch, ScratchRNN):
        raise TypeError(f"expected a ScratchRNN, got {type(scratch).__name__}")
    weight = scratch.cells[0].W_x
    rnn = torch.nn.RNN(
        scratch.input_size,
        scratch.hidden_size,
        scratch.num_layers,
        nonlinearity=scratch.nonlinearity,
        batch_first=scratch.batch_first,
        dtype=weight.dtype,
        device=weight.device,
    )
    with torch.no_grad():
        for layer, cell in enumerate(scratch.cells):
            getattr(rnn, f"weight_ih_l{layer}").copy_(cell.W_x)
            getattr(rnn, f"weight_hh_l{layer}").copy_(cell.W_h)
            getattr(rnn, f"bias_ih_l{layer}").copy_(cell.b)
            getattr(rnn, f"bias_hh_l{layer}").zero_()
    return rnn


def torch_rnn_to_cells(rnn: torch.nn.RNN) -> torch.nn.ModuleList:
    """One ``nn.RNNCell`` per layer of ``rnn``, holding that layer's four weight
    tensors.
    """
    _check_supported(rnn)
    weight = rnn.weight_ih_l0
    cells = torch.nn.ModuleList()
    for layer in range(rnn.num_layers):
        cell_input = rnn.input_size if layer == 0 else rnn.hidden_size
        cell = torch.nn.RNNCell(
            cell_input,
            rnn.hidden_size,
            bias=rnn.bias,
            nonlinearity=rnn.nonlinearity,
            dtype=weight.dtype,
            device=weight.device,
        )
        with torch.no_grad():
            cell.weight_ih.copy_(getattr(rnn, f"weight_ih_l{layer}"))
            cell.weight_hh.copy_(getattr(rnn, f"weight_hh_l{layer}"))
            if rnn.bias:
                cell.bias_ih.copy_(getattr(rnn, f"bias_ih_l{layer}"))
                cell.bias_hh.copy_(getattr(rnn, f"bias_hh_l{layer}"))
        cells.append(cell)
    return cells


def cell_loop(
    cells, x: torch.Tensor, h0: torch.Tensor | None = None, batch_first: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a stack of ``nn.RNNCell`` s over a sequence by hand; returns ``(output,
    h_n)`` like ``nn.RNN``.

    Each layer's state starts at h0[layer] (zeros if h0 is None); at each step, layer
    k's new state is the input of layer k+1, and the top layer's state is the step's
    output.
    """
    if len(cells) == 0:
        raise ValueError("cells is empty: give one nn.RNNCell per layer")
    require_tensor(
        x,
        "x",
        ndim=3,
        shape_hint="(batch, seq_len, input)"
        if batch_first
        else "(seq_len, batch, input)",
    )
    if batch_first:
        x = x.transpose(0, 1)  # (seq_len, batch, input)
    seq_len, batch, _ = x.shape
    if seq_len == 0:
        raise ValueError("x is an empty sequence (seq_len = 0)")
    hidden_size = cells[0].hidden_size
    if h0 is None:
        h0 = x.new_zeros(len(cells), batch, hidden_size)  # (layers, batch, hidden)
    elif tuple(h0.shape) != (len(cells), batch, hidden_size):
        raise ValueError(
            "h0 must be (num_layers, batch, hidden_size) = "
            f"{(len(cells), batch, hidden_size)}, "
            f"got {tuple(h0.shape)} (h0 is never batch-first)"
        )
    h = list(h0.unbind(0))  # one (batch, hidden) state per layer
    outputs = []
    for x_t in x:  # (batch, input)
        layer_input = x_t
        for layer, cell in enumerate(cells):
            h[layer] = cell(layer_input, h[layer])  # (batch, hidden)
            layer_input = h[layer]
        outputs.append(layer_input)  # the top layer's new state
    output = torch.stack(outputs)  # (seq_len, batch, hidden)
    if batch_first:
        output = output.transpose(0, 1)  # (batch, seq_len, hidden)
    return output, torch.stack(h)  # h_n: (layers, batch, hidden)
