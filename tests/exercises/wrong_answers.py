"""Realistic wrong answers, graded in the nbgrader round trip (test_exercises.py).

Each one replaces ONE answer cell (by its grade_id) of the released notebook, whose other answer
cells get the instructor's solution. The test asserts that exactly the test cells in ``fails``
lose their points (so the score is strictly between 0 and full) and that ``message``, a piece of
the hint the failing test should give, appears in the autograded notebook's error output.

Add an entry for every new assignment: at least three mistakes a student would really make.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WrongAnswer:
    name: str  # short, used in the student id: wrong-<name>
    notebook: str  # notebook file name inside the assignment
    grade_id: str  # the answer cell it replaces
    source: str  # the whole new cell source
    fails: frozenset[str]  # grade_ids of the test cells that must fail
    message: str  # must appear in the failing test cells' output


def _wrong(name, notebook, grade_id, source, fails, message):
    return WrongAnswer(name, notebook, grade_id, source.strip("\n"), frozenset(fails), message)


CH01 = "ch01_neuron.ipynb"
CH02 = "ch02_memory_cell.ipynb"

WRONG_ANSWERS: dict[str, list[WrongAnswer]] = {
    "ch01_neuron": [
        _wrong("target-in-window", CH01, "make_windows", '''
def make_windows(series, window):
    """Cut a (days,) series into (inputs (num_windows, window), targets (num_windows,)) with next-day targets."""
    days = series.shape[0]
    if window < 1 or days <= window:
        raise ValueError("series too short")
    inputs = torch.stack([series[i:i + window] for i in range(days - window)])
    targets = series[window - 1:days - 1]  # the last day of each window, not the next day
    return inputs, targets
''', {"test_make_windows"}, "Likely mistake: off by one: each target is the last day INSIDE its window"),
        _wrong("neuron-no-bias", CH01, "neuron_forward", '''
def neuron_forward(x, weight, bias):
    """One neuron without activation: x (batch, in_features), weight (1, in_features), bias (1,) -> (batch, 1)."""
    return x @ weight.T
''', {"test_neuron_forward"}, "Likely mistake: bias missing?"),
        _wrong("persistence-first-day", CH01, "persistence_forecast", '''
def persistence_forecast(inputs):
    """Tomorrow will be like today: inputs (num_windows, window) -> the last day of each window, (num_windows,)."""
    return inputs[:, 0]
''', {"test_persistence_forecast"}, "Likely mistake: used the FIRST day of each window"),
        _wrong("mae-signed", CH01, "mean_absolute_error", '''
def mean_absolute_error(predictions, targets):
    """The average of |prediction - target| as a Python float; ValueError when the shapes differ."""
    if predictions.shape != targets.shape:
        raise ValueError("shapes differ")
    return (predictions - targets).mean().item()
''', {"test_mean_absolute_error"}, "Likely mistake: signed errors cancel out"),
    ],
    "ch02_memory_cell": [
        _wrong("W_h-not-transposed", CH02, "memory_cell_step", '''
def memory_cell_step(x_t, h_prev, W_x, W_h, b):
    """One step of the memory cell: h_t = tanh(h_prev W_hᵀ + x_t W_xᵀ + b), (batch, hidden_size)."""
    return torch.tanh(h_prev @ W_h + x_t @ W_x.T + b)
''', {"test_memory_cell_step"}, "Likely mistake: W_h not transposed?"),
        _wrong("h0-on-cpu", CH02, "run_memory_cell", '''
def run_memory_cell(xs, W_x, W_h, b, h0=None):
    """Run the cell over xs (seq_len, batch, input_size) from h0 (zeros if None); returns h_1 ... h_T (seq_len, batch, hidden_size)."""
    h_t = torch.zeros(xs.shape[1], W_h.shape[0], dtype=xs.dtype) if h0 is None else h0  # on the CPU
    hidden_states = []
    for x_t in xs:
        h_t = memory_cell_step(x_t, h_t, W_x, W_h, b)
        hidden_states.append(h_t)
    return torch.stack(hidden_states)
''', {"test_run_memory_cell"}, "Create new tensors on the inputs' device"),
        _wrong("output-from-previous-state", CH02, "predict_every_step", '''
def predict_every_step(xs, W_x, W_h, b, W_y, b_y):
    """The cell with an output layer: y_hat_t = h_t W_yᵀ + b_y for every step, (seq_len, batch, output_size)."""
    h_t = xs.new_zeros(xs.shape[1], W_h.shape[0])
    outputs = []
    for x_t in xs:
        outputs.append(h_t @ W_y.T + b_y)  # read out before the update: uses h_{t-1}
        h_t = memory_cell_step(x_t, h_t, W_x, W_h, b)
    return torch.stack(outputs)
''', {"test_predict_every_step"}, "Likely mistake: output computed from hₜ₋₁ instead of hₜ?"),
        _wrong("uses-rnncell", CH02, "memory_cell_step", '''
def memory_cell_step(x_t, h_prev, W_x, W_h, b):
    """One step of the memory cell: h_t = tanh(h_prev W_hᵀ + x_t W_xᵀ + b), (batch, hidden_size)."""
    cell = torch.nn.RNNCell(W_x.shape[1], W_x.shape[0]).to(x_t)
    with torch.no_grad():
        cell.weight_ih.copy_(W_x)
        cell.weight_hh.copy_(W_h)
        cell.bias_ih.copy_(b)
        cell.bias_hh.zero_()
    return cell(x_t, h_prev)
''', {"test_memory_cell_step"}, "your function calls torch.rnn_tanh_cell (what nn.RNNCell calls)"),
    ],
}
