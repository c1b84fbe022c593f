"""Assertions for the exercises' tests, whose messages name the likely mistake
(exercises of every chapter).

A failing exercise test should teach, not just say "False". The helpers here:

* turn whatever a student's function returned into a plain CPU tensor before looking at
  it (:func:`as_plain_tensor`): a Tensor subclass, an object with its own ``__eq__`` or
  a fake ``.shape`` is refused, so a comparison can only pass on real numbers;
* compare on the CPU in float64, with float32 tolerances, so the same answer gets the
  same grade on a CPU and on a GPU (:func:`check_close`, :func:`relative_error`);
* name the mistake: ``alternatives`` maps a message ("bias added twice?") to what a
  program with that mistake would have returned; when the student's value matches one,
  the message says so;
* test one term at a time (:func:`check_terms`), e.g. zero everything but the bias;
* put the course's own answers out of reach while a student's function runs
  (:func:`references_out_of_reach`): calling ``rnn_course.cell.rnn_cell_step``,
  ``nn.RNNCell`` or ``torch.nn.functional.linear`` there raises
  :class:`ReferenceUsedError`;
* make device mistakes visible on any machine (``strict_device=True`` with inputs on the
  ``meta`` device): a tensor created on the CPU and mixed with the inputs fails as it
  would on a GPU;
* prepare a notebook's kernel (:func:`exercise_setup`) and build inputs that are the
  same on every machine (:func:`seeded_randn`); :func:`replaced_names` grades one part
  at a time.

These checks run inside the student's own kernel, as nbgrader runs every test, so a
determined student can still tamper with them (patch this module, rewrite later cells).
They stop honest mistakes and fake values; a grade that must stand against tampering is
confirmed outside the kernel by calling the student's functions from the grading
process.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import importlib
import inspect
import math
import types
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from .device import get_device, seed_everything

# References taken now, so that a later `torch.Tensor.tolist = ...` in a student's cell
# does not change how values are read here.
_tolist = torch.Tensor.tolist
_size = torch.Tensor.size
_detach = torch.Tensor.detach
_to = torch.Tensor.to
_clone = torch.Tensor.clone
_as_tensor = torch.as_tensor
_isinstance = builtins.isinstance
_type = builtins.type
_abs = builtins.abs
_max = builtins.max
_len = builtins.len

FLOAT32_ATOL = 1e-5
"""Absolute tolerance for values of order 1 computed in float32 on any device
(TF32 off)."""
FLOAT32_RTOL = 1e-4
"""Relative tolerance for the same: float32 keeps ~7 digits, a few operations lose one
or two."""

_PLAIN_DTYPES = {
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.bool,
}
_PLAIN_SCALARS = (float, int, bool)


MESSAGE_WIDTH = 83
"""Longest line of a failure message: ``nbgrader validate`` indents each line by four
spaces and cuts it at 87 characters, so a longer line loses its end (often the hint)."""


def fit_lines(message: str, first_line_prefix: int = 0) -> str:
    """Wrap every line of ``message`` to :data:`MESSAGE_WIDTH` characters at spaces.

    The first line leaves room for ``first_line_prefix`` characters (the
    ``CheckFailed: `` that a traceback puts before it); a wrapped line continues on the
    next, indented two more spaces. Lines that already fit are kept as they are, so
    wrapping twice changes nothing.
    """
    lines = []
    for number, line in enumerate(str(message).split("\n")):
        width = MESSAGE_WIDTH - (first_line_prefix if number == 0 else 0)
        lead = line[: _len(line) - _len(line.lstrip(" "))]
        words = line[_len(lead) :].split(" ")
        current = lead
        for word in words:
            if current.strip() and _len(current) + 1 + _len(word) > width:
                lines.append(current)
                current = lead + "  " + word
                width = MESSAGE_WIDTH
            else:
                current = f"{current} {word}" if current.strip() else current + word
        lines.append(current)
    return "\n".join(lines)


class CheckFailed(AssertionError):
    """An exercise test failed; the message says what was wrong and, where it can, why.

    Its lines are wrapped to fit ``nbgrader validate``'s output (:func:`fit_lines`).
    """

    def __init__(self, message: object = ""):
        super().__init__(fit_lines(str(message), _len("CheckFailed: ")))


class ReferenceUsedError(RuntimeError):
    """A student's function called a reference that already does the exercise."""

    def __init__(self, message: object = ""):
        super().__init__(fit_lines(str(message), _len("ReferenceUsedError: ")))


# --------------------------------------------------------------------------------------
# Reading a student's value
# --------------------------------------------------------------------------------------


def _describe(value) -> str:
    kind = _type(value)
    return (
        kind.__name__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )


def _check_plain_nested(value, what: str, depth: int = 0) -> None:
    """Accept exact float/int/bool and exact lists/tuples of them; anything else is
    refused."""
    kind = _type(value)
    if kind in _PLAIN_SCALARS:
        return
    if kind in (list, tuple) and depth < 8:
        for item in value:
            _check_plain_nested(item, what, depth + 1)
        return
    raise CheckFailed(
        f"{what} must be a torch.Tensor (or plain numbers); "
        f"it holds a {_describe(value)}"
    )


def as_plain_tensor(value, what: str = "the result") -> torch.Tensor:
    """Return ``value`` as a new, plain ``torch.Tensor`` on the CPU, detached from
    autograd.

    Accepted: a ``torch.Tensor`` (or ``nn.Parameter``) of a plain dtype on any device, a
    NumPy array or scalar, a Python float/int/bool, or lists/tuples of those numbers.
    Refused, with a message: Tensor subclasses, objects that define their own
    ``__eq__``/``__array__``/``shape``, sparse, quantized or meta tensors, complex
    numbers, ``None``.
    """
    kind = _type(value)
    if value is None:
        raise CheckFailed(
            f"{what} is None: did the function forget to `return` its result?"
        )
    if kind is torch.Tensor or kind is torch.nn.Parameter:
        tensor = _detach(value)
    elif _isinstance(value, torch.Tensor):
        raise CheckFailed(
            f"{what} is a {_describe(value)}, a subclass of torch.Tensor; "
            "return a plain torch.Tensor"
        )
    elif kind is np.ndarray or (
        _isinstance(value, np.generic) and kind.__module__ == "numpy"
    ):
        if value.dtype.kind not in "fiub":
            raise CheckFailed(
                f"{what} has NumPy dtype {value.dtype}; expected real numbers"
            )
        tensor = _as_tensor(np.array(value, copy=True))
    else:
        _check_plain_nested(value, what)
        try:
            tensor = _as_tensor(
                value, dtype=torch.float64 if _contains_float(value) else None
            )
        except (TypeError, ValueError, RuntimeError) as error:
            raise CheckFailed(f"{what} could not be read as numbers: {error}") from None
    if _type(tensor) is not torch.Tensor:
        raise CheckFailed(f"{what} is not a plain torch.Tensor")
    if tensor.layout != torch.strided or tensor.is_quantized:
        raise CheckFailed(
            f"{what} must be an ordinary dense tensor, got layout {tensor.layout}"
        )
    if tensor.is_meta:
        raise CheckFailed(
            f"{what} is on the 'meta' device: it has a shape but no values"
        )
    if tensor.dtype not in _PLAIN_DTYPES:
        raise CheckFailed(
            f"{what} has dtype {tensor.dtype}; expected real numbers (e.g. float32)"
        )
    plain = _clone(_to(tensor, device="cpu"), memory_format=torch.contiguous_format)
    return plain.resolve_conj().resolve_neg()


def _contains_float(value) -> bool:
    if _type(value) is float:
        return True
    if _type(value) in (list, tuple):
        return any(_contains_float(item) for item in value)
    return False


def _shape(tensor: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(size) for size in _size(tensor))


def _flat_floats(tensor: torch.Tensor) -> list[float]:
    values = _tolist(_to(tensor, dtype=torch.float64).reshape(-1))
    return [float(v) for v in values]


def _unravel(flat_index: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    index = []
    for size in reversed(shape):
        index.append(flat_index % size)
        flat_index //= size
    return tuple(reversed(index))


def _message(headline: str, hint: str | None) -> str:
    return headline if not hint else f"{headline}\n  Hint: {hint}"


# --------------------------------------------------------------------------------------
# Shapes, types, devices
# --------------------------------------------------------------------------------------


def check_type(value, what: str, hint: str | None = None) -> torch.Tensor:
    """Check that ``value`` is a real tensor (see :func:`as_plain_tensor`) and return
    the CPU copy."""
    try:
        return as_plain_tensor(value, what)
    except CheckFailed as error:
        raise CheckFailed(_message(str(error), hint)) from None


def check_shape(
    actual,
    expected_shape: Sequence[int],
    what: str,
    hint: str | None = None,
    alternatives: Mapping[str, Sequence[int]] | None = None,
) -> torch.Tensor:
    """Check the shape of ``actual``; returns it as a plain CPU tensor.

    ``alternatives`` maps a message to a wrong shape that a known mistake produces, e.g.
    ``{"h0 in batch-first order? h0 stays (num_layers, batch, hidden)":
    (batch, layers, hidden)}``. Without a matching alternative, a shape that holds the
    right sizes in another order, or that differs only by a dimension of size 1, gets a
    generic explanation; ``hint`` is added last.
    """
    tensor = check_type(actual, what)
    got = _shape(tensor)
    expected = tuple(int(size) for size in expected_shape)
    if got == expected:
        return tensor
    headline = f"{what} has shape {got}, expected {expected}."
    for message, wrong_shape in (alternatives or {}).items():
        if got == tuple(int(size) for size in wrong_shape):
            headline = f"Likely mistake: {message}\n  {headline}"
            raise CheckFailed(_message(headline, hint))
    if sorted(got) == sorted(expected) and _len(got) > 1:
        headline += (
            " The sizes are right but in another order: are two dimensions swapped"
            " or transposed?"
        )
    elif [s for s in got if s != 1] == [s for s in expected if s != 1]:
        headline += (
            " Only a dimension of size 1 differs: a missing or extra unsqueeze/squeeze"
            ", or keepdim?"
        )
    raise CheckFailed(_message(headline, hint))


def check_dtype(
    actual, expected_dtype: torch.dtype, what: str, hint: str | None = None
) -> None:
    """Check that ``actual`` is a tensor of ``expected_dtype`` (e.g. the dtype of the
    inputs)."""
    if _type(actual) not in (torch.Tensor, torch.nn.Parameter):
        check_type(actual, what, hint)  # refuses fakes with the usual message
        raise CheckFailed(
            _message(f"{what} must be a torch.Tensor, got {_describe(actual)}", hint)
        )
    if actual.dtype != expected_dtype:
        raise CheckFailed(
            _message(
                f"{what} has dtype {actual.dtype}, expected {expected_dtype} "
                "(the dtype of the inputs).",
                hint
                or "create new tensors with the inputs' dtype, "
                "e.g. torch.zeros(..., dtype=x.dtype) or x.new_zeros(...)",
            )
        )


def check_device(
    actual, expected_device: torch.device | str, what: str, hint: str | None = None
) -> None:
    """Check that ``actual`` is a tensor on ``expected_device`` (the device of the
    inputs)."""
    if _type(actual) not in (torch.Tensor, torch.nn.Parameter):
        check_type(actual, what, hint)
        raise CheckFailed(
            _message(f"{what} must be a torch.Tensor, got {_describe(actual)}", hint)
        )
    expected_device = torch.device(expected_device)
    if actual.device.type != expected_device.type:
        raise CheckFailed(
            _message(
                f"{what} is on {actual.device}, "
                f"but the inputs were on {expected_device}.",
                hint
                or "create new tensors on the inputs' device, "
                "e.g. torch.zeros(..., device=x.device)",
            )
        )


# --------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------


def relative_error(actual, expected) -> float:
    """CS231n's relative error ``max(|x - y| / max(1e-8, |x| + |y|))``, computed in
    float64 on the CPU.

    About 1e-7 or less means equal up to float32 rounding for values of order 1; 1e-2 or
    more is a bug.
    """
    x = as_plain_tensor(actual, "actual")
    y = as_plain_tensor(expected, "expected")
    if _shape(x) != _shape(y):
        raise CheckFailed(f"cannot compare shapes {_shape(x)} and {_shape(y)}")
    worst = 0.0
    for a, b in zip(_flat_floats(x), _flat_floats(y)):
        if math.isnan(a) or math.isnan(b):
            return math.inf
        if a == b:  # also equal infinities
            continue
        worst = _max(worst, _abs(a - b) / _max(1e-8, _abs(a) + _abs(b)))
    return worst


def _all_close(
    actual: list[float], expected: list[float], atol: float, rtol: float
) -> bool:
    for a, e in zip(actual, expected):
        if not (_abs(a - e) <= atol + rtol * _abs(e)):  # False for NaN
            return False
    return True


def check_close(
    actual,
    expected,
    what: str,
    atol: float = FLOAT32_ATOL,
    rtol: float = FLOAT32_RTOL,
    hint: str | None = None,
    alternatives: Mapping[str, object] | None = None,
    shape_alternatives: Mapping[str, Sequence[int]] | None = None,
) -> None:
    """Check ``|actual - expected| <= atol + rtol·|expected|`` everywhere, in float64 on
    the CPU.

    ``alternatives`` maps a message to the value a known mistake would produce: when the
    student's value is close to one of them (and not to ``expected``), the failure names
    that mistake. ``hint`` is shown when no alternative matches. Shapes are checked
    first (see :func:`check_shape`).
    """
    expected_tensor = as_plain_tensor(expected, f"the expected {what}")
    tensor = check_shape(
        actual, _shape(expected_tensor), what, hint, shape_alternatives
    )
    got = _flat_floats(tensor)
    want = _flat_floats(expected_tensor)
    if _all_close(got, want, atol, rtol):
        return
    bad = [i for i, v in enumerate(got) if not math.isfinite(v)]
    if bad:
        index = _unravel(bad[0], _shape(tensor))
        raise CheckFailed(
            _message(
                f"{what} contains {got[bad[0]]} (at index {index}); "
                "expected finite numbers.",
                hint,
            )
        )
    worst = _max(range(_len(got)), key=lambda i: _abs(got[i] - want[i]))
    index = _unravel(worst, _shape(tensor)) if _shape(tensor) else ()
    where = f" at index {index}" if index else ""
    headline = (
        f"{what} is wrong: the largest difference is "
        f"{_abs(got[worst] - want[worst]):.3g}{where} "
        f"(got {got[worst]:.6g}, expected {want[worst]:.6g})."
    )
    for message, wrong in (alternatives or {}).items():
        wrong_tensor = as_plain_tensor(wrong, f"the alternative {message!r}")
        if _shape(wrong_tensor) == _shape(tensor) and _all_close(
            got, _flat_floats(wrong_tensor), atol, rtol
        ):
            headline = f"Likely mistake: {message}\n  {headline}"
            raise CheckFailed(_message(headline, hint))
    raise CheckFailed(_message(headline, hint))


def check_scalar(
    actual,
    expected: float,
    what: str,
    atol: float = FLOAT32_ATOL,
    rtol: float = FLOAT32_RTOL,
    hint: str | None = None,
    alternatives: Mapping[str, float] | None = None,
) -> None:
    """Check a single number: a Python float, a NumPy scalar or a tensor with one
    element."""
    tensor = check_type(actual, what, hint)
    if tensor.numel() != 1:
        raise CheckFailed(
            _message(
                f"{what} should be a single number, got shape {_shape(tensor)}.", hint
            )
        )
    check_close(
        tensor.reshape(()),
        torch.tensor(float(expected), dtype=torch.float64),
        what,
        atol,
        rtol,
        hint,
        {
            message: torch.tensor(float(value))
            for message, value in (alternatives or {}).items()
        },
    )


def check_float(value, what: str) -> float:
    """Check the rule "return a Python float" (what ``.item()`` of a tensor gives)."""
    if _type(value) is float or _type(value) is np.float64:
        return float(value)
    if _isinstance(value, torch.Tensor):
        got = (
            "a 0-d tensor" if value.dim() == 0 else f"a tensor of shape {_shape(value)}"
        )
        hint = (
            "call .item() on a one-element tensor to get its number as a Python float"
        )
    else:
        got = f"a {_describe(value)}"
        hint = "float(...) or .item() make one"
    raise CheckFailed(f"Return a Python float: {what} returned {got}.\n  Hint: {hint}")


def check_unchanged(
    before: torch.Tensor, after, what: str, hint: str | None = None
) -> None:
    """Check that an input was not modified in place (pass a ``clone()`` taken before
    the call)."""
    check_close(
        after,
        before,
        what,
        atol=0.0,
        rtol=0.0,
        hint=hint or f"{what} was modified in place; compute into a new tensor instead",
    )


def check_raises(
    function: Callable[[], object], exception_types, what: str, hint: str | None = None
) -> None:
    """Check that ``function()`` raises one of ``exception_types`` (e.g. a ValueError on
    bad input)."""
    if not isinstance(exception_types, tuple):
        exception_types = (exception_types,)
    names = " or ".join(kind.__name__ for kind in exception_types)
    try:
        function()
    except exception_types:
        return
    except NotImplementedError:
        raise
    except Exception as error:  # noqa: BLE001 (report what was raised instead)
        raise CheckFailed(
            _message(
                f"{what}: expected {names}, but got {type(error).__name__}: {error}",
                hint,
            )
        ) from None
    raise CheckFailed(
        _message(f"{what}: expected {names}, but nothing was raised.", hint)
    )


@dataclasses.dataclass
class Term:
    """One case of :func:`check_terms`: the inputs that leave a single term non-zero,
    and its expected value."""

    name: str  # e.g. "the bias b alone (x_t = 0, h_prev = 0)"
    call: Callable[[], object]  # runs the student's function on those inputs
    expected: object
    hint: str | None = None  # shown when this term is wrong and no alternative matches
    alternatives: Mapping[str, object] = dataclasses.field(default_factory=dict)


def check_terms(
    terms: Iterable[Term],
    what: str,
    atol: float = FLOAT32_ATOL,
    rtol: float = FLOAT32_RTOL,
) -> None:
    """Test a formula one term at a time, so the message can say which term is wrong.

    For hₜ = tanh(hₜ₋₁W_hᵀ + xₜW_xᵀ + b): first only b non-zero, then only xₜW_xᵀ, then
    only hₜ₋₁W_hᵀ.
    """
    for term in terms:
        try:
            actual = term.call()
        except (CheckFailed, ReferenceUsedError, NotImplementedError):
            raise
        except Exception as error:  # noqa: BLE001 (name the term that crashed)
            raise CheckFailed(
                f"with {term.name}, {what} raised {type(error).__name__}: {error}"
                + (f"\n  Hint: {term.hint}" if term.hint else "")
            ) from error
        check_close(
            actual,
            term.expected,
            f"{what} with {term.name}",
            atol,
            rtol,
            term.hint,
            term.alternatives,
        )


def check_accumulated(
    actual,
    per_step: Sequence[object],
    what: str,
    atol: float = FLOAT32_ATOL,
    rtol: float = FLOAT32_RTOL,
    hint: str | None = None,
) -> None:
    """Check a gradient of a weight shared over time: the SUM of its per-step
    contributions.

    Recognises the classic mistakes: keeping only the last step's (or the first step's)
    contribution.
    """
    steps = [
        as_plain_tensor(step, f"{what} at step {t}") for t, step in enumerate(per_step)
    ]
    if not steps:
        raise ValueError("per_step must hold at least one contribution")
    total = steps[0].double()
    for step in steps[1:]:
        total = total + step.double()
    alternatives = {}
    if _len(steps) > 1:
        alternatives[
            "gradients overwritten instead of accumulated over time? A shared weight's "
            "gradient is the sum of every step's contribution (use +=)"
        ] = steps[-1]
        alternatives[
            "only the first step's contribution kept? Add every step's contribution"
        ] = steps[0]
    check_close(actual, total, what, atol, rtol, hint, alternatives)


# --------------------------------------------------------------------------------------
# Devices to run on
# --------------------------------------------------------------------------------------


def exercise_setup(seed: int = 0) -> torch.device:
    """Prepare an exercise notebook's kernel; returns the device to run the visible
    tests on.

    Seeds every generator and switches TF32 off on CUDA (it rounds matrix products to
    ~10 bits, beyond the float32 tolerances used here). Unlike
    :func:`rnn_course.device.make_deterministic` it does not ask for deterministic
    kernels: the checks compare with tolerances, and that call costs about two seconds
    of CPU per kernel (it imports torch's compiler configuration), paid by every
    submission an autograder runs.
    """
    seed_everything(seed)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return get_device()


def devices_to_test() -> list[torch.device]:
    """The CPU, plus CUDA when present: hidden tests run the student's code on each.

    Apple's MPS is left out: it has no float64, which hidden tests use (visible tests
    run on ``get_device()``, MPS included, in float32).
    """
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    return devices


class _ReferenceMode(TorchFunctionMode):
    """Intercepts torch functions while a student's function runs (see
    references_out_of_reach)."""

    def __init__(self, blocked: Mapping[object, str], strict_devices: bool):
        super().__init__()
        self.blocked = blocked
        self.strict_devices = strict_devices

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = self.blocked.get(func)
        if name is not None:
            raise ReferenceUsedError(_reference_message(name))
        if self.strict_devices:
            _require_one_device(func, args, kwargs)
        return func(*args, **kwargs)


def _require_one_device(func, args, kwargs) -> None:
    leaves, _ = tree_flatten((args, kwargs))
    devices = set()
    for leaf in leaves:
        if _type(leaf) in (torch.Tensor, torch.nn.Parameter) and not (
            leaf.dim() == 0 and leaf.device.type == "cpu"
        ):
            devices.add(str(leaf.device))
    if _len(devices) > 1:
        name = getattr(func, "__name__", repr(func))
        stand_in = (
            " (the test runs your function on PyTorch's 'meta' device,"
            " a stand-in for a GPU)"
            if "meta" in devices
            else ""
        )
        raise RuntimeError(
            f"{name} mixes tensors on {' and '.join(sorted(devices))}{stand_in}: "
            "on a GPU this fails with "
            "'Expected all tensors to be on the same device'. "
            "Create new tensors on the inputs' device, "
            "e.g. torch.zeros(..., device=x.device, dtype=x.dtype) or x.new_zeros(...)"
        )


_BEHIND = {
    "torch.nn.functional.linear": (
        "torch.nn.functional.linear (also what nn.Linear calls)"
    ),
    "torch.rnn_tanh_cell": "torch.rnn_tanh_cell (what nn.RNNCell calls)",
    "torch.rnn_relu_cell": "torch.rnn_relu_cell (what nn.RNNCell calls)",
    "torch.rnn_tanh": "torch.rnn_tanh (what nn.RNN calls)",
    "torch.rnn_relu": "torch.rnn_relu (what nn.RNN calls)",
}


def _reference_message(name: str) -> str:
    return (
        f"your function calls {_BEHIND.get(name, name)},\n"
        "  which already does this exercise: write the computation yourself with tensor"
        " operations\n  (@, +, torch.tanh, indexing, ...)"
    )


# Torch functions that already compute an exercise's answer. nn.Linear / nn.RNNCell /
# nn.RNN end in these, so blocking them blocks the modules too, however the student
# reached them.
_TORCH_REFERENCES = {
    "torch.nn.functional.linear": lambda: F.linear,
    "torch.nn.functional.bilinear": lambda: F.bilinear,
    "torch.rnn_tanh_cell": lambda: torch.rnn_tanh_cell,
    "torch.rnn_relu_cell": lambda: torch.rnn_relu_cell,
    "torch.rnn_tanh": lambda: torch.rnn_tanh,
    "torch.rnn_relu": lambda: torch.rnn_relu,
    "torch.lstm_cell": lambda: torch.lstm_cell,
    "torch.gru_cell": lambda: torch.gru_cell,
    "torch.lstm": lambda: torch.lstm,
    "torch.gru": lambda: torch.gru,
}
# The package's chapters: every public function, and every method of its classes, is a
# reference.
_COURSE_MODULES = (
    "data",
    "neuron",
    "cell",
    "rnn",
    "bptt",
    "torch_bridge",
    "train",
    "text",
    "gated",
)


def default_references() -> list[str]:
    """Dotted names of everything :func:`references_out_of_reach` blocks unless told
    otherwise."""
    names = list(_TORCH_REFERENCES)
    for module_name in _COURSE_MODULES:
        full_name = f"rnn_course.{module_name}"
        try:
            module = importlib.import_module(full_name)
        except ImportError:
            continue
        for attribute, value in vars(module).items():
            if (
                attribute.startswith("_")
                or getattr(value, "__module__", None) != full_name
            ):
                continue
            if inspect.isfunction(value):
                names.append(f"{full_name}.{attribute}")
            elif inspect.isclass(value) and not dataclasses.is_dataclass(value):
                names.append(f"{full_name}.{attribute}")
    return names


def _resolve(name: str):
    parts = name.split(".")
    for cut in range(_len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            obj = getattr(obj, part)
        return obj
    raise ValueError(f"cannot find {name!r}")


def _blocked_template(*args, **kwargs):
    raise __import__(
        "rnn_course.checks", fromlist=["ReferenceUsedError"]
    ).ReferenceUsedError("@MESSAGE@")


def _swap_code(function: types.FunctionType, message: str) -> Callable[[], None]:
    """Make every reference to ``function`` raise; returns the undo. Falls back to
    nothing (None)."""
    template = _blocked_template.__code__
    if function.__code__.co_freevars:
        return None
    consts = tuple(
        message if const == "@MESSAGE@" else const for const in template.co_consts
    )
    blocked = template.replace(
        co_consts=consts,
        co_name=function.__code__.co_name,
        co_qualname=function.__code__.co_qualname,
    )
    original = function.__code__
    function.__code__ = blocked

    def undo():
        function.__code__ = original

    return undo


def _setattr_block(owner, attribute: str, message: str) -> Callable[[], None]:
    original = owner.__dict__[attribute]

    def blocked(*args, **kwargs):
        raise ReferenceUsedError(message)

    setattr(owner, attribute, blocked)
    return lambda: setattr(owner, attribute, original)


def _block_python_object(name: str, obj, undo: list) -> None:
    message = _reference_message(name)
    if inspect.isfunction(obj):
        # A decorated function (functools.wraps, e.g. torch's clip_grad_norm_) calls the
        # one it wraps: swapping the innermost blocks the wrapper and every alias of
        # either.
        step = _swap_code(inspect.unwrap(obj), message)
        if step is None:
            module_name, _, attribute = name.rpartition(".")
            step = _setattr_block(_resolve(module_name), attribute, message)
        undo.append(step)
    elif inspect.isclass(obj):
        for attribute, value in list(vars(obj).items()):
            if not inspect.isfunction(value) or (
                attribute.startswith("__") and attribute != "__init__"
            ):
                continue
            step = _swap_code(value, message)
            if step is None:
                step = _setattr_block(obj, attribute, message)
            undo.append(step)
    else:
        raise ValueError(
            f"cannot put {name!r} out of reach: it is a {type(obj).__name__}"
        )


@contextlib.contextmanager
def references_out_of_reach(
    *extra: str,
    only: Sequence[str] | None = None,
    allow: Sequence[str] = (),
    strict_device: bool = False,
):
    """While inside, the course's answers and torch's ready-made layers raise
    :class:`ReferenceUsedError`.

    Blocked: :func:`default_references` (every function of the package's chapter
    modules, the methods of their classes, ``torch.nn.functional.linear`` and the fused
    RNN kernels behind ``nn.RNNCell`` and ``nn.RNN``) plus the dotted names in ``extra``
    (e.g. ``"torch.nn.functional.l1_loss"``), minus those in ``allow``; or exactly
    ``only``. Python functions are blocked in place (their code is swapped for one that
    raises), so an alias made earlier
    (``from rnn_course.cell import rnn_cell_step as step``) is blocked too; torch
    functions are intercepted with a ``TorchFunctionMode``, and those of them that are
    Python functions (``torch.nn.utils.clip_grad_norm_``, which the mode never sees) are
    also blocked in place. Everything is restored on the way out, after an error too.

    With ``strict_device``, an operation that mixes tensors of two devices raises, as on
    a GPU: run the student's function on inputs on the ``meta`` device to catch tensors
    created on the CPU on a machine without a GPU.
    """
    names = list(only) if only is not None else default_references() + list(extra)
    names = [name for name in dict.fromkeys(names) if name not in set(allow)]
    torch_blocked = {}
    undo: list[Callable[[], None]] = []
    try:
        for name in names:
            if name in _TORCH_REFERENCES:
                torch_blocked[_TORCH_REFERENCES[name]()] = name
                continue
            obj = _resolve(name)
            if name.startswith("torch."):
                if inspect.isclass(obj) and issubclass(obj, torch.nn.Module):
                    _block_python_object(name, obj, undo)
                else:
                    torch_blocked[obj] = name
                    if inspect.isfunction(obj):
                        # Not every Python function reaches the mode (clip_grad_norm_
                        # and the other torch.nn.utils helpers never do): block it in
                        # place as well.
                        _block_python_object(name, obj, undo)
            else:
                _block_python_object(name, obj, undo)
        with _ReferenceMode(torch_blocked, strict_device):
            yield
    finally:
        for step in reversed(undo):
            step()


IN_PLACE_RULE = "Do not modify any argument in place"


def in_place_failure(function_name: str, argument: str) -> CheckFailed:
    """The failure for a student's function that changed one of its arguments in place.

    The message starts with the rule the notebooks state, so an in-place write is named
    as such wherever it is found: by :func:`call_without_references` here, or by the
    grader when its sandbox reports a changed argument.
    """
    return CheckFailed(
        f"{IN_PLACE_RULE}: {function_name} changed {argument}.\n"
        "  Likely mistake: an in-place operation on an argument (+=, x[i] = ..., "
        "clamp_, add_, b = state[...] then b += ...) writes into the caller's tensor.\n"
        "  Hint: compute into a new tensor instead (b = a + c, x.clamp(...), "
        "torch.stack), or clone() the argument first."
    )


@dataclasses.dataclass
class _Snapshot:
    path: str  # how the test called it, e.g. "state['bias_ih_l0']"
    tensor: torch.Tensor  # the argument itself
    shape: tuple[int, ...]
    copy: torch.Tensor | None  # its values before the call (None on the meta device)


def _argument_paths(function: Callable, args: tuple, kwargs: dict):
    """(name, value) for every argument, named as in the function's signature."""
    named: list[tuple[str, object]] = []
    try:
        bound = inspect.signature(function).bind_partial(*args, **kwargs)
    except (TypeError, ValueError):  # no signature, or arguments that do not fit it
        bound = None
    if bound is None:
        named = [(f"argument {i + 1}", value) for i, value in enumerate(args)]
        named += list(kwargs.items())
    else:
        parameters = inspect.signature(function).parameters
        position = 0
        for name, value in bound.arguments.items():
            kind = parameters[name].kind
            if kind is inspect.Parameter.VAR_POSITIONAL:
                for item in value:
                    position += 1
                    named.append((f"argument {position}", item))
            elif kind is inspect.Parameter.VAR_KEYWORD:
                named.extend(value.items())
            else:
                position += 1
                named.append((name, value))
    return named


def _snapshot_tensors(value, path: str, into: list, seen: set, depth: int = 0) -> None:
    if _isinstance(value, torch.Tensor):
        if id(value) in seen:
            return
        seen.add(id(value))
        copy = None if value.is_meta else _clone(_detach(value))
        into.append(_Snapshot(path, value, _shape(value), copy))
    elif depth < 8 and (
        _type(value) in (list, tuple, dict) or _isinstance(value, Mapping)
    ):
        if id(value) in seen:
            return
        seen.add(id(value))
        items = value.items() if _isinstance(value, Mapping) else enumerate(value)
        for key, item in items:
            _snapshot_tensors(item, f"{path}[{key!r}]", into, seen, depth + 1)


def _unchanged(snapshot: _Snapshot) -> bool:
    """Bit-exact comparison with the copy taken before the call; NaN equals NaN."""
    tensor = snapshot.tensor
    if _shape(tensor) != snapshot.shape:
        return False
    if snapshot.copy is None or tensor.is_meta:
        return True
    after = _detach(tensor)
    if after.dtype != snapshot.copy.dtype or after.device != snapshot.copy.device:
        return False
    if after.is_floating_point() or after.is_complex():
        same = (after == snapshot.copy) | (
            torch.isnan(after) & torch.isnan(snapshot.copy)
        )
        same = (
            same & (torch.signbit(after) == torch.signbit(snapshot.copy))
            if not after.is_complex()
            else same
        )
    else:
        same = after == snapshot.copy
    return bool(same.all())


def _describe_argument(value) -> str:
    if _isinstance(value, torch.Tensor):
        dtype = str(value.dtype).replace("torch.", "")
        return f"{_shape(value)} {dtype} on {value.device}"
    if _type(value) in (list, tuple) and _len(value) <= 4:
        inner = ", ".join(_describe_argument(item) for item in value)
        return f"[{inner}]" if _type(value) is list else f"({inner},)"
    if _isinstance(value, Mapping):
        return f"a dict of {_len(value)} entries"
    if _type(value) in (int, float, bool, str) or value is None:
        text = repr(value)
        return text if _len(text) <= 30 else text[:27] + "..."
    return _describe(value)


def _test_case(function_name: str, named: list[tuple[str, object]]) -> str:
    arguments = ", ".join(
        f"{name}={_describe_argument(value)}" for name, value in named
    )
    return f"{function_name}({arguments})"


DTYPE_HINT = (
    "tensors of two dtypes met (e.g. float32 and float64): create new tensors with "
    "the inputs' dtype, torch.zeros(..., dtype=x.dtype) or x.new_zeros(...)"
)
DEVICE_HINT = (
    "a tensor made on the CPU met the inputs on another device: create new tensors "
    "on the inputs' device, torch.zeros(..., device=x.device) or x.new_zeros(...)"
)
ERROR_HINTS: dict[str, str] = {
    "Expected all tensors to be on the same device": DEVICE_HINT,
    "mixes tensors on": DEVICE_HINT,
    "expected scalar type": DTYPE_HINT,
    "to have the same dtype": DTYPE_HINT,
    "must have the same dtype": DTYPE_HINT,
    "Found dtype": DTYPE_HINT,
    "Boolean value of Tensor with more than one value is ambiguous": (
        "a tensor stood where Python needs one True or False (if, and, or, while): "
        "compare shapes with a.shape != b.shape, or reduce with torch.all(...) / "
        "torch.any(...)"
    ),
    "cannot be called on meta tensors": (
        "the hidden tests run your function on PyTorch's meta device, where tensors "
        "have shapes but no values: keep results as tensors (no .item(), float() or if "
        "on values)"
    ),
    "cannot be multiplied": (
        "the inner sizes of a matrix product must match: is a weight transposed? "
        "(nn.RNN's weights are (hidden_size, input size), so x @ W.T)"
    ),
    "must match the size of tensor": (
        "two tensors' shapes do not fit together: print the shapes of the tensors on "
        "that line and compare them with the ones the instructions give"
    ),
    "modified by an inplace operation": (
        "an in-place operation (+=, x[i] = ...) changed a tensor that autograd still "
        "needs: compute into a new tensor instead"
    ),
    "backward through the graph a second time": (
        "each loss.backward() needs its own forward pass: compute the loss anew for "
        "every batch, and detach() any state carried from one batch to the next"
    ),
    "does not require grad and does not have a grad_fn": (
        "the loss has no gradient: was it computed under torch.no_grad() or from "
        "detached tensors?"
    ),
}
"""Errors that students' code raises often, and their likely cause
(:func:`call_without_references`)."""


def call_without_references(
    function: Callable,
    *args,
    extra: Sequence[str] = (),
    allow: Sequence[str] = (),
    strict_device: bool = False,
    what: str | None = None,
    error_hints: Mapping[str, str] | None = None,
    modifies: Sequence[str] = (),
    **kwargs,
):
    """Return ``function(*args, **kwargs)``, called with the references out of reach.

    Before the call every tensor argument is copied (also those inside lists, tuples and
    dicts); after it, an argument whose values or shape changed fails the test with
    :func:`in_place_failure`, before any value is checked: "Do not modify any argument
    in place". ``modifies`` names the arguments the exercise allows to change.

    ``error_hints`` maps a piece of an error message to a hint: when the student's
    function raises an error whose message contains it (e.g. "cannot be multiplied"),
    the test fails with that hint (e.g. "is W_x transposed?"), the error and the test
    case (the arguments' shapes, dtypes and devices) instead of a bare traceback.
    :data:`ERROR_HINTS` (dtype and device mismatches, a tensor in an ``if``, ...) apply
    after them. ``NotImplementedError`` (an unanswered exercise),
    :class:`ReferenceUsedError` and :class:`CheckFailed` pass through unchanged; other
    errors too, with the test case added as a note.
    """
    function_name = getattr(function, "__name__", "the function")
    name = what or f"{function_name}(...)"
    if not callable(function):
        raise CheckFailed(f"{name}: expected a function, got {_describe(function)}")
    named = _argument_paths(function, args, kwargs)
    snapshots: list[_Snapshot] = []
    seen: set[int] = set()
    allowed = set(modifies)
    for argument, value in named:
        if argument not in allowed:
            _snapshot_tensors(value, argument, snapshots, seen)
    try:
        with references_out_of_reach(*extra, allow=allow, strict_device=strict_device):
            result = function(*args, **kwargs)
    except (NotImplementedError, ReferenceUsedError, CheckFailed):
        raise
    except Exception as error:  # noqa: BLE001 (add the hint, keep the original as the cause)
        text = str(error).strip()
        text = text if _len(text) <= 400 else text[:397] + "..."
        test_case = _test_case(function_name, named)
        for fragment, hint in (*(error_hints or {}).items(), *ERROR_HINTS.items()):
            if fragment in text:
                raise CheckFailed(
                    f"{name} raised {type(error).__name__}.\n  Hint: {hint}\n"
                    f"  The error: {text}\n  Test case: {test_case}"
                ) from error
        if hasattr(error, "add_note"):
            error.add_note(f"Test case: {test_case}")
        raise
    for snapshot in snapshots:
        if not _unchanged(snapshot):
            raise in_place_failure(function_name, snapshot.path)
    return result


def check_tuple(
    value, length: int, what: str, names: Sequence[str] | None = None
) -> tuple:
    """Check that a function returned a tuple (or list) of ``length`` items, e.g.
    ``(inputs, targets)``."""
    spelled = f"({', '.join(names)})" if names else f"{length} values"
    if _type(value) not in (tuple, list):
        raise CheckFailed(
            f"{what} must return {spelled} as a tuple, got a {_describe(value)}"
        )
    if _len(value) != length:
        raise CheckFailed(f"{what} must return {spelled}, got {_len(value)} value(s)")
    return tuple(value)


@contextlib.contextmanager
def replaced_names(namespace: dict, **replacements):
    """Temporarily bind names in ``namespace`` (a notebook's ``globals()``) to other
    objects.

    Grading one part at a time: while part 2 is tested, the student's part-1 function is
    replaced by a correct one, so a mistake in part 1 costs only part 1's points.
    """
    missing = object()
    saved = {name: namespace.get(name, missing) for name in replacements}
    namespace.update(replacements)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is missing:
                namespace.pop(name, None)
            else:
                namespace[name] = value


def seeded_randn(
    *shape: int,
    seed: int,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    scale: float = 1.0,
) -> torch.Tensor:
    """Normal random numbers that are the same on every machine: drawn on the CPU, then
    moved to ``device``."""
    generator = torch.Generator().manual_seed(seed)
    values = torch.randn(*shape, generator=generator, dtype=torch.float64) * scale
    return values.to(dtype=dtype).to(device)


__all__ = [
    "FLOAT32_ATOL",
    "FLOAT32_RTOL",
    "CheckFailed",
    "ReferenceUsedError",
    "Term",
    "as_plain_tensor",
    "call_without_references",
    "check_accumulated",
    "check_close",
    "check_device",
    "check_dtype",
    "check_float",
    "ERROR_HINTS",
    "IN_PLACE_RULE",
    "MESSAGE_WIDTH",
    "fit_lines",
    "in_place_failure",
    "check_raises",
    "check_scalar",
    "check_shape",
    "check_terms",
    "check_tuple",
    "check_type",
    "check_unchanged",
    "default_references",
    "devices_to_test",
    "exercise_setup",
    "references_out_of_reach",
    "relative_error",
    "replaced_names",
    "seeded_randn",
]
