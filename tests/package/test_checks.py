"""Tests of rnn_course.checks: each helper passes a right value and fails a wrong one with the right message."""

import inspect

import numpy as np
import pytest
import torch

# Aliases taken at import time, as a student's `from torch.nn.utils import clip_grad_norm_` would be.
from torch.nn.utils import clip_grad_norm_ as captured_clip_grad_norm_  # noqa: E402 (after the package's imports)
from torch.nn.utils import clip_grad_value_ as captured_clip_grad_value_  # noqa: E402

import rnn_course
import rnn_course.cell
from rnn_course import checks
from rnn_course.checks import CheckFailed, ReferenceUsedError


def flat(error) -> str:
    """A failure's message with its line wrapping undone (messages are wrapped to fit
    nbgrader validate)."""
    return " ".join(str(error.value).split())


class AlwaysEqual:
    """The classic fake: equal to everything, with a convincing shape."""

    shape = (2, 3)
    dtype = torch.float32

    def __eq__(self, other):
        return True

    def __array__(self, dtype=None, copy=None):  # what NumPy would use to read it
        return np.zeros((2, 3))


class TensorSubclass(torch.Tensor):
    pass


class FloatSubclass(float):
    def __eq__(self, other):
        return True

    __hash__ = float.__hash__


# --- as_plain_tensor ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, dtype",
    [
        (torch.ones(2, 3), torch.float32),
        (torch.nn.Parameter(torch.ones(2)), torch.float32),
        (np.ones((2, 2)), torch.float64),
        (np.float32(1.5), torch.float32),
        ([[1.0, 2.0], [3.0, 4.0]], torch.float64),
        ((1, 2, 3), torch.int64),
        (2.5, torch.float64),
        (True, torch.bool),
    ],
)
def test_as_plain_tensor_accepts_real_numbers(value, dtype):
    tensor = checks.as_plain_tensor(value)
    assert type(tensor) is torch.Tensor
    assert tensor.dtype == dtype
    assert tensor.device.type == "cpu"
    assert not tensor.requires_grad


def test_as_plain_tensor_returns_a_copy():
    original = torch.zeros(3)
    copy = checks.as_plain_tensor(original)
    copy += 1
    assert original.tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    "value, fragment",
    [
        (None, "forget to `return`"),
        (AlwaysEqual(), "AlwaysEqual"),
        (TensorSubclass(torch.ones(2)), "subclass of torch.Tensor"),
        (FloatSubclass(1.0), "FloatSubclass"),
        ([1.0, FloatSubclass(2.0)], "FloatSubclass"),
        (torch.ones(2, device="meta"), "meta"),
        (torch.ones(2, dtype=torch.complex64), "complex64"),
        (torch.ones(2).to_sparse(), "dense"),
        ("1.0", "str"),
        (np.array(["a"]), "NumPy dtype"),
    ],
)
def test_as_plain_tensor_refuses_fakes(value, fragment):
    with pytest.raises(CheckFailed, match=None) as error:
        checks.as_plain_tensor(value, "h_t")
    assert fragment in str(error.value)
    assert "h_t" in str(error.value)


def test_reading_values_survives_a_patched_tensor_method(monkeypatch):
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: [0.0] * self.numel())
    with pytest.raises(CheckFailed):
        checks.check_close(torch.ones(3), torch.zeros(3), "y")


# --- shapes, dtypes, devices --------------------------------------------------------------------


def test_check_shape_passes_and_returns_the_tensor():
    tensor = checks.check_shape(torch.zeros(2, 3), (2, 3), "h")
    assert tuple(tensor.shape) == (2, 3)


def test_check_shape_names_a_known_wrong_shape():
    with pytest.raises(CheckFailed) as error:
        checks.check_shape(
            torch.zeros(4, 2, 3),
            (2, 4, 3),
            "h0",
            alternatives={"h0 in batch-first order?": (4, 2, 3)},
        )
    assert "h0 has shape (4, 2, 3), expected (2, 4, 3)" in str(error.value)
    assert "Likely mistake: h0 in batch-first order?" in str(error.value)


def test_check_shape_explains_swapped_dimensions_and_size_one():
    with pytest.raises(CheckFailed, match="another order"):
        checks.check_shape(torch.zeros(3, 2), (2, 3), "x")
    with pytest.raises(CheckFailed, match="dimension of size 1"):
        checks.check_shape(torch.zeros(5), (5, 1), "y")
    with pytest.raises(CheckFailed, match="Hint: keep the column"):
        checks.check_shape(torch.zeros(5), (5, 1), "y", hint="keep the column")


def test_check_shape_refuses_a_fake_shape():
    with pytest.raises(CheckFailed, match="AlwaysEqual"):
        checks.check_shape(AlwaysEqual(), (2, 3), "h")


def test_check_dtype_and_device():
    checks.check_dtype(torch.zeros(2, dtype=torch.float64), torch.float64, "h")
    with pytest.raises(CheckFailed, match="dtype=x.dtype"):
        checks.check_dtype(torch.zeros(2), torch.float64, "h")
    checks.check_device(torch.zeros(2), "cpu", "h")
    with pytest.raises(CheckFailed, match="device=x.device"):
        checks.check_device(torch.zeros(2), "meta", "h")
    with pytest.raises(CheckFailed, match="AlwaysEqual"):
        checks.check_dtype(AlwaysEqual(), torch.float32, "h")


# --- values ---------------------------------------------------------------------------------------


def test_relative_error_is_cs231n_formula():
    assert checks.relative_error(torch.tensor([1.0]), torch.tensor([1.0])) == 0.0
    assert checks.relative_error([1.0, 2.0], [1.1, 2.0]) == pytest.approx(0.1 / 2.1)
    assert checks.relative_error([0.0], [0.0]) == 0.0
    assert checks.relative_error([1.0], [float("nan")]) == float("inf")
    float32_noise = checks.relative_error(
        torch.tensor([1 / 3], dtype=torch.float32), [1 / 3]
    )
    assert 0 < float32_noise < 1e-7


def test_check_close_passes_float32_rounding_and_fails_a_real_difference():
    expected = torch.randn(4, 5, dtype=torch.float64)
    checks.check_close(expected.float(), expected, "h")
    wrong = expected.clone()
    wrong[2, 3] += 0.01
    with pytest.raises(CheckFailed) as error:
        checks.check_close(wrong, expected, "h")
    assert "at index (2, 3)" in str(error.value)


def test_check_close_names_the_mistake_that_matches():
    x = torch.tensor([[1.0, 2.0]])
    b = torch.tensor([0.5, -0.5])
    expected = torch.tanh(x + b)
    twice = torch.tanh(x + 2 * b)
    with pytest.raises(CheckFailed) as error:
        checks.check_close(
            twice,
            expected,
            "h_t",
            alternatives={"bias added twice?": twice, "tanh missing?": x + b},
            hint="compare with the formula",
        )
    assert "Likely mistake: bias added twice?" in str(error.value)
    assert "tanh missing?" not in str(error.value)
    with pytest.raises(CheckFailed) as error:
        checks.check_close(
            torch.zeros(1, 2),
            expected,
            "h_t",
            alternatives={"bias added twice?": twice},
            hint="compare with the formula",
        )
    assert "Likely mistake" not in str(error.value)
    assert "Hint: compare with the formula" in str(error.value)


def test_check_close_reports_nan_and_shape():
    with pytest.raises(CheckFailed, match="nan"):
        checks.check_close(
            torch.tensor([1.0, float("nan")]), torch.tensor([1.0, 2.0]), "y"
        )
    with pytest.raises(CheckFailed, match=r"shape \(3,\), expected \(2,\)"):
        checks.check_close(torch.zeros(3), torch.zeros(2), "y")


def test_check_close_refuses_an_always_equal_object():
    with pytest.raises(CheckFailed, match="AlwaysEqual"):
        checks.check_close(AlwaysEqual(), torch.zeros(2, 3), "h")


def test_check_scalar_accepts_float_and_one_element_tensor():
    checks.check_scalar(2.0, 2.0, "mae")
    checks.check_scalar(torch.tensor(2.0), 2.0, "mae")
    checks.check_scalar(np.float64(2.0), 2.0, "mae")
    with pytest.raises(CheckFailed, match="single number"):
        checks.check_scalar(torch.ones(2), 2.0, "mae")
    with pytest.raises(CheckFailed, match="Likely mistake: squared"):
        checks.check_scalar(4.0, 2.0, "mae", alternatives={"squared the errors?": 4.0})


def test_check_unchanged():
    before = torch.ones(3)
    checks.check_unchanged(before.clone(), before, "h_prev")
    with pytest.raises(CheckFailed, match="modified in place"):
        checks.check_unchanged(before.clone(), before + 1, "h_prev")


def test_check_raises():
    def bad():
        raise ValueError("too short")

    checks.check_raises(bad, ValueError, "make_windows on 2 days")
    with pytest.raises(CheckFailed, match="nothing was raised"):
        checks.check_raises(lambda: None, ValueError, "make_windows on 2 days")
    with pytest.raises(CheckFailed, match="got IndexError"):
        checks.check_raises(lambda: [][1], ValueError, "make_windows on 2 days")
    with pytest.raises(NotImplementedError):
        checks.check_raises(_not_implemented, ValueError, "blank")


def _not_implemented():
    raise NotImplementedError()


def test_check_terms_names_the_wrong_term():
    W = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    h = torch.tensor([[1.0, -1.0]])

    def not_transposed(h_prev):
        return h_prev @ W

    terms = [
        checks.Term(
            "h_prev W_hᵀ alone",
            lambda: not_transposed(h),
            h @ W.T,
            alternatives={"W_h not transposed?": h @ W},
        )
    ]
    with pytest.raises(CheckFailed) as error:
        checks.check_terms(terms, "h_t")
    assert "h_t with h_prev W_hᵀ alone" in str(error.value)
    assert "W_h not transposed?" in str(error.value)
    checks.check_terms([checks.Term("ok", lambda: h @ W.T, h @ W.T)], "h_t")


def test_check_terms_reports_a_crash_with_the_term():
    def crash():
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    with pytest.raises(
        CheckFailed, match="with the bias alone, h_t raised RuntimeError"
    ):
        checks.check_terms(
            [checks.Term("the bias alone", crash, torch.zeros(1))], "h_t"
        )


def test_check_accumulated_recognises_overwritten_gradients():
    steps = [torch.full((2, 2), float(t + 1)) for t in range(3)]
    checks.check_accumulated(steps[0] + steps[1] + steps[2], steps, "dW_h")
    with pytest.raises(CheckFailed) as error:
        checks.check_accumulated(steps[-1], steps, "dW_h")
    assert flat(error).startswith(
        "Likely mistake: gradients overwritten instead of accumulated over time"
    )


def test_check_tuple():
    assert checks.check_tuple((1, 2), 2, "make_windows") == (1, 2)
    with pytest.raises(CheckFailed, match=r"\(inputs, targets\)"):
        checks.check_tuple(
            torch.zeros(2), 2, "make_windows", names=("inputs", "targets")
        )
    with pytest.raises(CheckFailed, match="got 3 value"):
        checks.check_tuple((1, 2, 3), 2, "make_windows")


def test_seeded_randn_is_the_same_everywhere():
    a = checks.seeded_randn(3, 4, seed=7)
    b = checks.seeded_randn(3, 4, seed=7, dtype=torch.float64)
    assert a.shape == (3, 4) and a.dtype == torch.float32 and b.dtype == torch.float64
    assert torch.equal(a, b.float())
    assert not torch.equal(a, checks.seeded_randn(3, 4, seed=8))


def test_replaced_names_restores_the_namespace():
    namespace = {"step": "student"}
    with checks.replaced_names(namespace, step="reference", extra=1):
        assert namespace == {"step": "reference", "extra": 1}
    assert namespace == {"step": "student"}


# --- references out of reach ----------------------------------------------------------------------


def _cell_inputs():
    x = torch.randn(2, 3)
    h = torch.zeros(2, 4)
    W_x, W_h, b = torch.randn(4, 3), torch.randn(4, 4), torch.randn(4)
    return x, h, W_x, W_h, b


def test_references_are_blocked_however_they_are_reached():
    from rnn_course.cell import (
        rnn_cell_step as aliased_step,
    )  # an alias made before blocking

    x, h, W_x, W_h, b = _cell_inputs()
    cell_made_before = rnn_course.MemoryCell(3, 4)
    attempts = {
        "alias": lambda: aliased_step(x, h, W_x, W_h, b),
        "package level": lambda: rnn_course.rnn_cell_step(x, h, W_x, W_h, b),
        "existing module": lambda: cell_made_before(x),
        "new module": lambda: rnn_course.MemoryCell(3, 4),
        "nn.Linear": lambda: torch.nn.Linear(3, 4)(x),
        "F.linear": lambda: torch.nn.functional.linear(x, W_x, b),
        "nn.RNNCell": lambda: torch.nn.RNNCell(3, 4)(x),
        "nn.RNN": lambda: torch.nn.RNN(3, 4)(x.unsqueeze(0)),
        "ScratchRNN": lambda: rnn_course.ScratchRNN(3, 4)(x.unsqueeze(0)),
    }
    for attempt in attempts.values():
        with checks.references_out_of_reach():
            with pytest.raises(ReferenceUsedError, match="already does this exercise"):
                attempt()
    # everything works again afterwards
    assert aliased_step(x, h, W_x, W_h, b).shape == (2, 4)
    assert cell_made_before(x).shape == (2, 4)
    assert torch.nn.Linear(3, 4)(x).shape == (2, 4)


def test_blocking_is_undone_after_an_error():
    x, h, W_x, W_h, b = _cell_inputs()
    with pytest.raises(ZeroDivisionError):
        with checks.references_out_of_reach():
            _ = 1 / 0
    assert rnn_course.cell.rnn_cell_step(x, h, W_x, W_h, b).shape == (2, 4)


def test_plain_tensor_operations_are_not_blocked():
    x, h, W_x, W_h, b = _cell_inputs()
    with checks.references_out_of_reach():
        h_t = torch.tanh(h @ W_h.T + x @ W_x.T + b)
        (h_t - h_t).abs().mean().item()
    assert h_t.shape == (2, 4)


def test_extra_and_allowed_references():
    predictions, targets = torch.zeros(3), torch.ones(3)
    with checks.references_out_of_reach("torch.nn.functional.l1_loss"):
        with pytest.raises(ReferenceUsedError, match="l1_loss"):
            torch.nn.functional.l1_loss(predictions, targets)
        with pytest.raises(ReferenceUsedError):
            torch.nn.L1Loss()(predictions, targets)
    x, h, W_x, W_h, b = _cell_inputs()
    with checks.references_out_of_reach(
        allow=("rnn_course.cell.rnn_cell_step", "rnn_course.cell.get_activation")
    ):
        assert rnn_course.cell.rnn_cell_step(x, h, W_x, W_h, b).shape == (2, 4)


CLIPPING = (
    "torch.nn.utils.clip_grad_value_",
    "torch.nn.utils.clip_grad_norm_",
    "torch.nn.utils.clip_grad.clip_grad_norm_",
)


def _gradients():
    """Two parameters whose gradients have a global norm of 5 (√(4 + 1 + 4 + 16))."""
    first, second = (
        torch.zeros(2, requires_grad=True),
        torch.zeros(1, 2, requires_grad=True),
    )
    first.grad, second.grad = torch.tensor([2.0, 1.0]), torch.tensor([[2.0, 4.0]])
    return [first, second]


def _clipping_state():
    """What blocking may change: the module attributes and the code of the functions behind them."""
    utils, clip_grad = torch.nn.utils, torch.nn.utils.clip_grad
    functions = [
        getattr(utils, name) for name in ("clip_grad_value_", "clip_grad_norm_")
    ]
    functions += [
        getattr(clip_grad, name) for name in ("clip_grad_value_", "clip_grad_norm_")
    ]
    return (
        functions,
        [f.__code__ for f in functions],
        [inspect.unwrap(f).__code__ for f in functions],
    )


def _clip_by_norm_with_torch(parameters, max_norm):
    return torch.nn.utils.clip_grad_norm_(parameters, max_norm)


def _clip_by_norm_with_an_alias(parameters, max_norm):
    return captured_clip_grad_norm_(parameters, max_norm)


def _clip_by_value_with_an_alias(parameters, clip_value):
    return captured_clip_grad_value_(parameters, clip_value)


def test_torch_python_functions_in_extra_are_blocked_through_the_module():
    attempts = {
        "torch.nn.utils.clip_grad_norm_": lambda: torch.nn.utils.clip_grad_norm_(
            _gradients(), 1.0
        ),
        "torch.nn.utils.clip_grad_value_": lambda: torch.nn.utils.clip_grad_value_(
            _gradients(), 1.0
        ),
        "torch.nn.utils.clip_grad.clip_grad_norm_": lambda: (
            torch.nn.utils.clip_grad.clip_grad_norm_(_gradients(), 1.0)
        ),
    }
    for name, attempt in attempts.items():
        with checks.references_out_of_reach(name):
            with pytest.raises(ReferenceUsedError, match="already does this exercise"):
                attempt()
    with pytest.raises(
        ReferenceUsedError, match=r"torch\.nn\.utils\.(clip_grad\.)?clip_grad_norm_"
    ):
        checks.call_without_references(
            _clip_by_norm_with_torch, _gradients(), 1.0, extra=CLIPPING
        )


def test_torch_python_functions_in_extra_are_blocked_through_an_alias_made_before():
    with pytest.raises(
        ReferenceUsedError, match=r"torch\.nn\.utils\.(clip_grad\.)?clip_grad_norm_"
    ):
        checks.call_without_references(
            _clip_by_norm_with_an_alias, _gradients(), 1.0, extra=CLIPPING
        )
    with pytest.raises(ReferenceUsedError, match=r"torch\.nn\.utils\.clip_grad_value_"):
        checks.call_without_references(
            _clip_by_value_with_an_alias, _gradients(), 1.0, extra=CLIPPING
        )


def test_torch_python_functions_are_restored_afterwards():
    state = _clipping_state()
    expected = torch.nn.utils.clip_grad_norm_(_gradients(), 2.5)
    with checks.references_out_of_reach(*CLIPPING):
        assert (
            _clipping_state()[0] == state[0]
        )  # same objects: blocked in place, aliases included
        with pytest.raises(ReferenceUsedError):
            captured_clip_grad_norm_(_gradients(), 2.5)
    assert (
        _clipping_state() == state
    )  # the very same functions and code objects as before
    parameters = _gradients()
    assert torch.equal(captured_clip_grad_norm_(parameters, 2.5), expected)
    assert torch.equal(expected, torch.tensor(5.0))
    assert torch.allclose(parameters[0].grad, torch.tensor([1.0, 0.5]))
    assert torch.allclose(parameters[1].grad, torch.tensor([[1.0, 2.0]]))
    parameters = _gradients()
    torch.nn.utils.clip_grad_value_(parameters, 1.5)
    assert torch.equal(parameters[1].grad, torch.tensor([[1.5, 1.5]]))


def test_torch_python_functions_are_restored_after_an_error():
    state = _clipping_state()
    with pytest.raises(ReferenceUsedError):
        checks.call_without_references(
            _clip_by_norm_with_an_alias, _gradients(), 1.0, extra=CLIPPING
        )
    assert _clipping_state() == state
    with pytest.raises(ZeroDivisionError):
        with checks.references_out_of_reach(*CLIPPING):
            _ = 1 / 0
    assert _clipping_state() == state
    assert torch.equal(
        torch.nn.utils.clip_grad.clip_grad_norm_(_gradients(), 1.0), torch.tensor(5.0)
    )


def test_allowed_torch_python_functions_stay_usable():
    allowed = (
        "torch.nn.utils.clip_grad_norm_",
        "torch.nn.utils.clip_grad.clip_grad_norm_",
    )
    total = checks.call_without_references(
        _clip_by_norm_with_an_alias, _gradients(), 1.0, extra=CLIPPING, allow=allowed
    )
    assert torch.equal(total, torch.tensor(5.0))
    with pytest.raises(ReferenceUsedError, match="clip_grad_value_"):
        checks.call_without_references(
            _clip_by_value_with_an_alias,
            _gradients(),
            1.0,
            extra=CLIPPING,
            allow=allowed,
        )


def test_torch_python_function_with_a_closure_is_replaced_in_its_module(monkeypatch):
    def stand_in_for(value):
        def stand_in(*args, **kwargs):  # a closure: its code cannot be swapped
            return value

        return stand_in

    stand_in = stand_in_for("the stand-in ran")
    monkeypatch.setattr(torch.nn.utils, "clip_grad_value_", stand_in)
    with checks.references_out_of_reach("torch.nn.utils.clip_grad_value_"):
        with pytest.raises(ReferenceUsedError, match="clip_grad_value_"):
            torch.nn.utils.clip_grad_value_(_gradients(), 1.0)
    assert torch.nn.utils.clip_grad_value_ is stand_in
    assert stand_in() == "the stand-in ran"


def test_call_without_references_adds_hints_to_errors():
    def not_transposed(x, W):
        return x @ W

    with pytest.raises(CheckFailed, match="Hint: is W transposed"):
        checks.call_without_references(
            not_transposed,
            torch.zeros(2, 3),
            torch.zeros(4, 3),
            error_hints={"cannot be multiplied": "is W transposed?"},
        )
    with pytest.raises(CheckFailed, match="is a weight transposed"):  # the default hint
        checks.call_without_references(
            not_transposed, torch.zeros(2, 3), torch.zeros(4, 3)
        )
    with pytest.raises(CheckFailed, match="expected a function"):
        checks.call_without_references(42)


def test_errors_come_with_a_hint_and_the_test_case():
    def branches_on_a_tensor(predictions, targets):
        if predictions != targets:  # should compare the shapes
            raise ValueError("shapes differ")
        return 0.0

    with pytest.raises(CheckFailed) as error:
        checks.call_without_references(
            branches_on_a_tensor, torch.zeros(3), torch.ones(3, dtype=torch.float64)
        )
    assert str(error.value).startswith(
        "branches_on_a_tensor(...) raised RuntimeError.\n  Hint: a tensor stood"
    )
    assert (
        "Test case: branches_on_a_tensor(predictions=(3,) float32 on cpu, "
        "targets=(3,) float64" in flat(error)
    )
    assert isinstance(error.value.__cause__, RuntimeError)

    def mixes_dtypes(x):
        return x @ torch.ones(3, 3, dtype=torch.float64)

    with pytest.raises(CheckFailed) as error:
        checks.call_without_references(mixes_dtypes, torch.zeros(2, 3))
    assert "create new tensors with the inputs' dtype" in flat(error)

    def out_of_range(x, *, index):
        return x[index]

    with pytest.raises(
        IndexError
    ) as error:  # no hint for it: the error itself, with the test case as a note
        checks.call_without_references(out_of_range, torch.zeros(2), index=5)
    assert error.value.__notes__ == [
        "Test case: out_of_range(x=(2,) float32 on cpu, index=5)"
    ]


# --- the in-place rule -------------------------------------------------------------


def _bias_added_in_place(state, layer):
    b = state[f"bias_ih_l{layer}"]
    b += state[f"bias_hh_l{layer}"]  # into the dictionary's own tensor
    return b


def test_an_in_place_write_into_a_nested_tensor_is_caught():
    state = {"bias_ih_l0": torch.ones(3), "bias_hh_l0": torch.ones(3)}
    with pytest.raises(CheckFailed) as error:
        checks.call_without_references(_bias_added_in_place, state, 0)
    message = str(error.value)
    assert message.startswith(
        "Do not modify any argument in place: _bias_added_in_place changed"
    )
    assert " ".join(message.split()).startswith(
        "Do not modify any argument in place: _bias_added_in_place changed "
        "state['bias_ih_l0']."
    )

    def clamps_in_place(gradients, clip_value):
        return tuple(g.clamp_(-clip_value, clip_value) for g in gradients)

    gradients = (torch.tensor([0.5, -0.5]), torch.tensor([[3.0, -0.2]]))
    with pytest.raises(CheckFailed) as error:
        checks.call_without_references(clamps_in_place, gradients, clip_value=1.0)
    assert "clamps_in_place changed gradients[1]." in flat(
        error
    )  # [0] had nothing to clamp

    def writes_into_a_list(xs):
        xs[1][0, 0] = float("nan")
        return xs

    with pytest.raises(CheckFailed, match=r"changed xs\[1\]"):
        checks.call_without_references(
            writes_into_a_list, [torch.zeros(1), torch.zeros(1, 1)]
        )


def test_in_place_changes_of_shape_sign_and_keyword_arguments_are_caught():
    def unsqueezes(x):
        x.unsqueeze_(0)
        return x

    with pytest.raises(CheckFailed, match="unsqueezes changed x"):
        checks.call_without_references(unsqueezes, torch.zeros(2))

    def negates_zero(h0=None):
        return h0.neg_()

    with pytest.raises(
        CheckFailed, match="negates_zero changed h0"
    ):  # 0.0 -> -0.0: bit-exact
        checks.call_without_references(negates_zero, h0=torch.zeros(2))

    def proxy(*args, **kwargs):  # what a grader's proxy looks like: no names to give
        args[0].add_(1)

    with pytest.raises(CheckFailed, match="proxy changed argument 1"):
        checks.call_without_references(proxy, torch.zeros(2))


def test_a_clone_and_return_or_an_unchanged_nan_is_not_an_in_place_write():
    def clone_then_add(state, layer):
        b = state[f"bias_ih_l{layer}"].clone()
        b += state[f"bias_hh_l{layer}"]
        return b

    state = {"bias_ih_l0": torch.ones(3), "bias_hh_l0": torch.ones(3)}
    assert checks.call_without_references(clone_then_add, state, 0).tolist() == [
        2.0,
        2.0,
        2.0,
    ]
    assert state["bias_ih_l0"].tolist() == [1.0, 1.0, 1.0]
    with_nan = torch.tensor([float("nan"), 1.0])
    assert checks.call_without_references(lambda x: x * 2, with_nan)[1] == 2.0
    meta = torch.zeros(
        2, 3, device="meta"
    )  # no values to compare; the shape is still checked
    assert checks.call_without_references(lambda x: x + 1, meta).is_meta


def test_modifies_allows_the_named_arguments_only():
    def fills(out, x):
        out.copy_(x)
        return out

    out, x = torch.zeros(2), torch.ones(2)
    checks.call_without_references(fills, out, x, modifies=("out",))
    assert out.tolist() == [1.0, 1.0]
    with pytest.raises(CheckFailed, match="fills changed out"):
        checks.call_without_references(fills, torch.zeros(2), x, modifies=("x",))


def test_in_place_failure_quotes_the_rule_and_fits_nbgrader_validate():
    failure = checks.in_place_failure("layer_weights", "state['bias_ih_l0']")
    assert isinstance(failure, CheckFailed)
    message = str(failure)
    assert message.startswith(
        "Do not modify any argument in place: layer_weights changed"
    )
    assert "state['bias_ih_l0']" in message
    assert "Likely mistake: an in-place operation" in message
    lines = f"CheckFailed: {message}".split("\n")
    assert all(len(line) <= checks.MESSAGE_WIDTH for line in lines), lines
    assert str(checks.in_place_failure("f", "x")) == str(
        checks.in_place_failure("f", "x")
    )


def test_messages_are_wrapped_to_fit_nbgrader_validate():
    long = "Likely mistake: " + "word " * 60 + "\n  Hint: " + "x" * 10
    message = str(CheckFailed(long))
    lines = f"CheckFailed: {message}".split("\n")
    assert all(len(line) <= checks.MESSAGE_WIDTH for line in lines), lines
    assert " ".join(message.split()) == " ".join(
        long.split()
    )  # nothing lost, only wrapped
    assert str(CheckFailed(message)) == message  # wrapping twice changes nothing
    assert str(ReferenceUsedError("your function calls " + "a " * 50)).count("\n") >= 1


def test_check_float_enforces_return_a_python_float():
    assert checks.check_float(1.5, "mae") == 1.5
    assert checks.check_float(np.float64(0.25), "mae") == 0.25
    with pytest.raises(
        CheckFailed, match=r"^Return a Python float: mae returned a 0-d tensor"
    ):
        checks.check_float(torch.tensor(1.5), "mae")
    with pytest.raises(CheckFailed, match="Return a Python float"):
        checks.check_float(torch.tensor([1.5]), "mae")
    with pytest.raises(CheckFailed, match="Return a Python float"):
        checks.check_float(FloatSubclass(1.5), "mae")


def test_strict_device_catches_a_tensor_created_on_the_cpu():
    W_h = torch.randn(4, 4, device="meta")

    def cpu_h0(W_h):
        return torch.zeros(2, 4) @ W_h.T

    def device_aware_h0(W_h):
        return W_h.new_zeros(2, 4) @ W_h.T * torch.tensor(2.0)

    with pytest.raises(CheckFailed, match="mixes tensors on cpu and meta") as error:
        checks.call_without_references(cpu_h0, W_h, strict_device=True)
    assert "create new tensors on the inputs' device" in flat(error)
    assert (
        checks.call_without_references(
            device_aware_h0, W_h, strict_device=True
        ).device.type
        == "meta"
    )


def test_default_references_cover_the_chapters():
    names = checks.default_references()
    for name in (
        "rnn_course.cell.rnn_cell_step",
        "rnn_course.neuron.persistence_forecast",
        "rnn_course.data.make_windows",
        "rnn_course.rnn.rnn_layer_forward",
        "torch.nn.functional.linear",
    ):
        assert name in names
    assert not any(
        name.startswith(("rnn_course.device", "rnn_course.checks")) for name in names
    )


def test_devices_to_test_starts_with_the_cpu():
    devices = checks.devices_to_test()
    assert devices[0] == torch.device("cpu")
    assert len(devices) == len(set(devices))


def test_exercise_setup_seeds_and_switches_tf32_off():
    device = checks.exercise_setup(seed=3)
    first = torch.rand(3)
    checks.exercise_setup(seed=3)
    assert torch.equal(first, torch.rand(3))
    assert isinstance(device, torch.device)
    assert torch.backends.cuda.matmul.allow_tf32 is False
    assert torch.backends.cudnn.allow_tf32 is False
