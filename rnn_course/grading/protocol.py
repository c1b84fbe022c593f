"""The probe protocol: values as plain data (JSON + raw tensor bytes) over a pair of pipes, never pickle.

Both sides use this module: the grader (host) and the probe inside the student's kernel (sandbox).

A **message** is a frame ``b"RNNG" + length (4 bytes, big-endian) + JSON header + blobs``; the header
holds the message's ``kind``, its ``body`` and the byte length of each blob that follows. A **value**
is encoded as JSON where it can be (None, bool, int, float, str, lists) and as a tagged object
otherwise::

    {"__tensor__": {"dtype": "float32", "shape": [2, 3], "device": "cpu", "blob": 0,
                    "requires_grad": false, "parameter": false}, "ref": 0}
    {"__ref__": 0}            the same tensor object again (aliasing is kept)
    {"__tuple__": [...]}      {"__dict__": [[key, value], ...]}     {"__complex__": [re, im]}
    {"__dtype__": "float64"}  {"__device__": "cuda:0"}              {"__size__": [2, 3]}
    {"__ndarray__": {"dtype": "<f8", "shape": [3], "blob": 1}}      {"__bytes__": 2}
    {"__student__": "name"}   one of the student's own functions (host -> sandbox)
    {"__callback__": 3}       a function of the grader: calling it asks the grader (host -> sandbox)
    {"__opaque__": "pkg.Type"} anything else the student returned: it arrives as :class:`Unsupported`

Decoding what came from the sandbox is strict: sizes, depth, dtypes and devices are checked, and a
malformed message raises :class:`ProtocolError` (the student's code is on the other side).
"""

from __future__ import annotations

import builtins
import errno
import json
import os
import re
import select
import struct
import time
from collections.abc import Callable

import numpy as np
import torch

MAGIC = b"RNNG"
VERSION = 1
MAX_HEADER_BYTES = 4 << 20
"""Largest JSON header accepted from the sandbox (4 MiB)."""
MAX_MESSAGE_BYTES = 256 << 20
"""Largest message (header + tensor bytes) accepted from the sandbox (256 MiB)."""
MAX_DEPTH = 32
MAX_ITEMS = 1_000_000
MAX_DIMS = 16
MAX_ELEMENTS = 1 << 36
"""Most elements a tensor or array may declare (on the meta device too)."""
MAX_TEXT = 64 << 10
"""Longest exception message kept from the sandbox (64 KiB)."""

_DTYPES = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
    "complex64": torch.complex64,
    "complex128": torch.complex128,
    "uint8": torch.uint8,
    "int8": torch.int8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "bool": torch.bool,
}
_DTYPE_NAMES = {dtype: name for name, dtype in _DTYPES.items()}
_NUMPY_KINDS = set("biufc")
_DEVICE_TYPES = {"cpu", "cuda", "meta", "mps"}


class ProtocolError(RuntimeError):
    """A message broke the protocol (malformed, too large, or the other side went away)."""


class ChannelTimeout(ProtocolError):
    """No complete message arrived before the deadline."""


class Unsupported:
    """Stands for a value the student's function returned that is not plain data (e.g. a custom object).

    The exercise checks refuse it as they refuse any non-tensor, naming the student's type.
    """

    def __init__(self, type_name: str):
        self.type_name = type_name

    def __repr__(self) -> str:
        return f"<a {self.type_name} object, which the grader cannot read as numbers>"


# ---------------------------------------------------------------------------------------------
# Framing
# ---------------------------------------------------------------------------------------------


class Channel:
    """Messages over two file descriptors (pipes or FIFOs).

    ``blocking=True`` (the probe): plain blocking reads and writes. ``blocking=False`` (the grader): the
    descriptors are non-blocking and every operation takes a ``deadline`` (``time.monotonic()`` value) and
    an ``alive`` function; when the deadline passes or ``alive()`` turns False, it raises.
    """

    def __init__(
        self,
        read_fd: int,
        write_fd: int,
        *,
        blocking: bool,
        max_bytes: int = MAX_MESSAGE_BYTES,
        alive: Callable[[], bool] | None = None,
    ):
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.blocking = blocking
        self.max_bytes = max_bytes
        self.alive = alive or (lambda: True)
        self._buffer = bytearray()

    # -- sending ---------------------------------------------------------------------------------
    def send(
        self, kind: str, body, blobs: list[bytes] = (), deadline: float | None = None
    ) -> None:
        header = json.dumps(
            {"kind": kind, "body": body, "blobs": [len(blob) for blob in blobs]},
            separators=(",", ":"),
        ).encode()
        self._write(MAGIC + struct.pack(">I", len(header)) + header, deadline)
        for blob in blobs:
            self._write(blob, deadline)

    def _write(self, data: bytes, deadline: float | None) -> None:
        view = memoryview(data)
        while view:
            if not self.blocking:
                self._wait(select.POLLOUT, deadline)
            try:
                written = os.write(self.write_fd, view)
            except BlockingIOError:
                continue
            except BrokenPipeError as error:
                raise ProtocolError("the other side closed the channel") from error
            view = view[written:]

    # -- receiving -------------------------------------------------------------------------------
    def receive(self, deadline: float | None = None) -> tuple[str, object, list[bytes]]:
        prefix = self._read_exactly(8, deadline)
        if prefix[:4] != MAGIC:
            raise ProtocolError("malformed message (bad magic)")
        (header_length,) = struct.unpack(">I", prefix[4:])
        if header_length > min(MAX_HEADER_BYTES, self.max_bytes):
            raise ProtocolError(f"message header too large ({header_length} bytes)")
        raw = self._read_exactly(header_length, deadline)
        depth = json_depth(raw)
        if (
            depth > MAX_DEPTH + 8
        ):  # (a frame's own keys nest a few levels above its values)
            raise ProtocolError(f"malformed message header: nested {depth} levels deep")
        try:
            header = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as error:
            raise ProtocolError(f"malformed message header: {error}") from None
        if not isinstance(header, dict) or not isinstance(header.get("kind"), str):
            raise ProtocolError("malformed message header")
        lengths = header.get("blobs", [])
        if (
            not isinstance(lengths, list)
            or len(lengths) > MAX_ITEMS
            or not all(type(n) is int and n >= 0 for n in lengths)
        ):
            raise ProtocolError("malformed blob list")
        if header_length + sum(lengths) > self.max_bytes:
            raise ProtocolError(
                f"message too large ({header_length + sum(lengths)} bytes)"
            )
        blobs = [self._read_exactly(n, deadline) for n in lengths]
        return header["kind"], header.get("body"), blobs

    def _read_exactly(self, count: int, deadline: float | None) -> bytes:
        while len(self._buffer) < count:
            if not self.blocking:
                self._wait(select.POLLIN, deadline)
            try:
                chunk = os.read(self.read_fd, max(65536, count - len(self._buffer)))
            except BlockingIOError:
                continue
            except OSError as error:
                if error.errno == errno.EINTR:
                    continue
                raise ProtocolError(f"reading the channel failed: {error}") from None
            if not chunk:
                raise ProtocolError("the other side closed the channel")
            self._buffer += chunk
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    def _wait(self, event: int, deadline: float | None) -> None:
        fd = self.read_fd if event == select.POLLIN else self.write_fd
        poller = select.poll()
        poller.register(fd, event)
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise ChannelTimeout("no answer before the deadline")
            wait = 0.1 if deadline is None else min(0.1, deadline - now)
            if poller.poll(max(1, int(wait * 1000))):
                return
            if not self.alive():
                # one last look: the other side may have written everything just before it ended
                if poller.poll(0):
                    return
                raise ProtocolError("the other side ended")


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def json_depth(data: bytes) -> int:
    """How deeply the JSON text ``data`` nests, found without parsing it (and without recursion): the
    parser would recurse once per level, so a deep message must be refused before it is parsed."""
    brackets = np.frombuffer(_JSON_STRING.sub(b'""', data), dtype=np.uint8)
    steps = np.isin(brackets, (ord("["), ord("{"))).astype(np.int64) - np.isin(
        brackets, (ord("]"), ord("}"))
    ).astype(np.int64)
    return int(np.cumsum(steps).max(initial=0))


def payload_bytes(value, limit: int) -> int:
    """The bytes ``value`` would take on the channel (tensors, arrays, bytes, text), counted without
    copying anything and without recursion; stops counting once past ``limit``."""
    total, items, stack = 0, 0, [value]
    while stack and total <= limit:
        item = stack.pop()
        items += 1
        if items > MAX_ITEMS:
            return limit + 1
        if isinstance(item, torch.Tensor):
            total += item.numel() * item.element_size()
        elif isinstance(item, np.ndarray):
            total += item.nbytes
        elif isinstance(item, (bytes, bytearray, str)):
            total += len(item)
        elif type(item) in (list, tuple):
            stack.extend(item)
        elif type(item) is dict:
            stack.extend(item.keys())
            stack.extend(item.values())
    return total


# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------


def type_name(value) -> str:
    """``module.QualifiedName`` of a value's type (``float`` for builtins)."""
    kind = builtins.type(value)
    module = getattr(kind, "__module__", "?")
    name = getattr(kind, "__qualname__", getattr(kind, "__name__", "?"))
    return name if module == "builtins" else f"{module}.{name}"


class Encoder:
    """Turns a value into JSON-able data plus blobs.

    ``callbacks``: when given (the grader's side), a callable that is not one of the student's functions
    is registered there and sent as ``{"__callback__": index}``; without it, callables are opaque.
    ``student_name``: returns the student's function name for a proxy, or None.
    """

    def __init__(
        self,
        *,
        callbacks: list | None = None,
        student_name: Callable[[object], str | None] | None = None,
    ):
        self.blobs: list[bytes] = []
        self.tensors: list[
            torch.Tensor
        ] = []  # index = the "ref" number of each tensor sent
        self._refs: dict[int, int] = {}
        self.callbacks = callbacks
        self.student_name = student_name or (lambda value: None)

    def encode(self, value, depth: int = 0):
        if depth > MAX_DEPTH:
            raise ValueError("value nested too deeply")
        kind = type(value)
        if value is None or kind in (bool, str):
            return value
        if kind is int:
            return value
        if kind is float:
            return value
        if isinstance(value, torch.Tensor):
            return self._tensor(value)
        if isinstance(value, (np.ndarray, np.generic)):
            return self._ndarray(value)
        if kind is complex:
            return {"__complex__": [value.real, value.imag]}
        if kind is list:
            return [self.encode(item, depth + 1) for item in value]
        if kind is tuple:
            return {"__tuple__": [self.encode(item, depth + 1) for item in value]}
        if kind is torch.Size:
            return {"__size__": [int(size) for size in value]}
        if kind is dict:
            return {
                "__dict__": [
                    [self.encode(key, depth + 1), self.encode(item, depth + 1)]
                    for key, item in value.items()
                ]
            }
        if kind is torch.dtype:
            return {
                "__dtype__": _DTYPE_NAMES.get(value, str(value).removeprefix("torch."))
            }
        if kind is torch.device:
            return {"__device__": str(value)}
        if kind in (bytes, bytearray):
            self.blobs.append(bytes(value))
            return {"__bytes__": len(self.blobs) - 1}
        name = self.student_name(value)
        if name is not None:
            return {"__student__": name}
        if self.callbacks is not None and callable(value):
            self.callbacks.append(value)
            return {"__callback__": len(self.callbacks) - 1}
        return {"__opaque__": type_name(value)}

    def _tensor(self, value: torch.Tensor):
        ref = self._refs.get(id(value))
        if ref is not None:
            return {"__ref__": ref}
        self._refs[id(value)] = len(self.tensors)
        self.tensors.append(value)
        return {"__tensor__": self.tensor_data(value), "ref": len(self.tensors) - 1}

    def tensor_data(self, value: torch.Tensor) -> dict:
        """The tensor's dtype, shape, device and values (a blob), without autograd history."""
        tensor = torch.Tensor.detach(value)
        dtype = _DTYPE_NAMES.get(tensor.dtype)
        if dtype is None or tensor.layout != torch.strided or tensor.is_quantized:
            raise ValueError(
                f"cannot send a tensor of dtype {tensor.dtype} / layout {tensor.layout}"
            )
        data = {
            "dtype": dtype,
            "shape": [int(size) for size in tensor.shape],
            "device": str(tensor.device),
            "requires_grad": bool(value.requires_grad),
            "parameter": isinstance(value, torch.nn.Parameter),
        }
        if tensor.device.type != "meta":
            # a fresh 1-D copy: views, odd strides (even a size-1 dimension's), conjugate bits all resolved
            flat = torch.empty(tensor.numel(), dtype=tensor.dtype)
            flat.copy_(tensor.to("cpu").resolve_conj().resolve_neg().reshape(-1))
            self.blobs.append(
                flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
            )
            data["blob"] = len(self.blobs) - 1
        return data

    def _ndarray(self, value):
        array = np.asarray(value)
        if array.dtype.kind not in _NUMPY_KINDS:
            return {"__opaque__": f"numpy.ndarray of dtype {array.dtype}"}
        self.blobs.append(np.ascontiguousarray(array).tobytes())
        return {
            "__ndarray__": {
                "dtype": array.dtype.str,
                "shape": list(array.shape),
                "blob": len(self.blobs) - 1,
                "scalar": isinstance(value, np.generic),
            }
        }


class Decoder:
    """Turns JSON-able data plus blobs back into values; checks everything (it may come from the sandbox).

    ``callback``: makes a stand-in function for ``{"__callback__": i}`` (the probe's side).
    ``student_function``: returns the student's function for ``{"__student__": name}`` (the probe's side).
    """

    def __init__(
        self,
        blobs: list[bytes],
        *,
        callback: Callable[[int], Callable] | None = None,
        student_function: Callable[[str], object] | None = None,
    ):
        self.blobs = blobs
        self.callback = callback
        self.student_function = student_function
        self.tensors: dict[int, torch.Tensor] = {}
        self._items = 0
        self._used_blobs: set[int] = set()

    def decode(self, data, depth: int = 0):
        if depth > MAX_DEPTH:
            raise ProtocolError("value nested too deeply")
        self._items += 1
        if self._items > MAX_ITEMS:
            raise ProtocolError("value has too many items")
        kind = type(data)
        if data is None or kind in (bool, int, float):
            return data
        if kind is str:
            return data
        if kind is list:
            return [self.decode(item, depth + 1) for item in data]
        if kind is not dict or not data:
            raise ProtocolError(f"unexpected value of type {kind.__name__}")
        tag = next(iter(data))
        payload = data[tag]
        if tag == "__tensor__":
            tensor = self.tensor(payload)
            ref = data.get("ref")
            if type(ref) is not int or ref in self.tensors:
                raise ProtocolError("bad tensor reference")
            self.tensors[ref] = tensor
            return tensor
        if tag == "__ref__":
            if payload not in self.tensors:
                raise ProtocolError("unknown tensor reference")
            return self.tensors[payload]
        if tag == "__tuple__" and type(payload) is list:
            return tuple(self.decode(item, depth + 1) for item in payload)
        if tag == "__dict__" and type(payload) is list:
            result = {}
            for pair in payload:
                if type(pair) is not list or len(pair) != 2:
                    raise ProtocolError("malformed dict")
                key = self.decode(pair[0], depth + 1)
                try:
                    result[key] = self.decode(pair[1], depth + 1)
                except TypeError:
                    raise ProtocolError("unhashable dict key") from None
            return result
        if tag == "__complex__" and type(payload) is list and len(payload) == 2:
            return complex(float(payload[0]), float(payload[1]))
        if tag == "__size__" and type(payload) is list:
            return torch.Size(self._shape(payload))
        if tag == "__dtype__" and payload in _DTYPES:
            return _DTYPES[payload]
        if tag == "__device__" and type(payload) is str:
            return self._device(payload)
        if tag == "__ndarray__" and type(payload) is dict:
            return self._ndarray(payload)
        if tag == "__bytes__":
            return self._blob(payload)
        if tag == "__opaque__" and type(payload) is str:
            return Unsupported(payload[:200])
        if (
            tag == "__student__"
            and type(payload) is str
            and self.student_function is not None
        ):
            return self.student_function(payload)
        if tag == "__callback__" and type(payload) is int and self.callback is not None:
            return self.callback(payload)
        raise ProtocolError(f"unexpected tag {str(tag)[:40]!r}")

    def _blob(self, index) -> bytes:
        if (
            type(index) is not int
            or not 0 <= index < len(self.blobs)
            or index in self._used_blobs
        ):
            raise ProtocolError("bad blob index")
        self._used_blobs.add(
            index
        )  # each blob once: no message may multiply its size in memory
        return self.blobs[index]

    @staticmethod
    def _shape(shape) -> list[int]:
        if type(shape) is not list or len(shape) > MAX_DIMS:
            raise ProtocolError("bad shape")
        if not all(type(size) is int and 0 <= size < 1 << 40 for size in shape):
            raise ProtocolError("bad shape")
        numel = 1
        for size in shape:
            numel *= size
        if (
            numel > MAX_ELEMENTS
        ):  # even on the meta device: refused before anything is made from it
            raise ProtocolError(
                f"shape {shape[:8]} has more than {MAX_ELEMENTS} elements"
            )
        return shape

    @staticmethod
    def _device(text: str) -> torch.device:
        try:
            device = torch.device(text)
        except (RuntimeError, ValueError):
            raise ProtocolError(f"bad device {text[:40]!r}") from None
        if device.type not in _DEVICE_TYPES:
            raise ProtocolError(f"unexpected device {text[:40]!r}")
        return device

    def tensor(self, payload) -> torch.Tensor:
        """A new tensor from :meth:`Encoder.tensor_data`'s description."""
        if type(payload) is not dict or payload.get("dtype") not in _DTYPES:
            raise ProtocolError("bad tensor")
        dtype = _DTYPES[payload["dtype"]]
        shape = self._shape(payload.get("shape"))
        device = self._device(str(payload.get("device")))
        if device.type == "meta":
            tensor = torch.empty(shape, dtype=dtype, device="meta")
        else:
            blob = self._blob(payload.get("blob"))
            numel = 1
            for size in shape:
                numel *= size
            itemsize = torch.empty((), dtype=dtype).element_size()
            if numel * itemsize != len(blob):
                raise ProtocolError("tensor bytes do not match its shape")
            if numel == 0:
                tensor = torch.empty(shape, dtype=dtype)
            else:
                tensor = (
                    torch.frombuffer(bytearray(blob), dtype=torch.uint8)
                    .view(dtype)
                    .reshape(shape)
                )
            if device.type != "cpu":
                try:
                    tensor = tensor.to(device)
                except (RuntimeError, AssertionError) as error:
                    raise ProtocolError(
                        f"device {device} is not available here: {error}"
                    ) from None
        if payload.get("requires_grad") is True and (
            dtype.is_floating_point or dtype.is_complex
        ):
            tensor.requires_grad_(True)
        if payload.get("parameter") is True:
            tensor = torch.nn.Parameter(tensor, requires_grad=tensor.requires_grad)
        return tensor

    def _ndarray(self, payload: dict):
        try:
            dtype = np.dtype(str(payload.get("dtype")))
        except TypeError:
            raise ProtocolError("bad ndarray dtype") from None
        if dtype.kind not in _NUMPY_KINDS or dtype.hasobject:
            raise ProtocolError("bad ndarray dtype")
        shape = self._shape(payload.get("shape"))
        blob = self._blob(payload.get("blob"))
        numel = 1
        for size in shape:
            numel *= size
        if numel * dtype.itemsize != len(blob):
            raise ProtocolError("ndarray bytes do not match its shape")
        array = np.frombuffer(blob, dtype=dtype).reshape(shape).copy()
        return array[()] if payload.get("scalar") is True else array


# ---------------------------------------------------------------------------------------------
# Exceptions as data
# ---------------------------------------------------------------------------------------------


def describe_exception(error: BaseException) -> dict:
    """An exception as plain data: its type's qualified name and its message (never the traceback)."""
    try:
        message = str(error)
    except Exception:  # noqa: BLE001 (a student's __str__ may fail)
        message = "<the exception's message could not be read>"
    return {
        "type": type_name(error)
        if type(error).__module__ != "builtins"
        else type(error).__name__,
        "message": message[:MAX_TEXT],
    }


class StudentError(RuntimeError):
    """An exception raised by the student's code whose type the grader does not have (named like the original)."""


_remote_classes: dict[str, type] = {}


def exception_from_data(data, known: dict[str, type] | None = None) -> Exception:
    """Rebuild an exception raised on the other side: a builtin type stays itself, ``known`` maps
    qualified names to the grader's classes (e.g. ``rnn_course.checks.CheckFailed``), anything else
    becomes a :class:`StudentError` subclass with the same name."""
    if type(data) is not dict:
        return StudentError("an error the grader could not read")
    name = str(data.get("type", "Exception"))[:200]
    message = str(data.get("message", ""))[:MAX_TEXT]
    if known and name in known:
        return known[name](message)
    builtin = getattr(builtins, name, None) if "." not in name else None
    if (
        isinstance(builtin, type)
        and issubclass(builtin, Exception)
        and builtin is not StopIteration
    ):
        try:
            return builtin(message)
        except Exception:  # noqa: BLE001 (e.g. UnicodeDecodeError needs five arguments)
            pass
    short = name.rpartition(".")[2]
    if not short.isidentifier():
        short = "StudentError"
    if name not in _remote_classes:
        _remote_classes[name] = type(short, (StudentError,), {"__module__": "student"})
    return _remote_classes[name](message)
