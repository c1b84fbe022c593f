"""The scratch RNN (chapters 2-3) against PyTorch's nn.RNN and an nn.RNNCell loop."""

import pytest
import torch

from rnn_course.cell import MemoryCell, rnn_cell_step
from rnn_course.rnn import ScratchRNN, rnn_layer_forward
from rnn_course.torch_bridge import cell_loop, torch_rnn_to_cells, torch_rnn_to_scratch

SEQ_LEN, BATCH, INPUT, HIDDEN = 5, 4, 6, 3


def make_torch_rnn(
    num_layers, batch_first, nonlinearity="tanh", dtype=torch.float64, seed=0
):
    torch.manual_seed(seed)
    return torch.nn.RNN(
        INPUT,
        HIDDEN,
        num_layers,
        nonlinearity=nonlinearity,
        batch_first=batch_first,
        dtype=dtype,
    )


def make_inputs(num_layers, batch_first, with_h0, dtype=torch.float64, seed=1):
    generator = torch.Generator().manual_seed(seed)
    shape = (BATCH, SEQ_LEN, INPUT) if batch_first else (SEQ_LEN, BATCH, INPUT)
    x = torch.randn(*shape, generator=generator, dtype=dtype)
    h0 = (
        torch.randn(num_layers, BATCH, HIDDEN, generator=generator, dtype=dtype)
        if with_h0
        else None
    )
    return x, h0


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("with_h0", [False, True])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_scratch_equals_nn_rnn_and_cell_loop_float64(
    num_layers, batch_first, with_h0, nonlinearity
):
    reference = make_torch_rnn(num_layers, batch_first, nonlinearity)
    scratch = torch_rnn_to_scratch(reference)
    cells = torch_rnn_to_cells(reference)
    x, h0 = make_inputs(num_layers, batch_first, with_h0)

    expected_output, expected_h_n = reference(x, h0)
    output, h_n = scratch(x, h0)
    loop_output, loop_h_n = cell_loop(cells, x, h0, batch_first=batch_first)

    expected_output_shape = (
        (BATCH, SEQ_LEN, HIDDEN) if batch_first else (SEQ_LEN, BATCH, HIDDEN)
    )
    assert output.shape == expected_output_shape
    assert h_n.shape == (num_layers, BATCH, HIDDEN)  # never batch-first
    torch.testing.assert_close(output, expected_output, rtol=0, atol=1e-12)
    torch.testing.assert_close(h_n, expected_h_n, rtol=0, atol=1e-12)
    torch.testing.assert_close(loop_output, expected_output, rtol=0, atol=1e-12)
    torch.testing.assert_close(loop_h_n, expected_h_n, rtol=0, atol=1e-12)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_scratch_equals_nn_rnn_float32(num_layers):
    reference = make_torch_rnn(num_layers, batch_first=False, dtype=torch.float32)
    scratch = torch_rnn_to_scratch(reference)
    x, h0 = make_inputs(num_layers, False, True, dtype=torch.float32)
    output, h_n = scratch(x, h0)
    expected_output, expected_h_n = reference(x, h0)
    assert output.dtype == torch.float32
    torch.testing.assert_close(output, expected_output, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h_n, expected_h_n, rtol=1e-5, atol=1e-6)


def test_memory_cell_equals_nn_rnncell_and_hand_computed_value():
    torch.manual_seed(0)
    reference = torch.nn.RNNCell(2, 2, dtype=torch.float64)
    cell = MemoryCell(2, 2, dtype=torch.float64)
    with torch.no_grad():
        cell.W_x.copy_(reference.weight_ih)
        cell.W_h.copy_(reference.weight_hh)
        cell.b.copy_(reference.bias_ih + reference.bias_hh)
    x_t = torch.randn(3, 2, dtype=torch.float64)
    h_prev = torch.randn(3, 2, dtype=torch.float64)
    torch.testing.assert_close(
        cell(x_t, h_prev), reference(x_t, h_prev), rtol=0, atol=1e-12
    )
    torch.testing.assert_close(
        cell(x_t), reference(x_t), rtol=0, atol=1e-12
    )  # h0 = 0 when not given

    # A value worked out by hand: h_prev*W_h + x*W_x + b = 0.5*2 + 1*0.5 - 0.5 = 1, and
    # tanh(1) = 0.76159415595576...
    one = torch.ones(1, 1, dtype=torch.float64)
    h = rnn_cell_step(
        one,
        0.5 * one,
        W_x=0.5 * one,
        W_h=2 * one,
        b=torch.tensor([-0.5], dtype=torch.float64),
    )
    assert abs(h.item() - 0.7615941559557649) < 1e-15


def test_weights_are_shared_across_time_and_count_does_not_grow():
    scratch = ScratchRNN(INPUT, HIDDEN, num_layers=2)
    count = sum(p.numel() for p in scratch.parameters())
    # layer 0: 3*6 + 3*3 + 3, layer 1: 3*3 + 3*3 + 3
    assert count == (18 + 9 + 3) + (9 + 9 + 3)
    for seq_len in (1, 7, 50):
        output, _ = scratch(torch.randn(seq_len, 2, INPUT))
        assert output.shape == (seq_len, 2, HIDDEN)
    assert sum(p.numel() for p in scratch.parameters()) == count


def test_layer_forward_first_step_uses_h0():
    torch.manual_seed(3)
    W_x, W_h, b = (
        torch.randn(HIDDEN, INPUT),
        torch.randn(HIDDEN, HIDDEN),
        torch.randn(HIDDEN),
    )
    x = torch.randn(SEQ_LEN, BATCH, INPUT)
    h0 = torch.randn(BATCH, HIDDEN)
    states = rnn_layer_forward(x, h0, W_x, W_h, b)
    torch.testing.assert_close(states[0], torch.tanh(h0 @ W_h.T + x[0] @ W_x.T + b))
    torch.testing.assert_close(
        states[1], torch.tanh(states[0] @ W_h.T + x[1] @ W_x.T + b)
    )


def test_gradients_flow_like_nn_rnn():
    reference = make_torch_rnn(2, batch_first=True)
    scratch = torch_rnn_to_scratch(reference)
    x, h0 = make_inputs(2, True, True)
    (reference(x, h0)[0] ** 2).sum().backward()
    (scratch(x, h0)[0] ** 2).sum().backward()
    for layer, cell in enumerate(scratch.cells):
        torch.testing.assert_close(
            cell.W_x.grad,
            getattr(reference, f"weight_ih_l{layer}").grad,
            rtol=0,
            atol=1e-10,
        )
        torch.testing.assert_close(
            cell.W_h.grad,
            getattr(reference, f"weight_hh_l{layer}").grad,
            rtol=0,
            atol=1e-10,
        )
        torch.testing.assert_close(
            cell.b.grad,
            getattr(reference, f"bias_ih_l{layer}").grad,
            rtol=0,
            atol=1e-10,
        )


# --- bad input gets a clear error
# -------------------------------------------------------------


def test_wrong_number_of_dimensions():
    scratch = ScratchRNN(INPUT, HIDDEN)
    with pytest.raises(
        ValueError, match=r"x must have 3 dimensions .*\(seq_len, batch, input_size\)"
    ):
        scratch(torch.randn(SEQ_LEN, INPUT))


def test_wrong_input_size():
    scratch = ScratchRNN(INPUT, HIDDEN)
    with pytest.raises(ValueError, match=r"input_size = 6 features .* got 5"):
        scratch(torch.randn(SEQ_LEN, BATCH, 5))


def test_empty_sequence():
    scratch = ScratchRNN(INPUT, HIDDEN)
    with pytest.raises(ValueError, match="empty sequence"):
        scratch(torch.randn(0, BATCH, INPUT))


def test_h0_in_batch_first_order_is_rejected_with_a_hint():
    scratch = ScratchRNN(INPUT, HIDDEN, num_layers=2, batch_first=True)
    x = torch.randn(BATCH, SEQ_LEN, INPUT)
    with pytest.raises(
        ValueError,
        match=r"h0 must be \(num_layers, batch, hidden_size\) = \(2, 4, 3\)"
        r".*even when batch_first",
    ):
        scratch(x, torch.zeros(BATCH, 2, HIDDEN))


def test_nan_input_is_rejected():
    scratch = ScratchRNN(INPUT, HIDDEN)
    x = torch.randn(SEQ_LEN, BATCH, INPUT)
    x[2, 1, 0] = float("nan")
    with pytest.raises(ValueError, match="x contains NaN"):
        scratch(x)


def test_dtype_mismatch_and_integer_input():
    scratch = ScratchRNN(INPUT, HIDDEN)
    with pytest.raises(
        TypeError,
        match="float64 but the RNN's weights is torch.float32|x is torch.float64",
    ):
        scratch(torch.randn(SEQ_LEN, BATCH, INPUT, dtype=torch.float64))
    with pytest.raises(TypeError, match="floating-point"):
        scratch(torch.ones(SEQ_LEN, BATCH, INPUT, dtype=torch.long))


def test_cell_wrong_sizes_and_bad_config():
    cell = MemoryCell(2, 3)
    with pytest.raises(
        ValueError, match=r"x_t must be \(batch, input_size\) = \(batch, 2\)"
    ):
        cell(torch.randn(4, 3))
    with pytest.raises(
        ValueError, match=r"h_prev must be \(batch, hidden_size\) = \(4, 3\)"
    ):
        cell(torch.randn(4, 2), torch.randn(4, 2))
    with pytest.raises(ValueError, match="nonlinearity must be one of"):
        MemoryCell(2, 3, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="hidden_size must be a positive int"):
        MemoryCell(2, 0)
    with pytest.raises(TypeError, match="x_t must be a torch.Tensor"):
        cell([[1.0, 2.0]])
