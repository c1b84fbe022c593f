"""Backpropagation through time by hand (chapter 4) against autograd and finite
differences, in float64.
"""

import pytest
import torch

from rnn_course.bptt import (
    bptt,
    clip_by_norm,
    clip_by_value,
    global_norm,
    gradient_norms_over_time,
    layer_forward_with_cache,
    rnn_backward,
    rnn_forward_with_cache,
    truncated_bptt,
)
from rnn_course.rnn import ScratchRNN

SEQ_LEN, BATCH, INPUT, HIDDEN = 7, 3, 4, 5
F64 = torch.float64


def random_layer(seed=0, scale=0.6):
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=F64)

    return dict(
        x=randn(SEQ_LEN, BATCH, INPUT),
        h0=randn(BATCH, HIDDEN),
        W_x=scale * randn(HIDDEN, INPUT),
        W_h=scale * randn(HIDDEN, HIDDEN),
        b=randn(HIDDEN),
        grad_output=randn(SEQ_LEN, BATCH, HIDDEN),
        grad_h_n=randn(BATCH, HIDDEN),
    )


def autograd_reference(layer, nonlinearity="tanh"):
    """Gradients of L = Σₜ <grad_outputₜ, hₜ> + <grad_h_n, h_T> computed by autograd."""
    leaves = {
        name: layer[name].clone().requires_grad_(True)
        for name in ("x", "h0", "W_x", "W_h", "b")
    }
    states, _ = layer_forward_with_cache(
        leaves["x"],
        leaves["h0"],
        leaves["W_x"],
        leaves["W_h"],
        leaves["b"],
        nonlinearity,
    )
    states.retain_grad()
    loss = (states * layer["grad_output"]).sum() + (
        states[-1] * layer["grad_h_n"]
    ).sum()
    loss.backward()
    return {name: leaf.grad for name, leaf in leaves.items()}


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_bptt_equals_autograd_float64(nonlinearity):
    layer = random_layer()
    _, cache = layer_forward_with_cache(
        layer["x"], layer["h0"], layer["W_x"], layer["W_h"], layer["b"], nonlinearity
    )
    grads = bptt(cache, layer["grad_output"], layer["grad_h_n"])
    expected = autograd_reference(layer, nonlinearity)
    for name in ("W_x", "W_h", "b", "x", "h0"):
        torch.testing.assert_close(
            getattr(grads, name), expected[name], rtol=0, atol=1e-10, msg=name
        )


def test_gradient_of_every_hidden_state_is_the_total_derivative():
    layer = random_layer(seed=1)
    x, h0 = layer["x"], layer["h0"]
    _, cache = layer_forward_with_cache(x, h0, layer["W_x"], layer["W_h"], layer["b"])
    grads = bptt(cache, layer["grad_output"], layer["grad_h_n"])
    # autograd: keep the gradient that reaches each hₜ
    h = h0.clone().requires_grad_(True)
    states = []
    for x_t in x:
        h = torch.tanh(h @ layer["W_h"].T + x_t @ layer["W_x"].T + layer["b"])
        h.retain_grad()
        states.append(h)
    loss = (
        sum((s * g).sum() for s, g in zip(states, layer["grad_output"]))
        + (states[-1] * layer["grad_h_n"]).sum()
    )
    loss.backward()
    for t, state in enumerate(states):
        torch.testing.assert_close(grads.h[t], state.grad, rtol=0, atol=1e-10)


def test_bptt_agrees_with_central_finite_differences():
    layer = random_layer(seed=2)

    def loss_of(W_h):
        states, _ = layer_forward_with_cache(
            layer["x"], layer["h0"], layer["W_x"], W_h, layer["b"]
        )
        return (
            (states * layer["grad_output"]).sum()
            + (states[-1] * layer["grad_h_n"]).sum()
        ).item()

    _, cache = layer_forward_with_cache(
        layer["x"], layer["h0"], layer["W_x"], layer["W_h"], layer["b"]
    )
    analytic = bptt(cache, layer["grad_output"], layer["grad_h_n"]).W_h
    eps = 1e-6
    numeric = torch.zeros_like(analytic)
    for i in range(HIDDEN):
        for j in range(HIDDEN):
            plus, minus = layer["W_h"].clone(), layer["W_h"].clone()
            plus[i, j] += eps
            minus[i, j] -= eps
            numeric[i, j] = (loss_of(plus) - loss_of(minus)) / (2 * eps)
    relative_error = (
        (analytic - numeric).abs() / (analytic.abs() + numeric.abs()).clamp_min(1e-8)
    ).max()
    assert relative_error < 1e-6


def test_overwriting_instead_of_accumulating_would_be_caught():
    """Sanity of the reference: the last step's contribution alone is NOT the
    gradient."""
    layer = random_layer(seed=3)
    _, cache = layer_forward_with_cache(
        layer["x"], layer["h0"], layer["W_x"], layer["W_h"], layer["b"]
    )
    grads = bptt(cache, layer["grad_output"], layer["grad_h_n"])
    last_step_only = truncated_bptt(
        cache, torch.zeros_like(layer["grad_output"]), k=1, grad_h_n=layer["grad_h_n"]
    )
    assert (grads.W_h - last_step_only.W_h).abs().max() > 1e-3


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("batch_first", [False, True])
def test_stacked_rnn_backward_equals_autograd(num_layers, batch_first):
    torch.manual_seed(4)
    model = ScratchRNN(INPUT, HIDDEN, num_layers, batch_first=batch_first, dtype=F64)
    shape = (BATCH, SEQ_LEN, INPUT) if batch_first else (SEQ_LEN, BATCH, INPUT)
    x = torch.randn(*shape, dtype=F64, requires_grad=True)
    h0 = torch.randn(num_layers, BATCH, HIDDEN, dtype=F64, requires_grad=True)
    output, h_n = model(x, h0)
    grad_output, grad_h_n = torch.randn_like(output), torch.randn_like(h_n)
    ((output * grad_output).sum() + (h_n * grad_h_n).sum()).backward()

    with torch.no_grad():
        output2, h_n2, caches = rnn_forward_with_cache(model, x, h0)
        parameter_grads, grad_x, grad_h0 = rnn_backward(
            model, caches, grad_output, grad_h_n
        )
    torch.testing.assert_close(output2, output, rtol=0, atol=1e-12)
    torch.testing.assert_close(h_n2, h_n, rtol=0, atol=1e-12)
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(
            parameter_grads[name], parameter.grad, rtol=0, atol=1e-10, msg=name
        )
    torch.testing.assert_close(grad_x, x.grad, rtol=0, atol=1e-10)
    torch.testing.assert_close(grad_h0, h0.grad, rtol=0, atol=1e-10)


# --- truncation
# ----------------------------------------------------------------------------------


def truncated_autograd_reference(layer, k):
    """Each step s's loss back-propagated through at most k steps: rerun from
    h_{s-k}.detach().
    """
    leaves = {
        name: layer[name].clone().requires_grad_(True)
        for name in ("x", "h0", "W_x", "W_h", "b")
    }
    with torch.no_grad():
        full_states, _ = layer_forward_with_cache(
            layer["x"], layer["h0"], layer["W_x"], layer["W_h"], layer["b"]
        )
    all_h = torch.cat([layer["h0"].unsqueeze(0), full_states])  # h₀ … h_T
    direct = layer["grad_output"].clone()
    direct[-1] += layer["grad_h_n"]
    loss = 0
    for s in range(SEQ_LEN):
        start = max(s - k + 1, 0)
        h = (
            leaves["h0"] if start == 0 else all_h[start].clone()
        )  # detached: no gradient beyond k steps
        for t in range(start, s + 1):
            h = torch.tanh(
                h @ leaves["W_h"].T + leaves["x"][t] @ leaves["W_x"].T + leaves["b"]
            )
        loss = loss + (h * direct[s]).sum()
    loss.backward()
    return {name: leaf.grad for name, leaf in leaves.items()}


@pytest.mark.parametrize("k", [1, 2, 3, SEQ_LEN])
def test_truncated_bptt_equals_autograd_with_detach(k):
    layer = random_layer(seed=5)
    _, cache = layer_forward_with_cache(
        layer["x"], layer["h0"], layer["W_x"], layer["W_h"], layer["b"]
    )
    grads = truncated_bptt(cache, layer["grad_output"], k, layer["grad_h_n"])
    expected = truncated_autograd_reference(layer, k)
    for name in ("W_x", "W_h", "b", "x", "h0"):
        torch.testing.assert_close(
            getattr(grads, name), expected[name], rtol=0, atol=1e-10, msg=name
        )


def test_truncation_with_k_equal_to_length_is_full_bptt():
    layer = random_layer(seed=6)
    _, cache = layer_forward_with_cache(
        layer["x"], layer["h0"], layer["W_x"], layer["W_h"], layer["b"]
    )
    full = bptt(cache, layer["grad_output"], layer["grad_h_n"])
    truncated = truncated_bptt(cache, layer["grad_output"], SEQ_LEN, layer["grad_h_n"])
    torch.testing.assert_close(truncated.W_h, full.W_h, rtol=0, atol=1e-12)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_truncation_stops_gradients_exactly_k_steps_back(k):
    """A loss at the last step only: inputs within k steps get gradient, older ones get
    exactly zero.
    """
    layer = random_layer(seed=7)
    grad_output = torch.zeros(SEQ_LEN, BATCH, HIDDEN, dtype=F64)
    grad_output[-1] = 1.0
    _, cache = layer_forward_with_cache(
        layer["x"], layer["h0"], layer["W_x"], layer["W_h"], layer["b"]
    )
    grads = truncated_bptt(cache, grad_output, k)
    for t in range(SEQ_LEN):
        reached = t >= SEQ_LEN - k
        magnitude = grads.x[t].abs().max().item()
        assert (magnitude > 0) == reached, (
            f"step {t}: gradient {magnitude}, expected {'> 0' if reached else '0'}"
        )
    assert grads.h0.abs().max().item() == 0.0


def test_truncation_rejects_bad_k():
    layer = random_layer()
    _, cache = layer_forward_with_cache(
        layer["x"], layer["h0"], layer["W_x"], layer["W_h"], layer["b"]
    )
    with pytest.raises(ValueError, match="k must be a positive int"):
        truncated_bptt(cache, layer["grad_output"], 0)


def test_bptt_rejects_wrong_gradient_shapes():
    layer = random_layer()
    _, cache = layer_forward_with_cache(
        layer["x"], layer["h0"], layer["W_x"], layer["W_h"], layer["b"]
    )
    with pytest.raises(
        ValueError,
        match=r"grad_output must be \(seq_len, batch, hidden\) = \(7, 3, 5\)",
    ):
        bptt(cache, layer["grad_output"][:-1])
    with pytest.raises(ValueError, match=r"grad_h_n must be \(batch, hidden\)"):
        bptt(cache, layer["grad_output"], layer["grad_h_n"].T)


# --- clipping
# ------------------------------------------------------------------------------------


def test_clip_by_value_bounds_keeps_in_range_values_and_does_not_modify_input():
    gradient = torch.tensor([[-3.0, -0.5], [0.2, 7.0]])
    original = gradient.clone()
    clipped = clip_by_value(gradient, 1.0)
    torch.testing.assert_close(clipped, torch.tensor([[-1.0, -0.5], [0.2, 1.0]]))
    torch.testing.assert_close(gradient, original)  # input untouched
    p = torch.nn.Parameter(torch.zeros(2, 2))
    p.grad = gradient.clone()
    torch.nn.utils.clip_grad_value_([p], 1.0)
    torch.testing.assert_close(clipped, p.grad)


def test_clip_by_norm_equals_torch_and_keeps_direction():
    generator = torch.Generator().manual_seed(8)
    gradients = {
        "W_x": 10 * torch.randn(3, 4, generator=generator, dtype=F64),
        "W_h": 10 * torch.randn(3, 3, generator=generator, dtype=F64),
    }
    originals = {name: g.clone() for name, g in gradients.items()}
    clipped, total_norm = clip_by_norm(gradients, max_norm=1.0)

    parameters = [torch.nn.Parameter(torch.zeros_like(g)) for g in gradients.values()]
    for parameter, g in zip(parameters, gradients.values()):
        parameter.grad = g.clone()
    torch_norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm=1.0)
    torch.testing.assert_close(total_norm, torch_norm)
    for parameter, name in zip(parameters, gradients):
        torch.testing.assert_close(clipped[name], parameter.grad)
        torch.testing.assert_close(gradients[name], originals[name])  # input untouched
    assert abs(global_norm(clipped).item() - 1.0) < 1e-5
    flat, flat_clipped = (
        torch.cat([g.flatten() for g in gradients.values()]),
        torch.cat([g.flatten() for g in clipped.values()]),
    )
    cosine = torch.nn.functional.cosine_similarity(flat, flat_clipped, dim=0)
    assert cosine > 1 - 1e-12


def test_clip_by_norm_leaves_small_gradients_unchanged():
    gradient = torch.tensor([0.3, -0.4])  # norm 0.5
    clipped, norm = clip_by_norm(gradient, max_norm=1.0)
    torch.testing.assert_close(clipped, gradient)
    assert abs(norm.item() - 0.5) < 1e-7


def test_clipping_rejects_bad_thresholds_and_types():
    with pytest.raises(ValueError, match="clip_value must be > 0"):
        clip_by_value(torch.ones(2), 0)
    with pytest.raises(ValueError, match="max_norm must be > 0"):
        clip_by_norm(torch.ones(2), -1.0)
    with pytest.raises(TypeError, match="gradients must be a tensor"):
        clip_by_value(3.0, 1.0)


def test_gradient_norms_over_time():
    grad_h = torch.zeros(3, 2, 2)
    grad_h[0] = torch.tensor([[3.0, 4.0], [0.0, 1.0]])  # norms 5 and 1 -> mean 3
    assert gradient_norms_over_time(grad_h).tolist() == [3.0, 0.0, 0.0]
