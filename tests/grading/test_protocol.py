"""The probe protocol: values cross as plain data, and whatever comes from the sandbox is checked."""

from __future__ import annotations

import json
import os
import struct
import time

import numpy as np
import pytest
import torch

from rnn_course.checks import CheckFailed
from rnn_course.grading import protocol


def round_trip(value, **encoder_options):
    encoder = protocol.Encoder(**encoder_options)
    data = json.loads(json.dumps(encoder.encode(value)))
    return protocol.Decoder(encoder.blobs).decode(data)


@pytest.mark.parametrize(
    "dtype",
    [
        torch.float32,
        torch.float64,
        torch.float16,
        torch.bfloat16,
        torch.int64,
        torch.int8,
        torch.uint8,
        torch.bool,
        torch.complex64,
    ],
)
def test_tensors_cross_with_their_dtype_shape_and_values(dtype):
    tensor = (torch.arange(24, dtype=torch.float64).reshape(2, 3, 4) - 7).to(dtype)
    back = round_trip(tensor)
    assert (
        type(back) is torch.Tensor
        and back.dtype == dtype
        and back.shape == tensor.shape
    )
    assert torch.equal(back, tensor)


def test_views_scalars_meta_empty_and_parameters():
    base = torch.arange(12.0).reshape(3, 4)
    assert torch.equal(round_trip(base.T), base.T)  # a non-contiguous view
    assert torch.equal(round_trip(base[:, 1]), base[:, 1])
    assert round_trip(torch.tensor(2.5)).shape == ()
    odd = torch.arange(10.0).reshape(2, 5)[
        :1, 4
    ]  # one element, stride 5: "contiguous" yet not packed
    assert torch.equal(round_trip(odd), odd)
    assert torch.equal(
        round_trip(torch.arange(6.0).reshape(3, 2)[:, 1:]),
        torch.tensor([[1.0], [3.0], [5.0]]),
    )
    meta = round_trip(torch.empty(5, 2, device="meta", dtype=torch.float64))
    assert meta.is_meta and meta.shape == (5, 2) and meta.dtype == torch.float64
    assert round_trip(torch.zeros(0, 3)).shape == (0, 3)
    parameter = round_trip(torch.nn.Parameter(torch.ones(2)))
    assert type(parameter) is torch.nn.Parameter and parameter.requires_grad
    assert round_trip(torch.ones(2, requires_grad=True)).requires_grad


def test_containers_numbers_and_torch_types():
    value = {
        "a": [1, 2.5, None, True, "text", (3, 4)],
        7: {"nested": (torch.float64, torch.device("cpu"))},
        "size": torch.Size([2, 3]),
        "complex": 1 + 2j,
        "inf": float("inf"),
        "bytes": b"\x00\x01",
    }
    back = round_trip(value)
    assert (
        back["a"] == [1, 2.5, None, True, "text", (3, 4)]
        and type(back["a"][5]) is tuple
    )
    assert back[7]["nested"] == (torch.float64, torch.device("cpu"))
    assert (
        back["size"] == torch.Size([2, 3])
        and back["complex"] == 1 + 2j
        and back["inf"] == float("inf")
    )
    assert back["bytes"] == b"\x00\x01"
    array = round_trip(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert array.dtype == np.float32 and array.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert type(round_trip(np.float64(1.5))) is np.float64


def test_the_same_tensor_twice_stays_one_object():
    tensor = torch.ones(3)
    first, second = round_trip([tensor, tensor])
    assert first is second


def test_anything_else_arrives_as_unsupported_never_unpickled():
    class AlwaysEqual:
        def __eq__(self, other):
            return True

    back = round_trip([AlwaysEqual(), lambda x: x])
    assert all(isinstance(item, protocol.Unsupported) for item in back)
    assert "AlwaysEqual" in repr(back[0])
    with pytest.raises(CheckFailed, match="Unsupported"):
        from rnn_course.checks import check_close

        check_close(back[0], torch.ones(1), "the result")


def test_the_grader_sends_its_own_functions_as_callbacks():
    callbacks = []
    encoder = protocol.Encoder(callbacks=callbacks)
    data = encoder.encode({"f": torch.tanh})
    assert callbacks == [torch.tanh] and data == {
        "__dict__": [["f", {"__callback__": 0}]]
    }
    back = protocol.Decoder(
        encoder.blobs, callback=lambda index: ("stand-in", index)
    ).decode(data)
    assert back == {"f": ("stand-in", 0)}


@pytest.mark.parametrize(
    "data, blobs",
    [
        (
            {
                "__tensor__": {
                    "dtype": "float32",
                    "shape": [2],
                    "device": "cpu",
                    "blob": 0,
                },
                "ref": 0,
            },
            [b"\x00" * 7],
        ),
        (
            {
                "__tensor__": {
                    "dtype": "object",
                    "shape": [1],
                    "device": "cpu",
                    "blob": 0,
                },
                "ref": 0,
            },
            [b"\x00" * 8],
        ),
        (
            {
                "__tensor__": {
                    "dtype": "float32",
                    "shape": [-1],
                    "device": "cpu",
                    "blob": 0,
                },
                "ref": 0,
            },
            [b""],
        ),
        (
            {
                "__tensor__": {
                    "dtype": "float32",
                    "shape": [1],
                    "device": "tpu",
                    "blob": 0,
                },
                "ref": 0,
            },
            [b"\x00" * 4],
        ),
        (
            {
                "__tensor__": {
                    "dtype": "float32",
                    "shape": [1],
                    "device": "cpu",
                    "blob": 3,
                },
                "ref": 0,
            },
            [b"\x00" * 4],
        ),
        ({"__ref__": 5}, []),
        ({"__pickle__": "gASVAAAA"}, []),
        ({"__ndarray__": {"dtype": "|O", "shape": [1], "blob": 0}}, [b"\x00" * 8]),
        (
            [{"__bytes__": 0}, {"__bytes__": 0}],
            [b"x" * 10],
        ),  # one blob used twice: no amplification
        (
            {"__callback__": 0},
            [],
        ),  # the sandbox cannot hand the grader a function to call
    ],
)
def test_malformed_values_from_the_sandbox_are_refused(data, blobs):
    with pytest.raises(protocol.ProtocolError):
        protocol.Decoder(blobs).decode(data)


def test_deep_nesting_is_refused():
    data = []
    for _ in range(protocol.MAX_DEPTH + 5):
        data = [data]
    with pytest.raises(protocol.ProtocolError):
        protocol.Decoder([]).decode(data)


def pipe_channels(max_bytes=protocol.MAX_MESSAGE_BYTES):
    a_read, b_write = os.pipe()
    b_read, a_write = os.pipe()
    for fd in (a_read, a_write):
        os.set_blocking(fd, False)
    grader = protocol.Channel(a_read, a_write, blocking=False, max_bytes=max_bytes)
    probe = protocol.Channel(b_read, b_write, blocking=True)
    return grader, probe, (a_read, a_write, b_read, b_write)


def test_messages_cross_a_pipe_both_ways():
    grader, probe, fds = pipe_channels()
    try:
        encoder = protocol.Encoder()
        grader.send(
            "call",
            {"args": encoder.encode([torch.ones(3)])},
            encoder.blobs,
            deadline=time.monotonic() + 5,
        )
        kind, body, blobs = probe.receive()
        assert kind == "call" and torch.equal(
            protocol.Decoder(blobs).decode(body["args"])[0], torch.ones(3)
        )
        probe.send("result", {"ok": True})
        assert grader.receive(deadline=time.monotonic() + 5)[:2] == (
            "result",
            {"ok": True},
        )
    finally:
        for fd in fds:
            os.close(fd)


def test_the_grader_never_waits_past_its_deadline_nor_for_a_dead_sandbox():
    grader, probe, fds = pipe_channels()
    try:
        start = time.monotonic()
        with pytest.raises(protocol.ChannelTimeout):
            grader.receive(deadline=start + 0.3)
        assert time.monotonic() - start < 2
        grader.alive = lambda: False
        with pytest.raises(protocol.ProtocolError, match="ended"):
            grader.receive(deadline=time.monotonic() + 30)
    finally:
        for fd in fds:
            os.close(fd)


@pytest.mark.parametrize(
    "frame",
    [
        b"JUNK" + struct.pack(">I", 2) + b"{}",
        protocol.MAGIC + struct.pack(">I", protocol.MAX_HEADER_BYTES + 1),
        protocol.MAGIC + struct.pack(">I", 5) + b"[1,2]",
        protocol.MAGIC
        + struct.pack(">I", 40)
        + b'{"kind": "result", "blobs": [999999999]}'.ljust(40),
    ],
)
def test_malformed_frames_are_refused(frame):
    grader, probe, fds = pipe_channels(max_bytes=1 << 20)
    try:
        os.write(fds[3], frame)
        with pytest.raises(protocol.ProtocolError):
            grader.receive(deadline=time.monotonic() + 2)
    finally:
        for fd in fds:
            os.close(fd)


def test_exceptions_cross_as_type_and_message():
    assert (
        type(protocol.exception_from_data({"type": "ValueError", "message": "bad"}))
        is ValueError
    )
    checked = protocol.exception_from_data(
        {"type": "rnn_course.checks.CheckFailed", "message": "m"},
        {"rnn_course.checks.CheckFailed": CheckFailed},
    )
    assert type(checked) is CheckFailed and str(checked) == "m"
    custom = protocol.exception_from_data(
        {"type": "torch.OutOfMemoryError", "message": "CUDA out of memory"}
    )
    assert (
        isinstance(custom, protocol.StudentError)
        and type(custom).__name__ == "OutOfMemoryError"
    )
    odd = protocol.exception_from_data({"type": "x.Not An Identifier", "message": "m"})
    assert type(odd).__name__ == "StudentError"
    assert protocol.describe_exception(KeyError("k")) == {
        "type": "KeyError",
        "message": "'k'",
    }

    class Nasty(Exception):
        def __str__(self):
            raise RuntimeError("no message for you")

    assert "could not be read" in protocol.describe_exception(Nasty())["message"]


@pytest.mark.parametrize("levels", [protocol.MAX_DEPTH + 20, 200_000])
def test_a_deeply_nested_header_is_refused_before_it_is_parsed(levels):
    header = (
        b'{"kind":"result","body":' + b"[" * levels + b"]" * levels + b',"blobs":[]}'
    )
    grader, probe, fds = pipe_channels(max_bytes=4 << 20)
    try:
        os.write(fds[3], protocol.MAGIC + struct.pack(">I", len(header)))
        writer = __import__("threading").Thread(target=os.write, args=(fds[3], header))
        writer.start()
        with pytest.raises(protocol.ProtocolError, match="nested"):
            grader.receive(deadline=time.monotonic() + 10)
        writer.join()
    finally:
        for fd in fds:
            os.close(fd)


def test_json_depth_counts_brackets_outside_strings_only():
    assert protocol.json_depth(b'{"a": [[1], {"b": [2]}]}') == 4  # counted by hand
    text = (
        b'{"kind": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\"[[[[", "body": [[]]}'
    )
    assert protocol.json_depth(text) == 3
    assert (
        json.loads(text)["kind"].count("[") == 46
    )  # the brackets really were inside a string


def test_payload_bytes_counts_without_copying_and_stops_past_the_limit():
    huge = torch.zeros(1).expand(
        1 << 28
    )  # 1 GiB of float32 as an expanded view: no memory behind it
    assert protocol.payload_bytes(huge, limit=1 << 40) == 1 << 30
    assert (
        protocol.payload_bytes(
            [torch.ones(4, dtype=torch.float64), {"k": b"xyz"}, "ab"], 1 << 20
        )
        == 32 + 1 + 3 + 2
    )
    assert protocol.payload_bytes([huge, huge], limit=10) > 10


def test_a_shape_with_too_many_elements_is_refused_even_on_the_meta_device():
    data = {
        "__tensor__": {
            "dtype": "float32",
            "shape": [1 << 20, 1 << 20],
            "device": "meta",
        },
        "ref": 0,
    }
    with pytest.raises(protocol.ProtocolError, match="elements"):
        protocol.Decoder([]).decode(data)
