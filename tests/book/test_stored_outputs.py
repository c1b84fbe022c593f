"""Every chapter's stored outputs are what its code prints when it runs, compared with the run that
built the book (``make book`` executes every chapter into ``_build/.jupyter_cache``).

This is nbval's comparison (the same fields skipped, the same sanitizing patterns from
``tests/nbval_sanitize.cfg``, the same cell tags: ``nbval-ignore-output``, ``nbval-skip``,
``raises-exception``) applied to the book's own execution, so ``make test`` runs each chapter
once instead of twice. A chapter whose code changed since the book was built has no matching
run: the test says to run ``make book``.
"""

from __future__ import annotations

import configparser
import re
from collections import defaultdict
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHAPTERS = sorted((ROOT / "book").glob("*.ipynb"))
SKIPPED_FIELDS = {
    "metadata",
    "traceback",
    "prompt_number",
    "output_type",
    "name",
    "execution_count",
    "application/vnd.jupyter.widget-view+json",  # model ids are random
    "image/png",  # figures: compared by the browser test, not byte for byte
    "image/jpeg",
}


def _patterns() -> list[tuple[re.Pattern, str]]:
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "tests" / "nbval_sanitize.cfg")
    return [
        (re.compile(config[section]["regex"]), config[section].get("replace", ""))
        for section in config.sections()
    ]


PATTERNS = _patterns()


def _sanitize(value):
    if not isinstance(value, str):
        return value
    for pattern, replacement in PATTERNS:
        value = pattern.sub(replacement, value)
    return value


def _fields(outputs) -> dict[str, list]:
    """nbval's view of a cell's outputs: field (or MIME type) -> its sanitized values in order;
    each stream as one text (nbval coalesces them too); a stream that sanitizes to nothing (a
    warning the patterns remove) is no output."""
    fields = defaultdict(list)
    streams = defaultdict(
        str
    )  # a stream's text, however the kernel cut it into outputs
    for output in outputs:
        if output.get("output_type") == "stream":
            streams[output["name"]] += output.get("text", "")
            continue
        for key, value in output.items():
            if key in SKIPPED_FIELDS:
                continue
            if key == "data":
                for kind, data in value.items():
                    if kind not in SKIPPED_FIELDS:
                        fields[kind].append(_sanitize(data))
            else:
                fields[key].append(_sanitize(value))
    for name, text in streams.items():
        if _sanitize(text):
            fields[name].append(_sanitize(text))
    return dict(fields)


def _executed(chapter: Path):
    from jupyter_cache import get_cache

    cache_folder = ROOT / "_build" / ".jupyter_cache"
    if not cache_folder.is_dir():
        pytest.fail(
            "no executed chapters in _build/.jupyter_cache: run `make book` first"
        )
    stored = nbformat.read(chapter, as_version=4)
    try:
        record = get_cache(cache_folder).match_cache_notebook(stored)
    except KeyError:
        pytest.fail(f"{chapter.name} changed since the book was built: run `make book`")
    bundle = get_cache(cache_folder).get_cache_bundle(record.pk)
    return stored, bundle.nb


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[path.name for path in CHAPTERS])
def test_the_stored_outputs_are_what_the_chapter_prints(chapter):
    stored, executed = _executed(chapter)
    code = [cell for cell in stored.cells if cell.cell_type == "code"]
    ran = [cell for cell in executed.cells if cell.cell_type == "code"]
    assert len(code) == len(ran)
    compared = 0
    for number, (cell, run) in enumerate(zip(code, ran), start=1):
        tags = set(cell.metadata.get("tags", []))
        if "nbval-skip" in tags:
            continue
        errors = [o for o in run.outputs if o.get("output_type") == "error"]
        if "raises-exception" in tags:
            assert errors, f"{chapter.name} code cell {number} should raise and did not"
            continue
        assert not errors, (
            f"{chapter.name} code cell {number} raised {errors[0]['ename']}"
        )
        if "nbval-ignore-output" in tags:
            continue
        assert _fields(run.outputs) == _fields(cell.outputs), (
            f"{chapter.name} code cell {number}: the stored output differs from the run's "
            "(re-run `make outputs` if the change is intended)"
        )
        compared += 1
    assert compared > 0
