"""The LSTM and GRU from scratch against PyTorch's modules (chapter 8).

Values AND gradients are compared with nn.LSTM / nn.GRU / nn.LSTMCell / nn.GRUCell
holding the same weights: in float64 to 1e-12 (only the order of float additions can
differ), in float32 within tolerances calibrated against a float64 reference.
"""

import pytest
import torch
from torch import nn

from rnn_course.gated import (
    GRUCell,
    LSTMCell,
    ScratchGRU,
    ScratchLSTM,
    from_torch,
    gated_cell_loop,
    gru_cell_step,
    input_gradient_norms,
    lstm_cell_step,
    to_torch,
    torch_to_cells,
)

F64 = torch.float64
EXACT = {"rtol": 0, "atol": 1e-12}  # float64: the two differ only in rounding


def _inputs(kind, batch_first, with_state, num_layers, dtype=F64, seed=0):
    """x in the asked layout, and the initial state nn.LSTM / nn.GRU take (or None)."""
    generator = torch.Generator().manual_seed(seed)
    seq_len, batch, input_size, hidden = 6, 3, 4, 5
    shape = (
        (batch, seq_len, input_size) if batch_first else (seq_len, batch, input_size)
    )
    x = torch.randn(*shape, generator=generator, dtype=dtype)
    if not with_state:
        return x, None
    state_shape = (num_layers, batch, hidden)  # never batch-first
    h0 = torch.randn(*state_shape, generator=generator, dtype=dtype)
    c0 = torch.randn(*state_shape, generator=generator, dtype=dtype)
    return x, ((h0, c0) if kind == "lstm" else h0)


def _leaves(x, hx):
    """The tensors whose gradients are compared: x and the initial states."""
    states = [] if hx is None else (list(hx) if isinstance(hx, tuple) else [hx])
    return [x, *states]


def _results(result):
    """(output, h_n) or (output, (h_n, c_n)) as a flat list."""
    output, state = result
    return [output, *state] if isinstance(state, tuple) else [output, state]


def _forward_backward(model, x, hx, parameters):
    """Outputs, then gradients of a loss that weighs every output entry differently."""
    leaves = [t.detach().clone().requires_grad_(True) for t in _leaves(x, hx)]
    x_in = leaves[0]
    if hx is None:
        hx_in = None
    elif isinstance(hx, tuple):
        hx_in = tuple(leaves[1:])
    else:
        hx_in = leaves[1]
    results = _results(model(x_in, hx_in))
    generator = torch.Generator().manual_seed(123)
    loss = sum(
        (r * torch.randn(r.shape, generator=generator, dtype=F64).to(r.dtype)).sum()
        for r in results
    )
    gradients = torch.autograd.grad(loss, [*leaves, *parameters])
    return [r.detach() for r in results], list(gradients)


def _scratch_parameters(scratch):
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    return [getattr(cell, name) for cell in scratch.cells for name in names]


def _torch_parameters(module):
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    return [
        getattr(module, f"{name}_l{layer}")
        for layer in range(module.num_layers)
        for name in names
    ]


TORCH_CLASSES = {"lstm": nn.LSTM, "gru": nn.GRU}


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
def test_scratch_equals_torch_forward_and_backward(
    kind, num_layers, batch_first, with_state
):
    torch.manual_seed(num_layers + 2 * batch_first)
    module = TORCH_CLASSES[kind](4, 5, num_layers, batch_first=batch_first, dtype=F64)
    scratch = from_torch(module)
    assert isinstance(scratch, ScratchLSTM if kind == "lstm" else ScratchGRU)
    x, hx = _inputs(kind, batch_first, with_state, num_layers)
    ours, our_grads = _forward_backward(scratch, x, hx, _scratch_parameters(scratch))
    theirs, their_grads = _forward_backward(module, x, hx, _torch_parameters(module))
    assert [t.shape for t in ours] == [t.shape for t in theirs]
    for mine, reference in zip(ours + our_grads, theirs + their_grads):
        torch.testing.assert_close(mine, reference, **EXACT)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_cell_loop_equals_torch_module(kind, batch_first):
    torch.manual_seed(5)
    module = TORCH_CLASSES[kind](4, 5, 2, batch_first=batch_first, dtype=F64)
    cells = torch_to_cells(module)
    expected_class = nn.LSTMCell if kind == "lstm" else nn.GRUCell
    assert [type(cell) for cell in cells] == [expected_class] * 2
    assert [cell.input_size for cell in cells] == [4, 5]
    x, hx = _inputs(kind, batch_first, True, 2, seed=1)
    for mine, reference in zip(
        _results(gated_cell_loop(cells, x, hx, batch_first=batch_first)),
        _results(module(x, hx)),
    ):
        torch.testing.assert_close(mine, reference, **EXACT)
    x_zero_state, _ = _inputs(kind, batch_first, False, 2, seed=2)
    torch.testing.assert_close(
        gated_cell_loop(cells, x_zero_state, batch_first=batch_first)[0],
        module(x_zero_state)[0],
        **EXACT,
    )


def test_lstm_cell_equals_nn_lstmcell_forward_and_backward():
    torch.manual_seed(7)
    reference = nn.LSTMCell(3, 4, dtype=F64)
    cell = from_torch(reference)
    assert isinstance(cell, LSTMCell)
    x = torch.randn(2, 3, dtype=F64, requires_grad=True)
    h = torch.randn(2, 4, dtype=F64, requires_grad=True)
    c = torch.randn(2, 4, dtype=F64, requires_grad=True)
    results = []
    for module in (cell, reference):
        h_t, c_t = module(x, (h, c))
        loss = (
            h_t * torch.arange(8.0, dtype=F64).view(2, 4)
        ).sum() + c_t.square().sum()
        params = [module.weight_ih, module.weight_hh, module.bias_ih, module.bias_hh]
        results.append([h_t, c_t, *torch.autograd.grad(loss, [x, h, c, *params])])
    for mine, theirs in zip(*results):
        torch.testing.assert_close(mine, theirs, **EXACT)


def test_gru_cell_equals_nn_grucell_forward_and_backward():
    torch.manual_seed(8)
    reference = nn.GRUCell(3, 4, dtype=F64)
    cell = from_torch(reference)
    assert isinstance(cell, GRUCell)
    x = torch.randn(2, 3, dtype=F64, requires_grad=True)
    h = torch.randn(2, 4, dtype=F64, requires_grad=True)
    results = []
    for module in (cell, reference):
        h_t = module(x, h)
        loss = (h_t * torch.arange(8.0, dtype=F64).view(2, 4)).sum()
        params = [module.weight_ih, module.weight_hh, module.bias_ih, module.bias_hh]
        results.append([h_t, *torch.autograd.grad(loss, [x, h, *params])])
    for mine, theirs in zip(*results):
        torch.testing.assert_close(mine, theirs, **EXACT)


@pytest.mark.parametrize("scratch_class", [ScratchLSTM, ScratchGRU])
def test_to_torch_copies_names_and_values(scratch_class):
    torch.manual_seed(9)
    scratch = scratch_class(3, 4, 2, batch_first=True, dtype=F64)
    module = to_torch(scratch)
    assert type(module) is (nn.LSTM if scratch_class is ScratchLSTM else nn.GRU)
    assert module.batch_first and module.num_layers == 2
    for layer, cell in enumerate(scratch.cells):
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            assert torch.equal(getattr(module, f"{name}_l{layer}"), getattr(cell, name))
    x = torch.randn(2, 5, 3, dtype=F64)
    for mine, theirs in zip(_results(scratch(x)), _results(module(x))):
        torch.testing.assert_close(mine, theirs, **EXACT)
    assert type(to_torch(LSTMCell(3, 4))) is nn.LSTMCell
    assert type(to_torch(GRUCell(3, 4))) is nn.GRUCell


def test_parameter_layout_and_counts_are_torchs():
    lstm, gru = ScratchLSTM(3, 4, 2), ScratchGRU(3, 4, 2)
    assert [p.shape for p in _scratch_parameters(lstm)] == [
        p.shape for p in _torch_parameters(nn.LSTM(3, 4, 2))
    ]
    assert [p.shape for p in _scratch_parameters(gru)] == [
        p.shape for p in _torch_parameters(nn.GRU(3, 4, 2))
    ]
    assert lstm.cells[0].weight_ih.shape == (16, 3)  # 4 gates × hidden, input
    assert gru.cells[1].weight_hh.shape == (12, 4)  # 3 gates × hidden, hidden
    plain = sum(p.numel() for p in nn.RNN(3, 4, 2).parameters())
    assert sum(p.numel() for p in lstm.parameters()) == 4 * plain
    assert sum(p.numel() for p in gru.parameters()) == 3 * plain


def test_module_without_bias_converts_to_zero_biases():
    torch.manual_seed(10)
    module = nn.LSTM(2, 3, bias=False, dtype=F64)
    scratch = from_torch(module)
    assert torch.equal(scratch.cells[0].bias_ih, torch.zeros(12, dtype=F64))
    x = torch.randn(4, 2, 2, dtype=F64)
    torch.testing.assert_close(scratch(x)[0], module(x)[0], **EXACT)


def test_gate_order_is_torchs():
    """Open one gate through its bias: the blocks go i, f, g, o and r, z, n order."""
    hidden = 2
    cell = LSTMCell(1, hidden, dtype=F64)
    with torch.no_grad():
        for p in cell.parameters():
            p.zero_()
        cell.bias_ih[hidden : 2 * hidden] = (
            50.0  # forget gate fully open, the rest at 0.5
        )
    x, h, c = (
        torch.zeros(1, 1, dtype=F64),
        torch.zeros(1, hidden, dtype=F64),
        torch.ones(1, hidden, dtype=F64),
    )
    _, c_t = cell(x, (h, c))
    # f = 1, i = 0.5, g = tanh(0) = 0: c_t = c exactly when block 2 is the forget gate
    torch.testing.assert_close(c_t, c, **EXACT)
    gru = GRUCell(1, hidden, dtype=F64)
    with torch.no_grad():
        for p in gru.parameters():
            p.zero_()
        gru.bias_ih[hidden : 2 * hidden] = 50.0  # update gate z = 1: keep h
    h_prev = torch.full((1, hidden), 0.3, dtype=F64)
    torch.testing.assert_close(gru(x, h_prev), h_prev, **EXACT)


def _paper_gru_step(x, h, weight_ih, weight_hh, bias_ih, bias_hh):
    """Cho et al. (2014) gate by gate, with separate matrices (independent code)."""
    hidden = h.shape[1]
    W = {gate: weight_ih[k * hidden : (k + 1) * hidden] for k, gate in enumerate("rzn")}
    U = {gate: weight_hh[k * hidden : (k + 1) * hidden] for k, gate in enumerate("rzn")}
    b = {gate: bias_ih[k * hidden : (k + 1) * hidden] for k, gate in enumerate("rzn")}
    c = {gate: bias_hh[k * hidden : (k + 1) * hidden] for k, gate in enumerate("rzn")}
    r = torch.sigmoid(x @ W["r"].T + b["r"] + h @ U["r"].T + c["r"])
    z = torch.sigmoid(x @ W["z"].T + b["z"] + h @ U["z"].T + c["z"])
    n = torch.tanh(x @ W["n"].T + b["n"] + (r * h) @ U["n"].T + c["n"])
    return (1 - z) * n + z * h


def test_reset_gate_position_of_the_paper_differs_from_pytorch_by_a_measured_amount():
    """reset_after=False is Cho et al.'s GRU: equal to its own reference, NOT to nn.GRU.

    With these weights (PyTorch's initialisation, seed 11) the outputs of 8 steps differ
    from nn.GRU's by up to about 0.04 (asserted between 0.01 and 0.2): a different
    function, not rounding (float64 rounding is below 1e-12).
    """
    torch.manual_seed(11)
    module = nn.GRU(3, 4, dtype=F64)
    pytorch_style = from_torch(module)
    paper = ScratchGRU(3, 4, reset_after=False, dtype=F64)
    paper.load_state_dict(pytorch_style.state_dict())
    x = torch.randn(8, 2, 3, dtype=F64)
    h = torch.zeros(2, 4, dtype=F64)
    expected = []
    for x_t in x:
        h = _paper_gru_step(
            x_t,
            h,
            module.weight_ih_l0,
            module.weight_hh_l0,
            module.bias_ih_l0,
            module.bias_hh_l0,
        )
        expected.append(h)
    paper_output, _ = paper(x)
    torch.testing.assert_close(paper_output, torch.stack(expected).detach(), **EXACT)
    difference = (paper_output - module(x)[0]).abs().max().item()
    assert 0.01 < difference < 0.2, difference
    with pytest.raises(ValueError, match="reset_after=False has no nn.GRU twin"):
        to_torch(paper)


def test_float32_within_calibrated_tolerances_of_float64():
    """Float32 scratch LSTM/GRU vs float64 nn.LSTM/nn.GRU: 40 steps, batch 8, 2 layers.

    Measured over 5 seeds: forward errors at most 8.2e-8 (outputs lie in (-1, 1)); the
    largest gradient error at most 1.9e-7 times the largest gradient entry (gradients
    of shared weights are sums over 40 steps, up to about 40). The bounds asserted,
    1e-6 and 2e-6 times, leave a margin of about ten.
    """
    for torch_class in (nn.LSTM, nn.GRU):
        torch.manual_seed(12)
        module = torch_class(4, 16, 2, dtype=F64)
        scratch = from_torch(module).float()
        generator = torch.Generator().manual_seed(13)
        x = torch.randn(40, 8, 4, generator=generator, dtype=F64)
        ours, our_grads = _forward_backward(
            scratch, x.float(), None, _scratch_parameters(scratch)
        )
        theirs, their_grads = _forward_backward(
            module, x, None, _torch_parameters(module)
        )
        for mine, reference in zip(ours, theirs):
            assert mine.dtype == torch.float32
            assert (mine.double() - reference).abs().max() <= 1e-6
        for mine, reference in zip(our_grads, their_grads):
            assert mine.dtype == torch.float32
            scale = reference.abs().max()
            assert (mine.double() - reference).abs().max() <= 2e-6 * scale


def test_lstm_and_gru_steps_by_hand():
    """Hand-computed values: one hidden unit, every weight 0, biases chosen per gate."""
    zeros = torch.zeros
    # LSTM: i = σ(0) = 0.5, f = σ(0) = 0.5, g = tanh(1), o = σ(0) = 0.5, c_prev = 2
    bias_ih = torch.tensor([0.0, 0.0, 1.0, 0.0], dtype=F64)
    h_t, c_t = lstm_cell_step(
        zeros(1, 1, dtype=F64),
        zeros(1, 1, dtype=F64),
        torch.full((1, 1), 2.0, dtype=F64),
        zeros(4, 1, dtype=F64),
        zeros(4, 1, dtype=F64),
        bias_ih,
        zeros(4, dtype=F64),
    )
    expected_c = 0.5 * 2.0 + 0.5 * torch.tanh(torch.tensor(1.0, dtype=F64))
    torch.testing.assert_close(c_t, expected_c.view(1, 1), **EXACT)
    torch.testing.assert_close(h_t, (0.5 * torch.tanh(expected_c)).view(1, 1), **EXACT)
    # GRU: r = z = 0.5, n = tanh(b_in + r · b_hn) = tanh(0.2 + 0.5 · 0.6), h_prev = 0
    h = gru_cell_step(
        zeros(1, 1, dtype=F64),
        zeros(1, 1, dtype=F64),
        zeros(3, 1, dtype=F64),
        zeros(3, 1, dtype=F64),
        torch.tensor([0.0, 0.0, 0.2], dtype=F64),
        torch.tensor([0.0, 0.0, 0.6], dtype=F64),
    )
    torch.testing.assert_close(
        h, (0.5 * torch.tanh(torch.tensor(0.5, dtype=F64))).view(1, 1)
    )


def test_input_gradient_norms_match_finite_differences():
    torch.manual_seed(14)
    model = from_torch(nn.LSTM(2, 3, dtype=F64))
    x = torch.randn(5, 2, 2, dtype=F64)
    norms = input_gradient_norms(model, x)
    assert norms.shape == (5,)
    epsilon = 1e-6
    for t in (0, 4):
        per_sequence = []
        for sequence in range(2):
            gradient = torch.zeros(2, dtype=F64)
            for feature in range(2):
                step = torch.zeros_like(x)
                step[t, sequence, feature] = epsilon
                with torch.no_grad():
                    up = model(x + step)[0][-1].sum()
                    down = model(x - step)[0][-1].sum()
                gradient[feature] = (up - down) / (2 * epsilon)
            per_sequence.append(gradient.norm())
        assert abs(norms[t].item() - sum(per_sequence).item() / 2) < 1e-7


def test_bad_inputs_get_clear_errors():
    lstm = ScratchLSTM(3, 4, 2, batch_first=True)
    with pytest.raises(ValueError, match="never batch-first"):
        lstm(torch.randn(2, 5, 3), (torch.zeros(2, 5, 4), torch.zeros(2, 5, 4)))
    with pytest.raises(ValueError, match="input_size = 3"):
        lstm(torch.randn(2, 5, 2))
    with pytest.raises(ValueError, match="3 dimensions"):
        lstm(torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"h_prev must be \(batch, hidden_size\)"):
        GRUCell(3, 4)(torch.randn(2, 3), torch.zeros(3, 4))
    with pytest.raises(TypeError, match="float64"):
        LSTMCell(3, 4)(torch.randn(2, 3, dtype=F64))
    with pytest.raises(TypeError, match="expected an nn.LSTM, nn.GRU"):
        from_torch(nn.RNN(3, 4))
    with pytest.raises(ValueError, match="bidirectional"):
        from_torch(nn.GRU(3, 4, bidirectional=True))
    with pytest.raises(TypeError, match="ScratchLSTM, ScratchGRU"):
        to_torch(nn.LSTM(3, 4))
    with pytest.raises(ValueError, match="batch_first=False"):
        input_gradient_norms(lstm, torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="cells is empty"):
        gated_cell_loop([], torch.randn(5, 2, 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("torch_class", [nn.LSTM, nn.GRU])
def test_scratch_on_cuda_equals_torch_on_cuda(torch_class):
    torch.manual_seed(15)
    module = torch_class(4, 8, 2, device="cuda")
    scratch = from_torch(module)
    x = torch.randn(10, 3, 4, device="cuda")
    for mine, theirs in zip(_results(scratch(x)), _results(module(x))):
        assert mine.device.type == "cuda"
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5)
