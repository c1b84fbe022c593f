"""Every line of code fits the book's 88-character column, and the code passes the lint.

ruff formats and lints the package, the tests, the benchmarks and the notebooks of book/
and solutions/ alike (exercises/ is generated from solutions/); its settings are in
pyproject.toml. Markdown code blocks are not ruff's business: a last test measures them.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PATHS = ["rnn_course", "tests", "benchmarks", "book", "solutions"]
LINE_LENGTH = 88
FENCE = re.compile(r"^(```|~~~)")


def run_ruff(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "ruff", *args, *PATHS]
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_code_is_formatted_by_ruff():
    result = run_ruff("format", "--check")
    assert result.returncode == 0, (
        f"ruff format would change these files; run `ruff format {' '.join(PATHS)}` "
        "(then `make exercises` if solutions/ changed):\n"
        f"{result.stdout}{result.stderr}"
    )


def test_code_passes_ruff_check():
    result = run_ruff("check", "--output-format", "concise")
    assert result.returncode == 0, (
        f"ruff check found problems (`ruff check --fix` mends some):\n"
        f"{result.stdout}{result.stderr}"
    )


def fenced_code_lines(markdown: str):
    """The lines of code blocks (``` or ~~~ fences) in a markdown text; a MyST directive
    (```{exercise}, ```{solution}) holds prose, which wraps, not code."""
    fence = None  # None outside a fence, else (is_code)
    for line in markdown.splitlines():
        stripped = line.strip()
        if FENCE.match(stripped):
            fence = (not stripped[3:].startswith("{")) if fence is None else None
        elif fence:
            yield line


def test_markdown_code_blocks_fit_the_column():
    too_long = []
    for page in sorted((ROOT / "book").glob("*.ipynb")) + sorted(
        ROOT.glob("book/*.md")
    ):
        if page.suffix == ".ipynb":
            cells = json.loads(page.read_text())["cells"]
            texts = [
                "".join(c["source"]) for c in cells if c["cell_type"] == "markdown"
            ]
        else:
            texts = [page.read_text()]
        for text in texts:
            too_long += [
                f"{page.name}: {line[:60]}… ({len(line)})"
                for line in fenced_code_lines(text)
                if len(line) > LINE_LENGTH
            ]
    assert not too_long, "code lines in markdown wider than 88:\n" + "\n".join(too_long)


def test_fenced_code_lines_are_found():
    """The helper above finds code in fences and nothing else (so the test can fail)."""
    text = "prose " * 30 + "\n```python\n" + "x" * 90 + "\n```\nmore prose"
    directive = "```{exercise}\n" + "word " * 30 + "\n```\n"
    assert [len(line) for line in fenced_code_lines(directive + text)] == [90]
