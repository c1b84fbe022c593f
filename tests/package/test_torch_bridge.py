"""Weight conversion between the scratch RNN and nn.RNN / nn.RNNCell (chapter 5)."""

import pytest
import torch

from rnn_course.rnn import ScratchRNN
from rnn_course.torch_bridge import (
    cell_loop,
    scratch_to_torch_rnn,
    torch_rnn_to_cells,
    torch_rnn_to_scratch,
)

F64 = torch.float64


@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("batch_first", [False, True])
def test_scratch_to_torch_names_and_values(num_layers, batch_first):
    torch.manual_seed(0)
    scratch = ScratchRNN(6, 3, num_layers, batch_first=batch_first, dtype=F64)
    rnn = scratch_to_torch_rnn(scratch)
    assert rnn.batch_first == batch_first and rnn.num_layers == num_layers
    for layer, cell in enumerate(scratch.cells):
        assert torch.equal(getattr(rnn, f"weight_ih_l{layer}"), cell.W_x)
        assert torch.equal(getattr(rnn, f"weight_hh_l{layer}"), cell.W_h)
        # two biases whose sum is b
        total = getattr(rnn, f"bias_ih_l{layer}") + getattr(rnn, f"bias_hh_l{layer}")
        assert torch.equal(total, cell.b)
    shape = (4, 5, 6) if batch_first else (5, 4, 6)
    x = torch.randn(*shape, dtype=F64)
    for ours, theirs in zip(scratch(x), rnn(x)):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)


def test_round_trip_torch_scratch_torch_keeps_outputs():
    torch.manual_seed(1)
    rnn = torch.nn.RNN(2, 4, 2, dtype=F64)
    back = scratch_to_torch_rnn(torch_rnn_to_scratch(rnn))
    x = torch.randn(9, 3, 2, dtype=F64)
    torch.testing.assert_close(back(x)[0], rnn(x)[0], rtol=0, atol=1e-12)
    # the split of the bias changed, the sum did not
    assert not torch.equal(back.bias_hh_l0, rnn.bias_hh_l0)
    torch.testing.assert_close(
        back.bias_ih_l0 + back.bias_hh_l0, rnn.bias_ih_l0 + rnn.bias_hh_l0
    )


def test_rnn_without_bias_converts_to_zero_b():
    rnn = torch.nn.RNN(2, 3, bias=False)
    scratch = torch_rnn_to_scratch(rnn)
    assert torch.equal(scratch.cells[0].b, torch.zeros(3))
    cells = torch_rnn_to_cells(rnn)
    x = torch.randn(4, 2, 2)
    torch.testing.assert_close(cell_loop(cells, x)[0], rnn(x)[0])


def test_cells_hold_the_layers_weights():
    rnn = torch.nn.RNN(6, 3, 2)
    cells = torch_rnn_to_cells(rnn)
    assert [c.input_size for c in cells] == [6, 3]
    assert torch.equal(cells[1].weight_hh, rnn.weight_hh_l1)
    assert torch.equal(cells[1].bias_hh, rnn.bias_hh_l1)


def test_unsupported_and_bad_inputs():
    with pytest.raises(ValueError, match="bidirectional"):
        torch_rnn_to_scratch(torch.nn.RNN(2, 3, bidirectional=True))
    with pytest.raises(TypeError, match="expected a torch.nn.RNN"):
        torch_rnn_to_cells(torch.nn.GRU(2, 3))
    with pytest.raises(TypeError, match="expected a ScratchRNN"):
        scratch_to_torch_rnn(torch.nn.RNN(2, 3))
    cells = torch_rnn_to_cells(torch.nn.RNN(2, 3, 2))
    with pytest.raises(
        ValueError, match=r"h0 must be \(num_layers, batch, hidden_size\) = \(2, 4, 3\)"
    ):
        cell_loop(cells, torch.randn(5, 4, 2), torch.zeros(4, 2, 3))
    with pytest.raises(ValueError, match="empty sequence"):
        cell_loop(cells, torch.randn(0, 4, 2))
    with pytest.raises(ValueError, match="cells is empty"):
        cell_loop([], torch.randn(5, 4, 2))
