"""rnn_course.timing: interleaved repeats, medians, and the forward+backward step used
by chapter 5.
"""

import pytest
import torch

from rnn_course.timing import rnn_forward_backward, synchronize, time_interleaved
from rnn_course.torch_bridge import cell_loop, torch_rnn_to_cells


class FakeClock:
    """A clock that advances only when a timed function says how long it took."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def spend(self, seconds):
        self.now += seconds


def test_order_rotates_each_round_after_warmup():
    calls = []
    functions = {name: (lambda name=name: calls.append(name)) for name in "ABC"}
    time_interleaved(functions, repeats=4, warmup=1)
    assert calls == list("ABCABCBCACABABC")


def test_median_of_each_function_from_a_fake_clock():
    clock = FakeClock()
    durations = {
        "fast": iter([1.0, 9.0, 2.0, 3.0, 2.5]),
        "slow": iter([10.0, 11.0, 50.0, 12.0, 13.0]),
    }
    functions = {
        name: (lambda name=name: clock.spend(next(durations[name])))
        for name in durations
    }
    medians = time_interleaved(functions, repeats=5, warmup=0, clock=clock)
    assert list(medians) == ["fast", "slow"]
    assert medians == {"fast": 2.5, "slow": 12.0}


def test_warmup_calls_are_not_timed():
    clock = FakeClock()
    durations = iter([100.0, 1.0, 2.0, 3.0])  # the first (warm-up) call is slow
    medians = time_interleaved(
        {"f": lambda: clock.spend(next(durations))}, repeats=3, warmup=1, clock=clock
    )
    assert medians == {"f": 2.0}


def test_real_clock_gives_positive_seconds():
    medians = time_interleaved({"sum": lambda: sum(range(1000))}, repeats=3)
    assert medians["sum"] > 0


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"functions": {}}, ValueError, "functions is empty"),
        ({"functions": {"f": 3}}, TypeError, "functions\\['f'\\] must be a function"),
        (
            {"functions": {"f": lambda: None}, "repeats": 0},
            ValueError,
            "repeats must be a positive int",
        ),
        (
            {"functions": {"f": lambda: None}, "warmup": -1},
            ValueError,
            "warmup must be an int >= 0",
        ),
    ],
)
def test_bad_arguments_say_what_was_expected(kwargs, error, message):
    with pytest.raises(error, match=message):
        time_interleaved(**kwargs)


def test_synchronize_is_a_no_op_on_the_cpu(monkeypatch):
    waited = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *args: waited.append("cuda"))
    monkeypatch.setattr(torch.mps, "synchronize", lambda *args: waited.append("mps"))
    for device in (None, "cpu", torch.device("cpu")):
        assert synchronize(device) is None
    assert waited == []  # nothing queued on the CPU: no accelerator is asked to wait
    synchronize("cuda:0")
    assert waited == [
        "cuda"
    ]  # (the same function does wait on CUDA, here the recorder)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_synchronize_waits_for_cuda():
    x = torch.randn(256, 256, device="cuda")
    y = x @ x
    synchronize(y.device)
    assert torch.cuda.current_stream().query()


def test_forward_backward_leaves_the_gradients_of_one_pass():
    torch.manual_seed(0)
    rnn = torch.nn.RNN(3, 4, num_layers=2, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    step = rnn_forward_backward(rnn, x, rnn.parameters())
    step()
    step()  # a second pass must not add to the first one's gradients
    output, h_n = rnn(x)
    expected = torch.autograd.grad(output.sum() + h_n.sum(), list(rnn.parameters()))
    for parameter, gradient in zip(rnn.parameters(), expected):
        torch.testing.assert_close(parameter.grad, gradient)


def test_forward_backward_of_a_cell_loop():
    torch.manual_seed(0)
    rnn = torch.nn.RNN(3, 4, num_layers=2, dtype=torch.float64)
    cells = torch_rnn_to_cells(rnn)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    rnn_forward_backward(rnn, x, rnn.parameters())()
    rnn_forward_backward(
        lambda inputs: cell_loop(cells, inputs), x, cells.parameters()
    )()
    torch.testing.assert_close(cells[1].weight_hh.grad, rnn.weight_hh_l1.grad)


def test_forward_backward_needs_parameters():
    with pytest.raises(ValueError, match="parameters is empty"):
        rnn_forward_backward(lambda x: (x, x), torch.zeros(1, 1, 1), [])
