"""The grader's side of the tests: the source notebook's test cells, run in the grading process.

For one submission, :func:`run_tests` executes, in a fresh namespace and in notebook order,

* the source notebook's locked setup cells (e.g. ``DEVICE = exercise_setup(seed=0)``);
* for each answer cell: a **proxy** for every function it defines (:class:`StudentFunction`); calling
  it calls the student's function inside the sandbox (:meth:`Sandbox.call`);
* each test cell, *hidden tests included*: the part's points count iff the cell runs to its end here.

``call_without_references(proxy, ..., extra=..., allow=..., strict_device=...)`` works unchanged: the
grader wraps ``rnn_course.checks.references_out_of_reach`` (which that helper uses) to remember the
active options, and a proxy forwards them, so the sandbox blocks the same references around the
student's function. While a test has replaced another student function
(``replaced_names(globals(), memory_cell_step=reference)``), the proxy sends that name as "replaced":
inside the sandbox the student's code then calls a stand-in that asks the grader to run ``reference``.
Arguments are the grader's: the student's function gets copies, and a call that changes any of
them in place (nested ones and ``.grad`` too) fails its part with the course's rule, "do not modify
any argument in place"; the grader's tensors are never written, so its references are computed from
untouched values. (A test that asks for in-place work says so with
``call_without_references(..., modifies=("name",))``; then that argument's new value is copied back.)
Deadlines are the grader's alone: a call that returns after its test cell's time has run out has
timed out, whatever the sandbox reports. The grader's own work for a student's request (a callback
into a reference while a part is graded on its own) is bounded in CPU time, memory and result size
(:class:`WorkLimits`); past a limit the part fails, and the worker lives on.

Failures are reported by message only: a :class:`~rnn_course.checks.CheckFailed` text, or an
exception's type and message; never a traceback, never the source of a hidden test.
"""

from __future__ import annotations

import builtins
import contextlib
import inspect
import io
import resource
import signal
import threading
import time
import warnings
from dataclasses import dataclass

import torch

from rnn_course import checks

from . import protocol
from .plan import Cell, Part, TestPlan, _is_test  # noqa: F401 (the runner's plan)
from .sandbox import Sandbox, SandboxEnded, SandboxTimeout

MAX_MESSAGE = 2000
"""Longest failure message kept per part."""


# ---------------------------------------------------------------------------------------------
# references_out_of_reach, remembered
# ---------------------------------------------------------------------------------------------

_ACTIVE_REFERENCES: list[dict] = []
_original_references_out_of_reach = checks.references_out_of_reach


def _plain(value):
    """An option of references_out_of_reach as JSON (names, flags, None)."""
    if isinstance(value, (list, tuple, set, frozenset)):
        return [str(item) for item in value]
    return (
        value
        if value is None or isinstance(value, (bool, int, float, str))
        else str(value)
    )


@contextlib.contextmanager
def _remembering_references_out_of_reach(*extra, **options):
    """``checks.references_out_of_reach`` that also tells the proxies which options are active
    (``extra`` names, and ``only`` / ``allow`` / ``strict_device`` or whatever else it accepts)."""
    _ACTIVE_REFERENCES.append(
        {
            "extra": [str(name) for name in extra],
            "options": {name: _plain(value) for name, value in options.items()},
        }
    )
    try:
        with _original_references_out_of_reach(*extra, **options):
            yield
    finally:
        _ACTIVE_REFERENCES.pop()


_ALLOWED_CHANGES: list[tuple[str, ...]] = []
_original_call_without_references = checks.call_without_references


def _remembering_call_without_references(function, *args, modifies=(), **options):
    """``checks.call_without_references`` that also tells the proxies which arguments the test allows
    to change in place (``modifies``; none unless the test says so)."""
    _ALLOWED_CHANGES.append(tuple(str(name) for name in modifies))
    try:
        if modifies:
            options["modifies"] = modifies
        return _original_call_without_references(function, *args, **options)
    finally:
        _ALLOWED_CHANGES.pop()


def install_reference_recorder() -> None:
    """Route ``rnn_course.checks.references_out_of_reach`` and ``call_without_references`` through the
    recorders, in this grading process only."""
    checks.references_out_of_reach = _remembering_references_out_of_reach
    checks.call_without_references = _remembering_call_without_references


# ---------------------------------------------------------------------------------------------
# Proxies and the session of one submission
# ---------------------------------------------------------------------------------------------


class CallTimedOut(TimeoutError):
    """The student's function ran past the time its test cell had left."""


class SandboxGone(RuntimeError):
    """The sandbox had stopped (kernel died, killed at a limit) before or during this call."""


class StudentFunction:
    """Stands for the student's function ``name``: calling it calls the real one inside the sandbox."""

    def __init__(self, session: Session, name: str, parameters: list[str] = ()):
        self._session = session
        self.__name__ = self.__qualname__ = name
        # the source notebook's signature, so that the checks name arguments as they do in the notebook
        self.__signature__ = inspect.Signature(
            [
                inspect.Parameter(parameter, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                for parameter in parameters
            ]
        )

    def __call__(self, *args, **kwargs):
        return self._session.call(self.__name__, args, kwargs)

    def __repr__(self) -> str:
        return f"<the student's function {self.__name__}>"


_KNOWN_EXCEPTIONS = {
    "rnn_course.checks.CheckFailed": checks.CheckFailed,
    "rnn_course.checks.ReferenceUsedError": checks.ReferenceUsedError,
}
_MEMORY_WORDS = ("out of memory", "can't allocate memory", "cannot allocate memory")


@dataclass(frozen=True)
class WorkLimits:
    """What the grader spends on a student's requests (callbacks) within one test cell."""

    cpu_seconds: float = 10.0  # CPU time of all callbacks of one test cell together
    memory_bytes: int = (
        512 << 20
    )  # address space one callback may add to the grading process
    result_bytes: int = 64 << 20  # tensor (and other) bytes one callback may send back


class GraderWorkRefused(RuntimeError):
    """A student's request would make the grader pass one of its limits (raised into the student's code)."""


class _GraderWorkTimeout(BaseException):
    """A callback ran past its CPU time or past the test cell's deadline (not an Exception: the
    grader's reference code cannot swallow it)."""


def _size(count: int) -> str:
    return f"{count >> 20} MiB" if count >= 1 << 20 else f"{count >> 10} KiB"


def _address_space() -> int:
    """This process's address space now, in bytes (from /proc; 0 where there is none)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return 0


@contextlib.contextmanager
def _bounded(cpu_seconds: float, wall_seconds: float, memory_bytes: int):
    """Run a block of the grader's own work under CPU-time and wall-clock alarms (main thread only)
    and a temporary address-space limit of ``memory_bytes`` above what the process uses now."""
    timers = threading.current_thread() is threading.main_thread()
    handlers = {}
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    used = _address_space()
    if timers:

        def expired(signum, frame):
            raise _GraderWorkTimeout("CPU time" if signum == signal.SIGPROF else "time")

        for signum in (signal.SIGPROF, signal.SIGALRM):
            handlers[signum] = signal.signal(signum, expired)
        signal.setitimer(signal.ITIMER_PROF, max(0.01, cpu_seconds))
        signal.setitimer(signal.ITIMER_REAL, max(0.01, wall_seconds))
    limited = used > 0 and (
        hard == resource.RLIM_INFINITY or used + memory_bytes < hard
    )
    try:
        if limited:
            resource.setrlimit(resource.RLIMIT_AS, (used + memory_bytes, hard))
        yield
    finally:
        if limited:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        if timers:
            signal.setitimer(signal.ITIMER_PROF, 0)
            signal.setitimer(signal.ITIMER_REAL, 0)
            for signum, handler in handlers.items():
                signal.signal(
                    signum, handler if handler is not None else signal.SIG_DFL
                )


def _argument_labels(
    args: tuple, kwargs: dict, parameters: list[str]
) -> dict[int, tuple[str, str]]:
    """id(tensor) -> (parameter name, how to name it in a message), for every tensor nested in the
    arguments (without recursion; the first place a tensor appears names it)."""
    labels: dict[int, tuple[str, str]] = {}
    tops = [
        (
            parameters[index] if index < len(parameters) else f"argument {index + 1}",
            value,
        )
        for index, value in enumerate(args)
    ] + list(kwargs.items())
    for name, value in tops:
        stack, seen = [(value, name)], 0
        while stack and seen < protocol.MAX_ITEMS:
            item, path = stack.pop()
            seen += 1
            if isinstance(item, torch.Tensor):
                labels.setdefault(
                    id(item), (name, path)
                )  # named as checks.call_without_references names it
            elif type(item) in (list, tuple):
                stack += [
                    (child, f"{path}[{index}]") for index, child in enumerate(item)
                ]
            elif type(item) is dict:
                stack += [(child, f"{path}[{key!r}]") for key, child in item.items()]
    return labels


class Session:
    """The grader's side of one submission: its proxies, the time left in the current test cell, and
    what happened (timeouts, memory errors, the sandbox ending, a limit of the grader's own work)."""

    def __init__(
        self,
        sandbox: Sandbox,
        namespace: dict,
        functions: list[str],
        cell_timeout: float,
        parameters: dict[str, list[str]] | None = None,
        limits: WorkLimits | None = None,
    ):
        self.sandbox = sandbox
        self.namespace = namespace
        self.cell_timeout = cell_timeout
        self.parameters = parameters or {}
        self.limits = limits or WorkLimits(cpu_seconds=cell_timeout)
        self.proxies = {
            name: StudentFunction(self, name, self.parameters.get(name, []))
            for name in functions
        }
        self.cell_deadline = float("inf")
        self.stopped: str | None = None  # why the sandbox is no longer usable
        self.call_timed_out = False
        self.submission_timed_out = False
        self.memory_error = False
        self.depth = 0
        self.calls = 0  # calls into the sandbox so far
        self.work_cpu = 0.0  # CPU seconds spent on callbacks in this test cell
        self.work_failure: str | None = (
            None  # a limit of the grader's work was reached in this test cell
        )

    def start_cell(self) -> None:
        self.cell_deadline = time.monotonic() + self.cell_timeout
        self.work_cpu = 0.0
        self.work_failure = None

    def _student_name(self, value) -> str | None:
        return (
            value.__name__
            if isinstance(value, StudentFunction) and value._session is self
            else None
        )

    def call(self, name: str, args: tuple, kwargs: dict):
        if self.stopped:
            raise SandboxGone(self.stopped)
        if self.depth > 20:
            raise RecursionError(
                "calls between the grader and the student's code nested too deeply"
            )
        references = dict(_ACTIVE_REFERENCES[-1]) if _ACTIVE_REFERENCES else None
        allowed = set(_ALLOWED_CHANGES[-1]) if _ALLOWED_CHANGES else set()
        replaced = {
            other: self.namespace[other]
            for other in self.proxies
            if other != name
            and other in self.namespace
            and self.namespace[other] is not self.proxies[other]
        }
        timeout = self.cell_deadline - time.monotonic()
        if timeout <= 0:
            self.call_timed_out = True
            raise CallTimedOut(f"{name}: the test cell had no time left")
        self.depth += 1
        self.calls += 1
        try:
            reply, decoder, encoder = self.sandbox.call(
                name,
                args,
                kwargs,
                references=references,
                replaced=replaced,
                timeout=min(timeout, 1e6),
                student_name=self._student_name,
                run_callback=self._run_callback,
            )
        except SandboxTimeout as error:
            self.stopped = str(error)
            if self.sandbox.killed_at_deadline:
                self.submission_timed_out = True
            else:
                self.call_timed_out = True
            raise CallTimedOut(f"{name}: {error}") from None
        except SandboxEnded as error:
            self.stopped = f"the notebook's kernel stopped ({error})"
            raise SandboxGone(self.stopped) from None
        finally:
            self.depth -= 1
        if (
            time.monotonic() > self.cell_deadline
        ):  # the grader's clock, whatever the sandbox says
            self.call_timed_out = True
            raise CallTimedOut(
                f"{name} returned after the {self.cell_timeout:g} s its test cell may take"
            )
        if self.work_failure:  # even if the student's code caught the refusal
            raise checks.CheckFailed(self.work_failure)
        try:
            value = decoder.decode(reply.get("value")) if reply.get("ok") else None
            changes = (
                [self._changed(change, encoder) for change in reply.get("after", [])]
                if reply.get("ok")
                else []
            )
        except protocol.ProtocolError as error:
            raise checks.CheckFailed(
                f"the result of {name} could not be read: {error}"
            ) from None
        labels = _argument_labels(args, kwargs, self.parameters.get(name, []))
        for original, _change in changes:
            parameter, label = labels.get(id(original), ("", "an argument"))
            if parameter not in allowed:
                raise checks.in_place_failure(name, label)
        for original, change in changes:
            self._write_back(
                original, change, decoder
            )  # only what the test allowed to change
        if reply.get("ok"):
            return value
        if reply.get("timeout"):
            self.call_timed_out = True
            raise CallTimedOut(
                f"{name} ran longer than the {self.cell_timeout:g} s a test cell may take"
            )
        error = protocol.exception_from_data(reply.get("error"), _KNOWN_EXCEPTIONS)
        if isinstance(error, MemoryError) or any(
            word in str(error).lower() for word in _MEMORY_WORDS
        ):
            self.memory_error = True
        raise error

    def _refuse(self, message: str):
        self.work_failure = self.work_failure or message
        raise GraderWorkRefused(message)

    def _run_callback(self, function, args: list, kwargs: dict):
        """Run one of the grader's functions for the student's code, within :class:`WorkLimits`."""
        limits = self.limits
        if self.work_failure:
            raise GraderWorkRefused(self.work_failure)
        cpu_left = limits.cpu_seconds - self.work_cpu
        wall_left = self.cell_deadline - time.monotonic()
        if cpu_left <= 0 or wall_left <= 0:
            self._refuse(
                f"the grader's own work for this test passed its limit of {limits.cpu_seconds:g} s "
                "of CPU time (requests from the notebook's code)"
            )
        start = time.process_time()
        try:
            with _bounded(cpu_left, wall_left, limits.memory_bytes):
                result = function(*args, **kwargs)
                size = protocol.payload_bytes(result, limits.result_bytes)
        except _GraderWorkTimeout:
            self._refuse(
                f"a request from the notebook's code made the grader work past its limit of "
                f"{limits.cpu_seconds:g} s of CPU time for this test"
            )
        except (MemoryError, RuntimeError) as error:
            if not isinstance(error, MemoryError) and not any(
                word in str(error).lower() for word in _MEMORY_WORDS
            ):
                raise
            self._refuse(
                f"a request from the notebook's code would make the grader pass its memory limit of "
                f"{_size(limits.memory_bytes)} (are the arguments' shapes right?)"
            )
        finally:
            self.work_cpu += time.process_time() - start
        if size > limits.result_bytes:
            self._refuse(
                f"a request from the notebook's code would make the grader send back more than its "
                f"limit of {_size(limits.result_bytes)} (are the arguments' shapes right?)"
            )
        return result

    @staticmethod
    def _changed(change: dict, encoder: protocol.Encoder) -> tuple[torch.Tensor, dict]:
        ref = change.get("ref") if isinstance(change, dict) else None
        if type(ref) is not int or not 0 <= ref < len(encoder.tensors):
            raise protocol.ProtocolError("bad tensor reference")
        return encoder.tensors[ref], change

    @staticmethod
    def _write_back(
        original: torch.Tensor, change: dict, decoder: protocol.Decoder
    ) -> None:
        """Apply an in-place change the test allowed (``modifies``) to the grader's tensor."""
        new = decoder.tensor(change.get("tensor"))
        grad = (
            decoder.tensor(change["grad"]) if change.get("grad") is not None else None
        )
        if original.device.type == "meta":
            return
        with torch.no_grad():
            new = new.detach().to(original.device)
            if new.shape == original.shape and new.dtype == original.dtype:
                original.copy_(new)
            else:
                original.data = new
            if (
                grad is not None
                and original.is_leaf
                and original.requires_grad
                and grad.shape == original.shape
            ):
                original.grad = grad.detach().to(original.device, original.dtype)


# ---------------------------------------------------------------------------------------------
# Running the tests
# ---------------------------------------------------------------------------------------------


@dataclass
class PartResult:
    grade_id: str
    points: float  # scored
    max_points: float
    passed: bool
    message: str = ""


@dataclass
class TestOutcome:
    parts: list[PartResult]
    call_timed_out: bool = False
    submission_timed_out: bool = False
    memory_error: bool = False
    stopped: str | None = None


class GraderError(RuntimeError):
    """The grader's own code failed (e.g. a setup cell of the source notebook): fix the assignment."""


def run_tests(plan: TestPlan, sandbox: Sandbox, cell_timeout: float) -> TestOutcome:
    """Run the plan's cells against the submission in ``sandbox`` (whose probe is ready)."""
    namespace: dict = {"__name__": "__main__", "__builtins__": builtins}
    session = Session(sandbox, namespace, plan.functions, cell_timeout, plan.parameters)
    results = []
    for cell in plan.cells:
        if cell.kind == "answer":
            namespace.update({name: session.proxies[name] for name in cell.functions})
            continue
        session.start_cell()
        calls_before = session.calls
        error = _execute(cell, namespace)
        if cell.kind == "setup":
            if error is not None and session.calls == calls_before:
                raise GraderError(
                    f"setup cell {cell.grade_id} of the source notebook failed: "
                    f"{type(error).__name__}: {error}"
                )
            continue
        if error is None:
            results.append(PartResult(cell.grade_id, cell.points, cell.points, True))
        else:
            results.append(
                PartResult(
                    cell.grade_id,
                    0.0,
                    cell.points,
                    False,
                    describe_failure(error, cell_timeout),
                )
            )
    return TestOutcome(
        results,
        session.call_timed_out,
        session.submission_timed_out,
        session.memory_error,
        session.stopped,
    )


def _execute(cell: Cell, namespace: dict) -> BaseException | None:
    """Run one cell of the source notebook; returns the exception it ended with, if any."""
    sink = _Sink()
    try:
        code = compile(cell.source, f"<{cell.kind} cell {cell.grade_id}>", "exec")
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(sink),
            contextlib.redirect_stderr(sink),
        ):
            warnings.simplefilter("ignore")
            exec(code, namespace)  # noqa: S102 (the instructor's own test code)
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # noqa: BLE001 (SystemExit included: a test cell must not end the grader)
        return error
    return None


class _Sink(io.TextIOBase):
    """Discards what the test cells print (the hidden tests' prints are not feedback)."""

    def write(self, text: str) -> int:
        return len(text)


def describe_failure(error: BaseException, cell_timeout: float) -> str:
    """The feedback for a failed part: a message, never a traceback or a hidden test's source."""
    if isinstance(error, CallTimedOut):
        text = f"timed out: {error}"
    elif isinstance(error, SandboxGone):
        text = f"not graded: {error}"
    elif isinstance(error, NotImplementedError):
        text = "not answered: the function still raises NotImplementedError"
    elif isinstance(error, checks.CheckFailed):
        text = str(error)
    else:
        text = f"{type(error).__name__}: {error}"
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + " [...]"
