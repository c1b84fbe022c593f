"""Malformed inputs for the intake tests: damaged zip archives, mutated notebook JSON.

A zip is built with :mod:`zipfile`, then its headers are patched in place (checksums,
sizes, flags, compression method), as a damaged or hostile export would have them.
Notebook mutations change one place of the released notebook's JSON at a time: a value
of another type, a missing key, a duplicated key, deep nesting, a huge value.
"""

from __future__ import annotations

import io
import json
import random
import struct
import warnings
import zipfile
import zlib
from dataclasses import dataclass

CENTRAL = b"PK\x01\x02"  # a central directory entry
LOCAL = b"PK\x03\x04"  # a local file header
# (offset in the central entry, offset in the local header, struct format)
FIELDS = {
    "flags": (8, 6, "<H"),
    "method": (10, 8, "<H"),
    "crc": (16, 14, "<I"),
    "compressed_size": (20, 18, "<I"),
    "file_size": (24, 22, "<I"),
}


def build_zip(members: list[tuple[str, bytes]], deflate: bool = True) -> bytes:
    """A zip holding ``members`` (name, data) in this order; duplicate names allowed."""
    buffer = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(buffer, "w", method) as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ("Duplicate name": wanted here)
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = method
            archive.writestr(info, data)
    return buffer.getvalue()


def _entries(data: bytes):
    """(central entry offset, local header offset, name bytes) of every member."""
    position = data.rfind(b"PK\x05\x06")
    count, _, start = struct.unpack_from("<HII", data, position + 10)
    offset = start
    for _ in range(count):
        assert data[offset : offset + 4] == CENTRAL
        name_length, extra_length, comment_length = struct.unpack_from(
            "<HHH", data, offset + 28
        )
        (local,) = struct.unpack_from("<I", data, offset + 42)
        name = data[offset + 46 : offset + 46 + name_length]
        yield offset, local, name
        offset += 46 + name_length + extra_length + comment_length


def patch(data: bytes, member: str, central_only: bool = False, **values) -> bytes:
    """``data`` with header fields of ``member`` replaced (``patch(z, "a", crc=0)``).

    A value may be a function of the old one (``file_size=lambda old: old * 1000``).
    """
    data = bytearray(data)
    for central, local, name in _entries(bytes(data)):
        if name != member.encode():
            continue
        for field, value in values.items():
            central_at, local_at, fmt = FIELDS[field]
            places = [central + central_at]
            if not central_only:
                places.append(local + local_at)
            for place in places:
                (old,) = struct.unpack_from(fmt, data, place)
                new = value(old) if callable(value) else value
                struct.pack_into(fmt, data, place, new)
    return bytes(data)


def rename(data: bytes, member: str, raw_name: bytes, utf8_flag: bool) -> bytes:
    """``data`` with ``member`` renamed to the bytes ``raw_name`` (same length)."""
    assert len(raw_name) == len(member.encode())
    data = bytearray(data)
    for central, local, name in _entries(bytes(data)):
        if name == member.encode():
            data[central + 46 : central + 46 + len(name)] = raw_name
            data[local + 30 : local + 30 + len(name)] = raw_name
            for place, at in ((central, 8), (local, 6)):
                (flags,) = struct.unpack_from("<H", data, place + at)
                flags = flags | 0x800 if utf8_flag else flags & ~0x800
                struct.pack_into("<H", data, place + at, flags)
    return bytes(data)


def damage_data(data: bytes, member: str) -> bytes:
    """``data`` with the middle byte of ``member``'s compressed data flipped."""
    data = bytearray(data)
    for central, local, name in _entries(bytes(data)):
        if name == member.encode():
            (size,) = struct.unpack_from("<I", data, central + 20)
            name_length, extra_length = struct.unpack_from("<HH", data, local + 26)
            start = local + 30 + name_length + extra_length
            data[start + size // 2] ^= 0xFF
    return bytes(data)


def deflate_bomb(megabytes: int) -> bytes:
    """A zip member's worth of zeros: ``megabytes`` MiB that deflate to about 1/1000."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    parts = [compressor.compress(chunk) for _ in range(megabytes)]
    return b"".join(parts) + compressor.flush()


def zip_with_raw_member(name: str, compressed: bytes, size: int, crc: int) -> bytes:
    """A one-member zip whose deflated data is ``compressed`` (made elsewhere)."""
    encoded = name.encode()
    local = struct.pack(
        "<4sHHHHHIIIHH",
        LOCAL,
        20,
        0,
        8,
        0,
        0x21,
        crc,
        len(compressed),
        size,
        len(encoded),
        0,
    )
    central = struct.pack(
        "<4sHHHHHHIIIHHHHHII",
        CENTRAL,
        20,
        20,
        0,
        8,
        0,
        0x21,
        crc,
        len(compressed),
        size,
        len(encoded),
        0,
        0,
        0,
        0,
        0,
        0,
    )
    body = local + encoded + compressed
    directory = central + encoded
    end = struct.pack(
        "<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(directory), len(body), 0
    )
    return body + directory + end


def concatenated(first: bytes, second: bytes) -> bytes:
    """One zip with the members of ``first``, then those of ``second`` (copied as bytes,
    so damaged members stay as damaged as they were)."""
    end_first = first.rfind(b"PK\x05\x06")
    count_first, size_first, start_first = struct.unpack_from(
        "<HII", first, end_first + 10
    )
    end = second.rfind(b"PK\x05\x06")
    count, size, start = struct.unpack_from("<HII", second, end + 10)
    body_first = first[:start_first]
    directory = bytearray(second[start : start + size])
    offset = 0
    while offset < len(directory):  # each local header moves by the first's size
        name_length, extra_length, comment_length = struct.unpack_from(
            "<HHH", directory, offset + 28
        )
        (local,) = struct.unpack_from("<I", directory, offset + 42)
        struct.pack_into("<I", directory, offset + 42, local + len(body_first))
        offset += 46 + name_length + extra_length + comment_length
    directory = first[start_first : start_first + size_first] + bytes(directory)
    total = count_first + count
    end_record = struct.pack(
        "<4sHHHHIIH",
        b"PK\x05\x06",
        0,
        0,
        total,
        total,
        len(directory),
        len(body_first) + start,
        0,
    )
    return body_first + second[:start] + directory + end_record


# --- notebook JSON mutations ---------------------------------------------------------


@dataclass
class Mutation:
    """One malformed variant of a notebook: its name and its file's bytes."""

    name: str
    data: bytes
    structural: (
        bool  # True: valid JSON whose structure changed (nbformat's schema decides)
    )


WRONG_VALUES = {
    "null": None,
    "true": True,
    "zero": 0,
    "negative": -7,
    "float": 2.5,
    "empty_string": "",
    "string": "x",
    "empty_list": [],
    "list": [1, "a", None],
    "empty_object": {},
    "object": {"a": [1, {"b": None}]},
}

DUPLICATE_MARKER = "@@duplicate-key@@"


def _places(node, path=(), depth=0, limit=4):
    """Every (path, value) in ``node``, ``limit`` levels down (paths: key tuples)."""
    yield path, node
    if depth >= limit or not isinstance(node, (dict, list)):
        return
    for key, value in node.items() if isinstance(node, dict) else enumerate(node):
        yield from _places(value, (*path, key), depth + 1, limit)


def _replaced(nb: dict, path: tuple, value):
    nb = json.loads(json.dumps(nb))
    if not path:
        return value
    parent = nb
    for key in path[:-1]:
        parent = parent[key]
    if value is _DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return nb


_DELETE = object()


def _duplicated_key(nb: dict, path: tuple) -> bytes:
    """The notebook's text with the key at ``path`` written twice (first with [])."""
    parent = {}
    for key, value in _at(nb, path[:-1]).items():
        if key == path[-1]:
            parent[DUPLICATE_MARKER] = None
        parent[key] = value
    text = json.dumps(_replaced(nb, path[:-1], parent))
    return text.replace(f'"{DUPLICATE_MARKER}": null', f'"{path[-1]}": []').encode()


def _deep(depth: int, opener: str = "[") -> str:
    """A JSON value nested ``depth`` levels: lists (``[``) or objects (``{``)."""
    if opener == "[":
        return "[" * depth + "1" + "]" * depth
    return '{"a": ' * depth + "1" + "}" * depth


def mutations(nb: dict, count: int, seed: int = 0) -> list[Mutation]:
    """``count`` variants of ``nb`` (a released notebook as JSON data), reproducible.

    Structural variants: a value replaced by one of another type, or deleted, at a place
    chosen among the notebook's first four levels (its metadata, each cell's keys, each
    cell's nbgrader metadata). Textual variants (always invalid JSON for a notebook):
    duplicated keys, nesting deeper than any notebook, huge numbers, NaN, bytes that
    are not UTF-8, a file larger than the grader's limit.
    """
    chooser = random.Random(seed)
    places = [  # (the lines of a cell's source are text, not structure)
        path for path, _ in _places(nb) if path and "source" not in path[:-1]
    ]
    dict_places = [path for path in places if isinstance(_at(nb, path[:-1]), dict)]
    text = json.dumps(nb)
    found: list[Mutation] = [
        Mutation(
            "deep_list_100000", _splice(nb, ("metadata", "deep"), _deep(100000)), False
        ),
        Mutation(
            "deep_object_5000",
            _splice(nb, ("metadata", "deep"), _deep(5000, "{")),
            False,
        ),
        Mutation(
            "deep_in_cell_300",
            _splice(nb, ("cells", 1, "metadata", "x"), _deep(300)),
            False,
        ),
        Mutation(
            "huge_integer",
            _splice(nb, ("cells", 1, "execution_count"), "9" * 5000),
            False,
        ),
        Mutation("nan", _splice(nb, ("metadata", "nan"), "NaN"), False),
        Mutation("infinity", _splice(nb, ("metadata", "big"), "1e999"), False),
        Mutation(
            "not_utf8",
            text.encode().replace(b"memory cell", b"memory \xff\xfe cell", 1),
            False,
        ),
        Mutation("utf16", text.encode("utf-16"), False),
        Mutation("truncated", text.encode()[: len(text) // 2], False),
        Mutation("empty_file", b"", False),
        Mutation("top_level_list", b"[]", False),
        Mutation(
            "oversized",
            _splice(nb, ("metadata", "pad"), '"' + "x" * (21 << 20) + '"'),
            False,
        ),
    ]
    while len(found) < count:
        kind = chooser.random()
        if kind < 0.15 and dict_places:
            path = chooser.choice(dict_places)
            found.append(
                Mutation(f"duplicate_{_label(path)}", _duplicated_key(nb, path), False)
            )
        elif kind < 0.3:
            path = chooser.choice(places)
            if isinstance(_at(nb, path[:-1]), dict):
                data = json.dumps(_replaced(nb, path, _DELETE)).encode()
                found.append(Mutation(f"missing_{_label(path)}", data, True))
        else:
            path = chooser.choice(places)
            label, value = chooser.choice(sorted(WRONG_VALUES.items()))
            if type(value) is type(_at(nb, path)) and value == _at(nb, path):
                continue
            data = json.dumps(_replaced(nb, path, value)).encode()
            found.append(Mutation(f"{label}_at_{_label(path)}", data, True))
    return found[:count]


def _at(nb, path):
    for key in path:
        nb = nb[key]
    return nb


def _label(path: tuple) -> str:
    return ".".join(str(key) for key in path).replace("_", "-")


def _splice(nb: dict, path: tuple, raw_json: str) -> bytes:
    """The notebook's text with the raw JSON text ``raw_json`` at ``path``."""
    marker = "@@raw-value@@"
    text = json.dumps(_replaced(nb, path, marker))
    return text.replace(f'"{marker}"', raw_json).encode()
