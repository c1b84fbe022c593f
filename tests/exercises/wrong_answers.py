"""Realistic wrong answers, graded in the nbgrader round trip (test_exercises.py).

Each one replaces ONE answer cell (by its grade_id) of the released notebook, whose other answer
cells get the instructor's solution. The test asserts that exactly the test cells in ``fails``
lose their points (so the score is strictly between 0 and full) and that ``message``, a piece of
the hint the failing test should give, appears in the autograded notebook's error output.

Add an entry for every new assignment: at least three mistakes a student would really make.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nbformat


@dataclass(frozen=True)
class WrongAnswer:
    name: str  # short, used in the student id: wrong-<name>
    notebook: str  # notebook file name inside the assignment
    grade_id: str  # the answer cell it replaces
    source: str  # the whole new cell source
    fails: frozenset[str]  # grade_ids of the test cells that must fail
    # must appear in the failing test cells' output. (The in-place messages stop at the
    # function's name: the grader's proxies have no signature, so it names an argument
    # "argument 1" where nbgrader says "state".)
    message: str

    def found_in(self, output: str) -> bool:
        """Whether ``message`` appears in ``output``, however its lines were wrapped
        (messages fit ``nbgrader validate``: rnn_course.checks.fit_lines)."""
        return " ".join(self.message.split()) in " ".join(output.split())


def answered_with(release: Path, source: Path, wrong: WrongAnswer | None = None) -> nbformat.NotebookNode:
    """The released notebook with the source's answers filled in, and ``wrong``'s cell (if any) instead
    of the source's: what a student who made that one mistake submits."""
    notebook = nbformat.read(str(release), as_version=4)
    answers = {cell.metadata["nbgrader"]["grade_id"]: cell.source
               for cell in nbformat.read(str(source), as_version=4).cells
               if cell.metadata.get("nbgrader", {}).get("solution")}
    if wrong is not None:
        answers[wrong.grade_id] = wrong.source
    for cell in notebook.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
    return notebook


def _wrong(name, notebook, grade_id, source, fails, message):
    return WrongAnswer(name, notebook, grade_id, source.strip("\n"), frozenset(fails), message)


def _right(name, notebook, grade_id, source):
    """Another correct answer (no part fails): what a notebook allows is not blocked."""
    return WrongAnswer(name, notebook, grade_id, source.strip("\n"), frozenset(), "")


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
        _wrong("mae-0d-tensor", CH01, "mean_absolute_error", '''
def mean_absolute_error(predictions, targets):
    """The average of |prediction - target| as a Python float."""
    if predictions.shape != targets.shape:
        raise ValueError("shapes differ")
    return (predictions - targets).abs().mean()  # a 0-d tensor, not a Python float
''', {"test_mean_absolute_error"},
            "Return a Python float: mean_absolute_error([12, 15, 9, 10], "
            "[13, 14, 9, 12]) returned a 0-d tensor"),
        _wrong("mae-tensor-in-if", CH01, "mean_absolute_error", '''
def mean_absolute_error(predictions, targets):
    """The average of |prediction - target| as a Python float."""
    if predictions.shape != targets.shape or predictions != targets:  # values too
        raise ValueError("shapes differ")
    return (predictions - targets).abs().mean().item()
''', {"test_mean_absolute_error"},
            "Hint: a tensor stood where Python needs one True or False"),
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
        _wrong("h0-ignored", CH02, "run_memory_cell", '''
def run_memory_cell(xs, W_x, W_h, b, h0=None):
    """Run the cell over xs (seq_len, batch, input_size) from h0 (zeros if None)."""
    h_t = xs.new_zeros(xs.shape[1], W_h.shape[0])  # always zeros: h0 is never used
    hidden_states = []
    for x_t in xs:
        h_t = memory_cell_step(x_t, h_t, W_x, W_h, b)
        hidden_states.append(h_t)
    return torch.stack(hidden_states)
''', {"test_run_memory_cell"}, "Likely mistake: the h0 you were given is ignored"),
        _wrong("h0-returned-first", CH02, "run_memory_cell", '''
def run_memory_cell(xs, W_x, W_h, b, h0=None):
    """Run the cell over xs (seq_len, batch, input_size) from h0 (zeros if None)."""
    h_t = xs.new_zeros(xs.shape[1], W_h.shape[0]) if h0 is None else h0
    hidden_states = [h_t]  # h0 kept as the first state
    for x_t in xs[:-1]:
        h_t = memory_cell_step(x_t, h_t, W_x, W_h, b)
        hidden_states.append(h_t)
    return torch.stack(hidden_states)
''', {"test_run_memory_cell"}, "Likely mistake: the states are one step late"),
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


# ch03_unrolling and ch04_bptt
CH03 = "ch03_unrolling.ipynb"
CH04 = "ch04_bptt.ipynb"

WRONG_ANSWERS["ch03_unrolling"] = [
    _wrong("unroll-h0-ignored", CH03, "unroll", '''
def unroll(x, h0, W_x, W_h, b):
    """Unroll the memory cell over x (seq_len, batch, input_size) from h0 (batch, hidden_size); returns h_1 ... h_T (seq_len, batch, hidden_size)."""
    h_t = torch.zeros(x.shape[1], W_h.shape[0], dtype=x.dtype, device=x.device)  # starts from zeros, h0 unused
    hidden_states = []
    for x_t in x:
        h_t = torch.tanh(h_t @ W_h.T + x_t @ W_x.T + b)
        hidden_states.append(h_t)
    return torch.stack(hidden_states)
''', {"test_unroll"}, 'Likely mistake: h0 ignored?'),
    _wrong("layer-2-from-h0-0", CH03, "two_layer_forward", '''
def two_layer_forward(x, h0, W_x1, W_h1, b1, W_x2, W_h2, b2):
    """A 2-layer RNN on x (seq_len, batch, input_size) from h0 (2, batch, hidden_size); returns (output (seq_len, batch, hidden_size), h_n (2, batch, hidden_size))."""
    states_1 = unroll(x, h0[0], W_x1, W_h1, b1)
    states_2 = unroll(states_1, h0[0], W_x2, W_h2, b2)  # copy-paste: layer 2 also starts from h0[0]
    h_n = torch.stack([states_1[-1], states_2[-1]])
    return states_2, h_n
''', {"test_two_layer_forward"}, 'Likely mistake: layer 2 started from h0[0]'),
    _wrong("h0-batch-first", CH03, "two_layer_forward_batch_first", '''
def two_layer_forward_batch_first(x, h0, W_x1, W_h1, b1, W_x2, W_h2, b2):
    """The 2-layer RNN on batch-first x (batch, seq_len, input_size); h0 (2, batch, hidden_size); returns (output (batch, seq_len, hidden_size), h_n (2, batch, hidden_size))."""
    output, h_n = two_layer_forward(x.transpose(0, 1), h0.transpose(0, 1), W_x1, W_h1, b1, W_x2, W_h2, b2)  # h0 "batch first" too
    return output.transpose(0, 1), h_n.transpose(0, 1)
''', {"test_two_layer_forward_batch_first"}, 'Hint: h0 in batch-first order?'),
    _wrong("backward-not-flipped-back", CH03, "bidirectional_forward", '''
def bidirectional_forward(x, h0, W_x_f, W_h_f, b_f, W_x_b, W_h_b, b_b):
    """A bidirectional RNN layer on x (seq_len, batch, input_size) from h0 (2, batch, hidden_size); returns (output (seq_len, batch, 2 * hidden_size), h_n (2, batch, hidden_size))."""
    forward = unroll(x, h0[0], W_x_f, W_h_f, b_f)
    backward = unroll(x.flip(0), h0[1], W_x_b, W_h_b, b_b)  # kept in the order it was made
    output = torch.cat([forward, backward], dim=2)
    h_n = torch.stack([forward[-1], backward[-1]])
    return output, h_n
''', {"test_bidirectional_forward"}, 'Likely mistake: backward states not flipped back'),
]
WRONG_ANSWERS["ch04_bptt"] = [
    _wrong("gradients-overwritten", CH04, "rnn_backward", '''
def rnn_backward(dh, x, hs, W_x, W_h):
    """BPTT for one tanh layer: dh (seq_len, batch, hidden) direct gradients, x (seq_len, batch, input), hs = h_0 ... h_T (seq_len + 1, batch, hidden); returns (dx, dh0, dW_x, dW_h, db)."""
    dx = torch.zeros_like(x)
    from_later_steps = torch.zeros_like(hs[0])
    for t in reversed(range(x.shape[0])):
        g = (dh[t] + from_later_steps) * (1 - hs[t + 1] ** 2)
        dW_x = g.T @ x[t]  # = instead of +=
        dW_h = g.T @ hs[t]
        db = g.sum(dim=0)
        dx[t] = g @ W_x
        from_later_steps = g @ W_h
    return dx, from_later_steps, dW_x, dW_h, db
''', {"test_rnn_backward"}, 'Likely mistake: gradients overwritten instead of accumulated over time?'),
    _wrong("tanh-slope-of-tanh", CH04, "rnn_backward", '''
def rnn_backward(dh, x, hs, W_x, W_h):
    """BPTT for one tanh layer; returns (dx, dh0, dW_x, dW_h, db)."""
    dx = torch.zeros_like(x)
    dW_x, dW_h = torch.zeros_like(W_x), torch.zeros_like(W_h)
    db = torch.zeros_like(W_h[0])
    from_later_steps = torch.zeros_like(hs[0])
    for t in reversed(range(x.shape[0])):
        # hs already holds tanh(z): this takes tanh twice
        g = (dh[t] + from_later_steps) * (1 - torch.tanh(hs[t + 1]) ** 2)
        dW_x += g.T @ x[t]
        dW_h += g.T @ hs[t]
        db += g.sum(dim=0)
        dx[t] = g @ W_x
        from_later_steps = g @ W_h
    return dx, from_later_steps, dW_x, dW_h, db
''', {"test_rnn_backward"}, 'Likely mistake: tanh slope computed from tanh(hₜ)'),
    _wrong("clip-in-place", CH04, "clip_by_value", '''
def clip_by_value(gradients, clip_value):
    """Clamp every entry of every tensor in the tuple `gradients` into [-clip_value, clip_value]; returns a tuple of new tensors."""
    return tuple(g.clamp_(-clip_value, clip_value) for g in gradients)  # clamp_ works in place, on the caller's tensors
''', {"test_clip_by_value"},
       'Do not modify any argument in place: clip_by_value changed'),
    _wrong("clip-each-tensor", CH04, "clip_by_norm", '''
def clip_by_norm(gradients, max_norm):
    """Rescale the tuple `gradients` together so that their global norm is at most max_norm; returns a tuple of new tensors."""
    clipped = []
    for g in gradients:  # each tensor on its own
        norm = torch.sqrt((g * g).sum())
        clipped.append(g * torch.clamp(max_norm / (norm + 1e-6), max=1.0))
    return tuple(clipped)
''', {"test_clip_by_norm"}, 'Likely mistake: each tensor clipped on its own'),
    _wrong("chunked-truncation", CH04, "truncated_rnn_backward", '''
def truncated_rnn_backward(dh, x, hs, W_x, W_h, k):
    """Truncated BPTT: the loss at step s reaches back through steps s, s-1, ..., s-k+1 only; returns (dx, dh0, dW_x, dW_h, db)."""
    dx, dh0 = torch.zeros_like(x), torch.zeros_like(hs[0])
    dW_x, dW_h, db = torch.zeros_like(W_x), torch.zeros_like(W_h), torch.zeros_like(W_h[0])
    for start in range(0, x.shape[0], k):  # chunks of k steps, as with h.detach() every k steps
        stop = min(start + k, x.shape[0])
        g_x, g_h0, g_W_x, g_W_h, g_b = rnn_backward(dh[start:stop], x[start:stop], hs[start:stop + 1], W_x, W_h)
        dx[start:stop] = g_x
        if start == 0:
            dh0 = g_h0
        dW_x += g_W_x
        dW_h += g_W_h
        db += g_b
    return dx, dh0, dW_x, dW_h, db
''', {"test_truncated_rnn_backward"}, 'Likely mistake: chunked truncation'),
    _wrong("mse-factor-2-missing", CH04, "sequence_loss_and_gradients", '''
def sequence_loss_and_gradients(x, h0, W_x, W_h, b, W_y, b_y, y):
    """Forward pass with a read-out y_hat_t = h_t W_yᵀ + b_y and the mean squared error over every step; returns (loss, dW_x, dW_h, db, dW_y, db_y)."""
    states = [h0]
    for x_t in x:
        states.append(torch.tanh(states[-1] @ W_h.T + x_t @ W_x.T + b))
    hs = torch.stack(states)
    error = hs[1:] @ W_y.T + b_y - y
    loss = (error ** 2).mean()
    d_y_hat = error / error.numel()  # the 2 of the square forgotten
    dW_y = torch.einsum("tbo,tbh->oh", d_y_hat, hs[1:])
    db_y = d_y_hat.sum(dim=(0, 1))
    dh = d_y_hat @ W_y
    _, _, dW_x, dW_h, db = rnn_backward(dh, x, hs, W_x, W_h)
    return loss, dW_x, dW_h, db, dW_y, db_y
''', {"test_sequence_loss_and_gradients"}, 'Likely mistake: the factor 2 missing'),
    _wrong("mse-wrong-count", CH04, "sequence_loss_and_gradients", '''
def sequence_loss_and_gradients(x, h0, W_x, W_h, b, W_y, b_y, y):
    """The forecaster's mean squared error over every step and its gradients."""
    states = [h0]
    for x_t in x:
        states.append(torch.tanh(states[-1] @ W_h.T + x_t @ W_x.T + b))
    hs = torch.stack(states)
    error = hs[1:] @ W_y.T + b_y - y
    count = x.shape[0] * x.shape[1]  # steps times sequences: the outputs forgotten
    loss = (error ** 2).sum() / count
    d_y_hat = 2 * error / count
    dW_y = torch.einsum("tbo,tbh->oh", d_y_hat, hs[1:])
    db_y = d_y_hat.sum(dim=(0, 1))
    _, _, dW_x, dW_h, db = rnn_backward(d_y_hat @ W_y, x, hs, W_x, W_h)
    return loss, dW_x, dW_h, db, dW_y, db_y
''', {"test_sequence_loss_and_gradients"},
       'Likely mistake: the loss divided by the wrong count, seq_len · batch = 12'),
    _wrong("loss-by-autograd", CH04, "sequence_loss_and_gradients", '''
def sequence_loss_and_gradients(x, h0, W_x, W_h, b, W_y, b_y, y):
    """Forward pass with a read-out y_hat_t = h_t W_yᵀ + b_y and the mean squared error over every step; returns (loss, dW_x, dW_h, db, dW_y, db_y)."""
    weights = [w.detach().clone().requires_grad_() for w in (W_x, W_h, b, W_y, b_y)]
    W_x_, W_h_, b_, W_y_, b_y_ = weights
    h_t, squares = h0, []
    for x_t, y_t in zip(x, y):
        h_t = torch.tanh(h_t @ W_h_.T + x_t @ W_x_.T + b_)
        squares.append((h_t @ W_y_.T + b_y_ - y_t) ** 2)
    loss = torch.stack(squares).mean()
    loss.backward()  # let autograd do it
    return (loss.detach(), *(w.grad for w in weights))
''', {"test_sequence_loss_and_gradients"}, 'your function calls torch.Tensor.backward'),
]


# ch05_torch_rnn and ch06_forecasting
CH05 = "ch05_torch_rnn.ipynb"
CH06 = "ch06_forecasting.ipynb"

WRONG_ANSWERS["ch05_torch_rnn"] = [
    _wrong("bias-added-in-place", CH05, "layer_weights", '''
def layer_weights(state, layer):
    """Layer `layer` of nn.RNN's weights as the memory cell's (W_x, W_h, b), with b = bias_ih + bias_hh."""
    W_x = state[f"weight_ih_l{layer}"]
    W_h = state[f"weight_hh_l{layer}"]
    if f"bias_ih_l{layer}" not in state:
        return W_x, W_h, W_h.new_zeros(W_h.shape[0])
    b = state[f"bias_ih_l{layer}"]
    b += state[f"bias_hh_l{layer}"]  # b IS the dictionary's tensor: changed in place
    return W_x, W_h, b
''', {"test_layer_weights"},
       "Do not modify any argument in place: layer_weights changed"),
    _wrong("step-writes-into-h-prev", CH05, "stacked_step", '''
def stacked_step(x_t, h_prev, state, num_layers):
    """One step of every layer: (num_layers, batch, hidden)."""
    layer_input = x_t
    for layer in range(num_layers):
        W_x, W_h, b = layer_weights(state, layer)
        # writes into the caller's tensor
        h_prev[layer] = torch.tanh(layer_input @ W_x.T + h_prev[layer] @ W_h.T + b)
        layer_input = h_prev[layer]
    return h_prev
''', {"test_stacked_step"},
       'Do not modify any argument in place: stacked_step changed'),
    _wrong("layer-reads-old-state", CH05, "stacked_step", '''
def stacked_step(x_t, h_prev, state, num_layers):
    """One step of every layer: x_t (batch, input_size), h_prev (num_layers, batch, hidden) -> h_t (num_layers, batch, hidden)."""
    new_states = []
    for layer in range(num_layers):
        W_x, W_h, b = layer_weights(state, layer)
        layer_input = x_t if layer == 0 else h_prev[layer - 1]  # the layer below's OLD state
        new_states.append(torch.tanh(layer_input @ W_x.T + h_prev[layer] @ W_h.T + b))
    return torch.stack(new_states)
''', {"test_stacked_step"}, 'Likely mistake: layer 1 read the OLD state of layer 0'),
    _wrong("h0-batch-first", CH05, "rnn_forward", '''
def rnn_forward(x, state, num_layers, h0=None, batch_first=False):
    """What nn.RNN computes, from its weights in `state`: returns (output, h_n); batch_first changes x and output only."""
    if batch_first:
        x = x.transpose(0, 1)
        if h0 is not None:
            h0 = h0.transpose(0, 1)  # "batch first" applied to h0 as well
    if h0 is None:
        h0 = x.new_zeros(num_layers, x.shape[1], state["weight_hh_l0"].shape[0])
    h_t = h0
    outputs = []
    for x_t in x:
        h_t = stacked_step(x_t, h_t, state, num_layers)
        outputs.append(h_t[-1])
    output = torch.stack(outputs)
    if batch_first:
        output = output.transpose(0, 1)
    return output, h_t
''', {"test_rnn_forward"}, 'Likely mistake: h₀ in batch-first order?'),
    _wrong("feeds-last-observed", CH05, "generate", '''
def generate(history, state, num_layers, W_out, b_out, steps):
    """Read history (seq_len, batch, input_size), then predict `steps` inputs, each fed back: (steps, batch, input_size)."""
    _, h_t = rnn_forward(history, state, num_layers)
    predictions = []
    for step in range(steps):
        prediction = h_t[-1] @ W_out.T + b_out
        predictions.append(prediction)
        h_t = stacked_step(history[-1], h_t, state, num_layers)  # the last observed value, not the prediction
    return torch.stack(predictions)
''', {"test_generate"}, 'Likely mistake: the last observed input was fed in at every step'),
    _wrong("generate-from-zeros", CH05, "generate", '''
def generate(history, state, num_layers, W_out, b_out, steps):
    """Read history, then predict `steps` inputs, each fed back."""
    _, h_t = rnn_forward(history, state, num_layers)
    predictions = []
    for step in range(steps):
        prediction = h_t[-1] @ W_out.T + b_out
        predictions.append(prediction)
        # h0=None: every generated step starts from zeros
        _, h_t = rnn_forward(prediction[None], state, num_layers)
    return torch.stack(predictions)
''', {"test_generate"},
       'Likely mistake: generation restarted from zeros at every step'),
]
WRONG_ANSWERS["ch06_forecasting"] = [
    _wrong("test-windows-start-late", CH06, "split_windows", '''
def split_windows(series, window, train_days):
    """(days, features) -> train_inputs (N, window, features), train_targets (N,), test_inputs (M, window, features), test_targets (M,)."""
    def pairs(part):
        inputs = torch.stack([part[i:i + window] for i in range(part.shape[0] - window)])
        return inputs, part[window:, 0]
    train_inputs, train_targets = pairs(series[:train_days])
    test_inputs, test_targets = pairs(series[train_days:])  # windows cut inside the test period
    return train_inputs, train_targets, test_inputs, test_targets
''', {"test_split_windows"}, 'Likely mistake: the first `window` test days get no forecast'),
    _wrong("train-one-day-too-long", CH06, "split_windows", '''
def split_windows(series, window, train_days):
    """Batch-first training and test pairs on both sides of the split."""
    starts = range(series.shape[0] - window)
    inputs = torch.stack([series[i:i + window] for i in starts])
    targets = series[window:, 0]
    cut = train_days - window + 1  # one pair too many: its target is the first test day
    return inputs[:cut], targets[:cut], inputs[cut:], targets[cut:]
''', {"test_split_windows"}, 'Likely mistake: leakage: one training pair too many'),
    _wrong("statistics-from-all-days", CH06, "standardize", '''
def standardize(series, train_days):
    """Scale every column to mean 0, std 1 with the statistics of the first train_days days: (scaled, mean, std)."""
    mean, std = series.mean(dim=0), series.std(dim=0)
    return (series - mean) / std, mean, std
''', {"test_standardize"}, 'Likely mistake: statistics over ALL days'),
    _wrong("mae-not-in-celsius", CH06, "persistence_mae", '''
def persistence_mae(inputs, targets, target_std):
    """MAE in °C of "tomorrow like today" on standardized (num_pairs, window, features) inputs and (num_pairs,) targets."""
    return (inputs[:, -1, 0] - targets).abs().mean().item()
''', {"test_persistence_mae"}, 'Likely mistake: the error is in standardized units'),
    _wrong("no-optimizer-step", CH06, "train_and_forecast", '''
def train_and_forecast(train_inputs, train_targets, test_inputs, seed):
    """Train an nn.RNN forecaster on the training pairs; return its standardized forecasts for test_inputs, (M,)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    rnn = nn.RNN(train_inputs.shape[2], 16, batch_first=True).to(train_inputs)
    head = nn.Linear(16, 1).to(train_inputs)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    optimizer = torch.optim.Adam([*rnn.parameters(), *head.parameters()], lr=0.005)

    def forecast(x):
        _, h_n = rnn(x)
        return x[:, -1, 0] + head(h_n[-1]).squeeze(1)

    for epoch in range(10):
        order = torch.randperm(len(train_targets), generator=generator)
        for start in range(0, len(order), 32):
            batch = order[start:start + 32]
            loss = (forecast(train_inputs[batch]) - train_targets[batch]).square().mean()
            optimizer.zero_grad()
            loss.backward()  # ... but no optimizer.step(): the weights never change
    with torch.no_grad():
        return forecast(test_inputs)
''', {"test_train_and_forecast"}, "your forecasts are exactly persistence's"),
    _wrong("forecasts-with-gradients", CH06, "train_and_forecast", '''
def train_and_forecast(train_inputs, train_targets, test_inputs, seed):
    """Train an nn.RNN forecaster; return its standardized test forecasts, (M,)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    rnn = nn.RNN(train_inputs.shape[2], 16, batch_first=True).to(train_inputs)
    head = nn.Linear(16, 1).to(train_inputs)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    parameters = [*rnn.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=0.005)

    def forecast(x):
        _, h_n = rnn(x)
        return x[:, -1, 0] + head(h_n[-1]).squeeze(1)

    num_fit = int(0.85 * len(train_targets))
    best_loss, best_weights = math.inf, None
    for epoch in range(10):
        order = torch.randperm(num_fit, generator=generator)
        for start in range(0, num_fit, 32):
            batch = order[start:start + 32]
            errors = forecast(train_inputs[batch]) - train_targets[batch]
            loss = errors.square().mean()
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(parameters, max_norm=1.0)
            optimizer.step()
        with torch.no_grad():
            errors = forecast(train_inputs[num_fit:]) - train_targets[num_fit:]
            check = errors.square().mean().item()
        if check < best_loss:
            best_loss, best_weights = check, [p.detach().clone() for p in parameters]
    with torch.no_grad():
        for parameter, best in zip(parameters, best_weights):
            parameter.copy_(best)
    return forecast(test_inputs)  # outside torch.no_grad(): with gradients
''', {"test_train_and_forecast"}, "Compute the forecasts under torch.no_grad()"),
    _wrong("zero-grad-forgotten", CH06, "train_and_forecast", '''
def train_and_forecast(train_inputs, train_targets, test_inputs, seed):
    """Train an nn.RNN forecaster; return its standardized test forecasts, (M,)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    rnn = nn.RNN(train_inputs.shape[2], 16, batch_first=True).to(train_inputs)
    head = nn.Linear(16, 1).to(train_inputs)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    parameters = [*rnn.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=0.005)

    def forecast(x):
        _, h_n = rnn(x)
        return x[:, -1, 0] + head(h_n[-1]).squeeze(1)

    num_fit = int(0.85 * len(train_targets))
    best_loss, best_weights = math.inf, None
    for epoch in range(10):
        order = torch.randperm(num_fit, generator=generator)
        for start in range(0, num_fit, 32):
            batch = order[start:start + 32]
            errors = forecast(train_inputs[batch]) - train_targets[batch]
            loss = errors.square().mean()
            loss.backward()  # no optimizer.zero_grad(): the gradients add up
            nn.utils.clip_grad_norm_(parameters, max_norm=1.0)
            optimizer.step()
        with torch.no_grad():
            errors = forecast(train_inputs[num_fit:]) - train_targets[num_fit:]
            check = errors.square().mean().item()
        if check < best_loss:
            best_loss, best_weights = check, [p.detach().clone() for p in parameters]
    with torch.no_grad():
        for parameter, best in zip(parameters, best_weights):
            parameter.copy_(best)
    with torch.no_grad():
        return forecast(test_inputs)
''', {"test_train_and_forecast"},
       "Likely mistake: is optimizer.zero_grad() called before every loss.backward()?"),
    _right("allowed-helpers", CH06, "train_and_forecast", '''
def train_and_forecast(train_inputs, train_targets, test_inputs, seed):
    """Train with everything part 4 allows: nn.RNN, nn.Linear, nn.init, nn.MSELoss,
    F.mse_loss, torch.optim and clipping."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    rnn = nn.RNN(train_inputs.shape[2], 16, batch_first=True).to(train_inputs)
    head = nn.Linear(16, 1).to(train_inputs)
    nn.init.constant_(head.weight, 0.0)
    nn.init.zeros_(head.bias)
    parameters = [*rnn.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=0.005)
    loss_function = nn.MSELoss()

    def forecast(x):
        _, h_n = rnn(x)
        return x[:, -1, 0] + head(h_n[-1]).squeeze(1)

    num_fit = int(0.85 * len(train_targets))
    best_loss, best_weights = math.inf, None
    for epoch in range(10):
        order = torch.randperm(num_fit, generator=generator)
        for start in range(0, num_fit, 32):
            batch = order[start:start + 32]
            loss = loss_function(forecast(train_inputs[batch]), train_targets[batch])
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, max_norm=1.0)
            torch.nn.utils.clip_grad_value_(parameters, clip_value=100.0)
            optimizer.step()
        with torch.no_grad():
            check = torch.nn.functional.mse_loss(
                forecast(train_inputs[num_fit:]), train_targets[num_fit:])
        if check.item() < best_loss:
            best_loss = check.item()
            best_weights = [p.detach().clone() for p in parameters]
    with torch.no_grad():
        for parameter, best in zip(parameters, best_weights):
            parameter.copy_(best)
        return forecast(test_inputs)
'''),
    _wrong("package-trainer", CH06, "train_and_forecast", '''
def train_and_forecast(train_inputs, train_targets, test_inputs, seed):
    """Train an nn.RNN forecaster on the training pairs; return its standardized forecasts for test_inputs, (M,)."""
    from rnn_course.train import ForecastConfig, make_forecaster, predict, train_forecaster
    config = ForecastConfig(seed=seed)
    model = make_forecaster(train_inputs.shape[2], config)
    model.rnn.batch_first = model.batch_first = True
    train_forecaster(model, train_inputs, train_targets[:, None], config, progress=False)
    return predict(model, test_inputs)[:, 0]
''', {"test_train_and_forecast"}, 'your function calls rnn_course.train.make_forecaster'),
]

# ch07_text
CH07 = "ch07_text.ipynb"

WRONG_ANSWERS["ch07_text"] = [
    _wrong("unknown-character-mapped-to-0", CH07, "encode", '''
def encode(text, symbols):
    """The ids of the characters of `text`, symbols[id] being the character: (len,)."""
    index = {symbol: i for i, symbol in enumerate(symbols)}
    return torch.tensor([index.get(c, 0) for c in text], dtype=torch.int64)
''', {"test_encode"}, "a character outside the vocabulary must raise a ValueError"),
    _wrong("targets-not-shifted", CH07, "next_character_windows", '''
def next_character_windows(ids, seq_len):
    """(inputs, targets), each (seq_len, N): windows of ids, targets shifted by one."""
    num_windows = (ids.shape[0] - 1) // seq_len
    inputs = ids[: num_windows * seq_len].reshape(num_windows, seq_len).T
    return inputs.contiguous(), inputs.clone()  # the window itself as its target
''', {"test_next_character_windows"}, "Likely mistake: targets not shifted"),
    _wrong("softmax-over-the-batch", CH07, "sequence_loss", '''
def sequence_loss(logits, targets):
    """Mean cross-entropy of all steps: logits (seq, batch, V), targets (seq, batch)."""
    log_probs = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    return -log_probs.gather(-1, targets.unsqueeze(-1)).mean()
''', {"test_sequence_loss"},
        "Likely mistake: softmax over the wrong dimension (the batch"),
    _wrong("temperature-after-softmax", CH07, "sample_with_temperature", '''
def sample_with_temperature(logits, temperature, seed):
    """One id per row of logits (batch, V), drawn from softmax(logits / T): (batch,)."""
    generator = torch.Generator().manual_seed(seed)
    p = torch.softmax(logits.double().cpu(), dim=-1) / temperature
    return torch.multinomial(p, 1, generator=generator)[:, 0].to(logits.device)
''', {"test_sample_with_temperature"},
        "Likely mistake: the temperature was applied after the softmax"),
    _wrong("state-not-carried", CH07, "stream_perplexity", '''
def stream_perplexity(model, ids, seq_len):
    """exp(summed loss / predicted characters) of ids read as one stream, h carried."""
    total = 0.0
    for start in range(0, ids.shape[0] - 1, seq_len):
        stop = min(start + seq_len, ids.shape[0] - 1)
        logits, _ = model(ids[start:stop].unsqueeze(1), None)  # every window from h = 0
        loss = sequence_loss(logits, ids[start + 1 : stop + 1].unsqueeze(1))
        total += float(loss) * (stop - start)
    return math.exp(total / (ids.shape[0] - 1))
''', {"test_stream_perplexity"}, "Likely mistake: the state was not carried"),
    _wrong("mean-of-window-perplexities", CH07, "stream_perplexity", '''
def stream_perplexity(model, ids, seq_len):
    """exp(summed loss / predicted characters) of ids read as one stream, h carried."""
    perplexities, h = [], None
    for start in range(0, ids.shape[0] - 1, seq_len):
        stop = min(start + seq_len, ids.shape[0] - 1)
        logits, h = model(ids[start:stop].unsqueeze(1), h)
        loss = sequence_loss(logits, ids[start + 1 : stop + 1].unsqueeze(1))
        perplexities.append(math.exp(float(loss)))
    return sum(perplexities) / len(perplexities)
''', {"test_stream_perplexity"}, "Likely mistake: a mean of per-window perplexities"),
]

# ch08_gated
CH08 = "ch08_gated.ipynb"

WRONG_ANSWERS["ch08_gated"] = [
    _wrong("lstm-gate-order", CH08, "lstm_step", '''
def lstm_step(x_t, h_prev, c_prev, weight_ih, weight_hh, bias_ih, bias_hh):
    """One LSTM step as nn.LSTMCell computes it: returns (h_t, c_t)."""
    gates = x_t @ weight_ih.T + bias_ih + h_prev @ weight_hh.T + bias_hh
    i_pre, g_pre, f_pre, o_pre = gates.chunk(4, dim=1)  # i, c, f, o: another order
    c_t = torch.sigmoid(f_pre) * c_prev + torch.sigmoid(i_pre) * torch.tanh(g_pre)
    return torch.sigmoid(o_pre) * torch.tanh(c_t), c_t
''', {"test_lstm_step"}, "Likely mistake: gate blocks in the wrong order"),
    _wrong("lstm-tanh-input-gate", CH08, "lstm_step", '''
def lstm_step(x_t, h_prev, c_prev, weight_ih, weight_hh, bias_ih, bias_hh):
    """One LSTM step as nn.LSTMCell computes it: returns (h_t, c_t)."""
    gates = x_t @ weight_ih.T + bias_ih + h_prev @ weight_hh.T + bias_hh
    i_pre, f_pre, g_pre, o_pre = gates.chunk(4, dim=1)
    input_gate = torch.tanh(i_pre)  # a tanh where the sigmoid belongs
    c_t = torch.sigmoid(f_pre) * c_prev + input_gate * torch.tanh(g_pre)
    return torch.sigmoid(o_pre) * torch.tanh(c_t), c_t
''', {"test_lstm_step"}, "tanh where a sigmoid belongs: the input gate"),
    _wrong("lstm-cell-from-hidden", CH08, "lstm_step", '''
def lstm_step(x_t, h_prev, c_prev, weight_ih, weight_hh, bias_ih, bias_hh):
    """One LSTM step as nn.LSTMCell computes it: returns (h_t, c_t)."""
    gates = x_t @ weight_ih.T + bias_ih + h_prev @ weight_hh.T + bias_hh
    i_pre, f_pre, g_pre, o_pre = gates.chunk(4, dim=1)
    c_t = torch.sigmoid(f_pre) * h_prev + torch.sigmoid(i_pre) * torch.tanh(g_pre)
    return torch.sigmoid(o_pre) * torch.tanh(c_t), c_t
''', {"test_lstm_step"}, "the new cell state from the old hidden state"),
    _wrong("gru-reset-before-product", CH08, "gru_step", '''
def gru_step(x_t, h_prev, weight_ih, weight_hh, bias_ih, bias_hh):
    """One GRU step as nn.GRUCell computes it: returns h_t (batch, hidden)."""
    i_r, i_z, i_n = (x_t @ weight_ih.T + bias_ih).chunk(3, dim=1)
    W_hr, W_hz, W_hn = weight_hh.chunk(3, dim=0)
    b_hr, b_hz, b_hn = bias_hh.chunk(3)
    reset = torch.sigmoid(i_r + h_prev @ W_hr.T + b_hr)
    update = torch.sigmoid(i_z + h_prev @ W_hz.T + b_hz)
    new = torch.tanh(i_n + (reset * h_prev) @ W_hn.T + b_hn)  # the paper's position
    return (1 - update) * new + update * h_prev
''', {"test_gru_step"}, "Likely mistake: reset gate applied before the matrix product"),
    _wrong("forget-input-swapped", CH08, "split_lstm_gates", '''
def split_lstm_gates(state, layer):
    """nn.LSTM's layer `layer` as {"input"|"forget"|"cell"|"output": (W_x, W_h, b)}."""
    W_x = state[f"weight_ih_l{layer}"].chunk(4, dim=0)
    W_h = state[f"weight_hh_l{layer}"].chunk(4, dim=0)
    b = (state[f"bias_ih_l{layer}"] + state[f"bias_hh_l{layer}"]).chunk(4)
    names = ("forget", "input", "cell", "output")  # forget first, as in "f, i, g, o"
    return {name: (W_x[k], W_h[k], b[k]) for k, name in enumerate(names)}
''', {"test_split_lstm_gates"}, "Likely mistake: forget and input gates swapped"),
]
