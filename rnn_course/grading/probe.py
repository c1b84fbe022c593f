"""The probe: the grader's last cell in every graded notebook, serving requests from inside the student's kernel.

After nbgrader has run the student's notebook (inside the sandbox), the probe cell calls :func:`serve`,
which answers the grader's messages until it says "bye":

``call``
    Call the student's function NAME with these arguments (plain data, see :mod:`.protocol`) and send
    back the result, or the exception's type and message, plus the state of every tensor argument the
    call changed in place (values and ``.grad``). When the grader's test ran the call inside
    ``references_out_of_reach`` (directly or through ``call_without_references``), the same references
    are put out of reach here, with the same options (``extra``, ``only``, ``allow``, ``strict_device``).
    ``replaced`` names student functions that the grader's test had bound to something else
    (``replaced_names(globals(), memory_cell_step=reference)``): for the call, they are stand-ins that
    ask the grader to run its own object, so one part is graded on its own.
``bye``
    Return; nbgrader then finishes as usual.

Nothing here is trusted by the grader: a student can patch this module in their own kernel, but all they
control is what their functions return, and the grader checks that in its own process.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading

from . import protocol


class GradingTimeout(BaseException):
    """The call ran past the time the grader gave it (a BaseException: ``except Exception`` does not stop it)."""


_MISSING = object()


def serve(namespace: dict, channel_dir: str, warm_up: bool = False) -> None:
    """Answer the grader's requests about the functions in ``namespace`` (the notebook's globals).

    ``warm_up`` (the grader's tests use the meta device or strict devices): first import what torch
    imports for those the first time (torch._dynamo, about 2 s of CPU), while the submission's own
    time runs, so that no test's call pays for it; the grader's deadlines do not move for anyone."""
    if warm_up:
        _warm_up()
    read_fd = os.open(os.path.join(channel_dir, "to_probe"), os.O_RDONLY)
    write_fd = os.open(os.path.join(channel_dir, "from_probe"), os.O_WRONLY)
    channel = protocol.Channel(read_fd, write_fd, blocking=True)
    probe = _Probe(namespace, channel)
    channel.send("ready", {"version": protocol.VERSION})
    try:
        probe.serve_until(None)
    finally:
        os.close(read_fd)
        os.close(write_fd)


def _warm_up() -> None:
    """Import torch._dynamo (torch imports it at the first call on the meta device)."""
    try:
        import torch._dynamo  # noqa: F401
    except Exception:  # noqa: BLE001 (only a speed-up)
        pass


class _Probe:
    def __init__(self, namespace: dict, channel: protocol.Channel):
        from rnn_course import (
            checks,
        )  # the kernel imported torch already; this is cheap here

        self.checks = checks
        self.namespace = namespace
        self.channel = channel
        self.callback_ids = itertools.count()
        self.known = {
            "rnn_course.checks.CheckFailed": checks.CheckFailed,
            "rnn_course.checks.ReferenceUsedError": checks.ReferenceUsedError,
        }

    def serve_until(self, callback_id: int | None):
        """Handle calls until "bye" (top level) or until the answer to callback ``callback_id`` arrives."""
        while True:
            kind, body, blobs = self.channel.receive()
            if kind == "call":
                self.handle_call(body, blobs)
            elif (
                kind == "callback_result"
                and callback_id is not None
                and body.get("id") == callback_id
            ):
                return body, blobs
            elif kind == "callback_result":
                continue  # the answer to a callback whose call has already timed out
            elif kind == "bye" and callback_id is None:
                self.channel.send("bye", {"memory_peak_kb": _memory_peak_kb()})
                return None
            else:
                raise protocol.ProtocolError(f"unexpected message {kind!r}")

    # -- the grader's functions, for replaced names and callable arguments ---------------------------
    def stand_in(self, index: int, name: str = "grader_function"):
        def call_grader(*args, **kwargs):
            encoder = protocol.Encoder()
            callback_id = next(self.callback_ids)
            body = {
                "id": callback_id,
                "callback": index,
                "args": encoder.encode(list(args)),
                "kwargs": encoder.encode(kwargs),
            }
            self.channel.send("callback", body, encoder.blobs)
            answer, blobs = self.serve_until(callback_id)
            decoder = protocol.Decoder(
                blobs, callback=self.stand_in, student_function=self.student_function
            )
            if answer.get("ok"):
                return decoder.decode(answer.get("value"))
            raise protocol.exception_from_data(answer.get("error"), self.known)

        call_grader.__name__ = call_grader.__qualname__ = name
        return call_grader

    def student_function(self, name: str):
        function = self.namespace.get(name)
        if function is None:

            def undefined(*args, **kwargs):
                raise NameError(f"name '{name}' is not defined")

            return undefined
        return function

    # -- one call --------------------------------------------------------------------------------
    def handle_call(self, body: dict, blobs: list[bytes]) -> None:
        decoder = protocol.Decoder(
            blobs, callback=self.stand_in, student_function=self.student_function
        )
        args = decoder.decode(body["args"])
        kwargs = decoder.decode(body["kwargs"])
        versions = {ref: tensor._version for ref, tensor in decoder.tensors.items()}
        saved: dict = {}
        encoder = protocol.Encoder()
        try:
            with _time_limit(float(body.get("timeout", 30.0))):
                try:
                    reply = self._call(
                        body, args, kwargs, saved, decoder, versions, encoder
                    )
                finally:
                    self._restore(saved)
        except GradingTimeout:
            self._restore(saved)
            encoder.blobs.clear()
            reply = {
                "id": body["id"],
                "ok": False,
                "timeout": True,
                "error": {
                    "type": "TimeoutError",
                    "message": "the call ran out of time",
                },
            }
        self.channel.send("result", reply, encoder.blobs)

    def _call(self, body, args, kwargs, saved, decoder, versions, encoder) -> dict:
        try:
            for name, index in body.get("replaced", {}).items():
                saved.setdefault(name, self.namespace.get(name, _MISSING))
                self.namespace[name] = self.stand_in(index, name)
            function = self.namespace.get(body["name"])
            if function is None:
                raise NameError(f"name '{body['name']}' is not defined")
            references = body.get("references")
            if references is None:
                result = function(*args, **kwargs)
            else:
                with self.checks.references_out_of_reach(
                    *references["extra"], **references["options"]
                ):
                    result = function(*args, **kwargs)
            return {
                "id": body["id"],
                "ok": True,
                "value": encoder.encode(result),
                "after": self._changed_tensors(decoder, versions, encoder),
            }
        except GradingTimeout:
            raise
        except BaseException as error:  # noqa: BLE001 (whatever the student's code raised, report it)
            encoder.blobs.clear()
            return {
                "id": body["id"],
                "ok": False,
                "error": protocol.describe_exception(error),
            }

    def _restore(self, saved: dict) -> None:
        for name, value in list(saved.items()):
            if value is _MISSING:
                self.namespace.pop(name, None)
            else:
                self.namespace[name] = value
            del saved[name]

    @staticmethod
    def _changed_tensors(
        decoder: protocol.Decoder, versions: dict, encoder: protocol.Encoder
    ) -> list:
        """Arguments the call changed in place (values or ``.grad``), so the grader's test can see it."""
        changed = []
        for ref, tensor in decoder.tensors.items():
            grad = tensor.grad if tensor.is_leaf and tensor.requires_grad else None
            if tensor._version == versions[ref] and grad is None:
                continue
            changed.append(
                {
                    "ref": ref,
                    "tensor": encoder.tensor_data(tensor),
                    "grad": encoder.tensor_data(grad) if grad is not None else None,
                }
            )
        return changed


def _memory_peak_kb() -> int | None:
    """The kernel's peak address space (VmPeak), for the grading log: how close it came to the limit."""
    try:
        with open("/proc/self/status") as status:
            return next(
                int(line.split()[1]) for line in status if line.startswith("VmPeak:")
            )
    except (OSError, StopIteration, ValueError):
        return None


class _time_limit:
    """Raise :class:`GradingTimeout` in the main thread after ``seconds`` (SIGALRM); no-op elsewhere."""

    def __init__(self, seconds: float):
        self.seconds = max(0.05, seconds)
        self.active = threading.current_thread() is threading.main_thread()

    def __enter__(self):
        if self.active:

            def expired(signum, frame):
                raise GradingTimeout()

            self.previous = signal.signal(signal.SIGALRM, expired)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc):
        if self.active:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(
                signal.SIGALRM,
                self.previous if self.previous is not None else signal.SIG_DFL,
            )
        return False
