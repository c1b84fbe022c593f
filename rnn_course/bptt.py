"""Backpropagation through time, written out by hand (chapter 4).

The unrolled RNN is an ordinary feed-forward graph whose layers share weights. Going
backwards from the last step, the gradient that reaches the hidden state hₜ has two
sources:

    dL/dhₜ = ∂Lₜ/∂hₜ              (the loss at step t itself: ``grad_output[t]``)
           + dL/dhₜ₊₁ · ∂hₜ₊₁/∂hₜ   (everything later steps owe to hₜ: the *total*
           derivative)

and because W_x, W_h and b are used at every step, their gradients are the SUM of the
per-step contributions. Overwriting instead of adding is the classic bug; so is using
only the one-step derivative ∂hₜ/∂W and forgetting the path through hₜ₋₁.

Everything here is plain tensor algebra, with no autograd; the tests check it against
autograd in float64 and against finite differences.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .cell import get_activation
from .validate import require_positive_int, require_tensor


@dataclass
class LayerCache:
    """What one layer's forward pass must remember for its backward pass."""

    x: torch.Tensor  # inputs, (seq_len, batch, input)
    h: (
        torch.Tensor
    )  # h₀ … h_T, (seq_len + 1, batch, hidden); h[t + 1] is made at step t
    W_x: torch.Tensor  # (hidden, input)
    W_h: torch.Tensor  # (hidden, hidden)
    nonlinearity: str


@dataclass
class LayerGradients:
    """Gradients of the loss for one layer."""

    W_x: torch.Tensor  # (hidden, input)
    W_h: torch.Tensor  # (hidden, hidden)
    b: torch.Tensor  # (hidden,)
    x: torch.Tensor  # (seq_len, batch, input): what flows down to the layer below
    h0: torch.Tensor  # (batch, hidden)
    h: (
        torch.Tensor
    )  # (seq_len, batch, hidden): dL/dhₜ for h₁ … h_T, the total derivative


def layer_forward_with_cache(
    x: torch.Tensor,
    h0: torch.Tensor,
    W_x: torch.Tensor,
    W_h: torch.Tensor,
    b: torch.Tensor,
    nonlinearity: str = "tanh",
) -> tuple[torch.Tensor, LayerCache]:
    """Unroll one layer (as :func:`rnn_course.rnn.rnn_layer_forward`) and keep what
    backward needs.

    x (seq_len, batch, input), h0 (batch, hidden). Returns (hidden states (seq_len,
    batch, hidden), cache).
    """
    activation = get_activation(nonlinearity)
    h = [h0]
    for x_t in x:  # (batch, input)
        h.append(activation(h[-1] @ W_h.T + x_t @ W_x.T + b))  # (batch, hidden)
    h = torch.stack(h)  # (seq_len + 1, batch, hidden)
    return h[1:], LayerCache(x=x, h=h, W_x=W_x, W_h=W_h, nonlinearity=nonlinearity)


def activation_derivative(h_t: torch.Tensor, nonlinearity: str) -> torch.Tensor:
    """f'(zₜ) written with the output hₜ = f(zₜ): 1 - hₜ² for tanh, 1 where hₜ > 0 for
    ReLU.
    """
    if nonlinearity == "tanh":
        return 1 - h_t * h_t
    return (h_t > 0).to(h_t.dtype)


def _zero_gradients(cache: LayerCache) -> LayerGradients:
    h_all = cache.h
    return LayerGradients(
        W_x=torch.zeros_like(cache.W_x),
        W_h=torch.zeros_like(cache.W_h),
        b=torch.zeros_like(cache.W_h[0]),
        x=torch.zeros_like(cache.x),
        h0=torch.zeros_like(h_all[0]),
        h=torch.zeros_like(h_all[1:]),
    )


def _backward_one_step(
    dh_t: torch.Tensor, t: int, cache: LayerCache, grads: LayerGradients
) -> torch.Tensor:
    """Push dL/dhₜ (for the state made at step t) through step t; return what reaches
    hₜ₋₁.

    Adds (+=, never =) this step's share to the shared weights' gradients.
    """
    h_t, h_prev, x_t = (
        cache.h[t + 1],
        cache.h[t],
        cache.x[t],
    )  # (batch, hidden), (batch, hidden), (batch, input)
    dz = dh_t * activation_derivative(
        h_t, cache.nonlinearity
    )  # (batch, hidden): gradient before f
    grads.W_x += dz.T @ x_t  # (hidden, input)
    grads.W_h += dz.T @ h_prev  # (hidden, hidden)
    grads.b += dz.sum(dim=0)  # (hidden,)
    grads.x[t] += dz @ cache.W_x  # (batch, input)
    return dz @ cache.W_h  # (batch, hidden): dL/dhₜ₋₁ through this step


def _direct_gradients(
    cache: LayerCache, grad_output: torch.Tensor, grad_h_n: torch.Tensor | None
) -> torch.Tensor:
    seq_len, batch, hidden = cache.h[1:].shape
    require_tensor(
        grad_output, "grad_output", ndim=3, shape_hint="(seq_len, batch, hidden)"
    )
    if grad_output.shape != cache.h[1:].shape:
        raise ValueError(
            "grad_output must be (seq_len, batch, hidden) = "
            f"{(seq_len, batch, hidden)}, "
            f"got {tuple(grad_output.shape)}"
        )
    direct = grad_output.clone()  # ∂Lₜ/∂hₜ, the loss at each step on its own state
    if grad_h_n is not None:
        if tuple(grad_h_n.shape) != (batch, hidden):
            raise ValueError(
                f"grad_h_n must be (batch, hidden) = {(batch, hidden)}, got "
                f"{tuple(grad_h_n.shape)}"
            )
        direct[-1] += grad_h_n  # h_n is the state made at the last step
    return direct


def bptt(
    cache: LayerCache, grad_output: torch.Tensor, grad_h_n: torch.Tensor | None = None
) -> LayerGradients:
    """Full backpropagation through time for one layer.

    grad_output (seq_len, batch, hidden): ∂L/∂hₜ from each step's own loss only (not
    what later steps add); grad_h_n (batch, hidden) or None. The gradient is carried
    from step to step.
    """
    direct = _direct_gradients(cache, grad_output, grad_h_n)
    grads = _zero_gradients(cache)
    from_the_future = torch.zeros_like(cache.h[0])  # dL/dh_T through later steps: none
    for t in reversed(range(direct.shape[0])):
        dh_t = direct[t] + from_the_future  # total derivative dL/dhₜ (batch, hidden)
        grads.h[t] = dh_t
        from_the_future = _backward_one_step(dh_t, t, cache, grads)
    grads.h0 = from_the_future  # dL/dh₀
    return grads


def truncated_bptt(
    cache: LayerCache,
    grad_output: torch.Tensor,
    k: int,
    grad_h_n: torch.Tensor | None = None,
) -> LayerGradients:
    """Truncated BPTT: the loss at step s sends gradient back through steps s, s-1, …,
    s-k+1 only.

    This is what detaching the hidden state k steps before each loss does. The state
    made k steps earlier receives nothing from step s's loss, and neither does anything
    before it. (Chapter 4 also shows the cheaper chunked variant: ``h = h.detach()``
    every k steps.)
    """
    require_positive_int(k, "k")
    direct = _direct_gradients(cache, grad_output, grad_h_n)
    grads = _zero_gradients(cache)
    for s in reversed(range(direct.shape[0])):  # the step whose loss we back-propagate
        dh_t = direct[s]  # (batch, hidden)
        oldest_step = max(s - k + 1, 0)
        for t in range(s, oldest_step - 1, -1):
            grads.h[t] += dh_t
            dh_t = _backward_one_step(dh_t, t, cache, grads)
        if oldest_step == 0:  # the window reached the start: h₀ gets its share
            grads.h0 += dh_t
    return grads


def rnn_forward_with_cache(model, x: torch.Tensor, h0: torch.Tensor | None = None):
    """Run a :class:`~rnn_course.rnn.ScratchRNN` layer by layer, keeping each layer's
    cache.

    Returns ``(output, h_n, caches)`` with ``output`` and ``h_n`` exactly as ``model(x,
    h0)``.
    """
    layout = (
        "(batch, seq_len, input_size)"
        if model.batch_first
        else "(seq_len, batch, input_size)"
    )
    require_tensor(x, "x", ndim=3, shape_hint=layout)
    if model.batch_first:
        x = x.transpose(0, 1)  # (seq_len, batch, input)
    if x.shape[0] == 0:
        raise ValueError("x is an empty sequence (seq_len = 0)")
    h0 = model._initial_state(h0, x.shape[1], x)  # (layers, batch, hidden)
    caches, last_states, layer_input = [], [], x
    for layer, cell in enumerate(model.cells):
        layer_input, cache = layer_forward_with_cache(
            layer_input, h0[layer], cell.W_x, cell.W_h, cell.b, model.nonlinearity
        )
        caches.append(cache)
        last_states.append(layer_input[-1])
    output, h_n = layer_input, torch.stack(last_states)
    if model.batch_first:
        output = output.transpose(0, 1)
    return output, h_n, caches


def rnn_backward(
    model,
    caches: list[LayerCache],
    grad_output: torch.Tensor,
    grad_h_n: torch.Tensor | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Hand-written BPTT for a stacked :class:`~rnn_course.rnn.ScratchRNN`.

    The top layer is back-propagated first; the gradient with respect to its *inputs* is
    the ``grad_output`` of the layer below. Returns ``(parameter gradients keyed like
    model.named_parameters(), dL/dx, dL/dh0)``.
    """
    if model.batch_first:
        grad_output = grad_output.transpose(0, 1)  # (seq_len, batch, hidden)
    parameter_grads: dict[str, torch.Tensor] = {}
    grad_h0 = []
    upstream = grad_output
    for layer in reversed(range(model.num_layers)):
        layer_grad_h_n = None if grad_h_n is None else grad_h_n[layer]
        grads = bptt(caches[layer], upstream, layer_grad_h_n)
        parameter_grads[f"cells.{layer}.W_x"] = grads.W_x
        parameter_grads[f"cells.{layer}.W_h"] = grads.W_h
        parameter_grads[f"cells.{layer}.b"] = grads.b
        grad_h0.insert(0, grads.h0)
        upstream = grads.x  # (seq_len, batch, features of the layer below)
    grad_x = upstream.transpose(0, 1) if model.batch_first else upstream
    return parameter_grads, grad_x, torch.stack(grad_h0)


def _as_list(gradients):
    if isinstance(gradients, torch.Tensor):
        return [gradients], lambda items: items[0]
    if isinstance(gradients, dict):
        keys = list(gradients)
        return [gradients[key] for key in keys], lambda items: dict(zip(keys, items))
    if isinstance(gradients, (list, tuple)):
        return list(gradients), lambda items: type(gradients)(items)
    raise TypeError(
        "gradients must be a tensor, or a list, tuple or dict of tensors, got "
        f"{type(gradients).__name__}"
    )


def clip_by_value(gradients, clip_value: float):
    """Clamp every entry to [-clip_value, clip_value]. Returns new tensors; the input is
    untouched.

    Clipping entries independently can change the gradient's *direction*.
    """
    if not clip_value > 0:
        raise ValueError(f"clip_value must be > 0, got {clip_value}")
    items, rebuild = _as_list(gradients)
    return rebuild([g.clamp(-clip_value, clip_value) for g in items])


def global_norm(gradients) -> torch.Tensor:
    """‖g‖₂ of all the gradients together, as if they were one long vector."""
    items, _ = _as_list(gradients)
    if not items:
        raise ValueError("no gradients given")
    return torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(g) for g in items])
    )


def clip_by_norm(gradients, max_norm: float, eps: float = 1e-6):
    """Rescale all gradients together so their global norm is at most ``max_norm``.

    Returns ``(clipped, total_norm)``; the input is untouched. Unlike clipping by value
    this keeps the direction. Same rule as ``torch.nn.utils.clip_grad_norm_``: scale by
    max_norm / (total_norm + eps) when that is below 1.
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    items, rebuild = _as_list(gradients)
    total_norm = global_norm(items)
    scale = torch.clamp(max_norm / (total_norm + eps), max=1.0)
    return rebuild([g * scale.to(g.dtype) for g in items]), total_norm


def gradient_norms_over_time(grad_h: torch.Tensor) -> torch.Tensor:
    """‖dL/dhₜ‖ for each step t, averaged over the batch: (seq_len, batch, hidden) ->
    (seq_len,).
    """
    require_tensor(grad_h, "grad_h", ndim=3, shape_hint="(seq_len, batch, hidden)")
    return torch.linalg.vector_norm(grad_h, dim=2).mean(dim=1)
