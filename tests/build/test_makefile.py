"""The build's promises that are easy to break: the chapters re-execute when the package changes."""

import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGE_FILES = [
    "rnn_course/cell.py",
    "rnn_course/bptt.py",
    "rnn_course/data/seattle-weather.csv",
    "rnn_course/data/hamlet_gut.txt",
]


def dry_run(*arguments):
    result = subprocess.run(
        ["make", "--dry-run", *arguments], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("changed", PACKAGE_FILES)
def test_changing_the_package_wipes_the_execution_cache(changed):
    """jupyter-cache keys on code cells only: `make book` must drop it when rnn_course changes."""
    plan = dry_run("--what-if", changed, "book")
    assert "rm -rf _build/.jupyter_cache" in plan
    assert plan.index("rm -rf _build/.jupyter_cache") < plan.index("jupyter-book build")


def test_book_build_uses_warnings_as_errors_on_every_page():
    plan = dry_run("--always-make", "book")
    build = next(line for line in plan.splitlines() if "jupyter-book build" in line)
    for flag in ("--all", "-W", "-n", "--keep-going"):
        assert f" {flag}" in build, f"`make book` must build with {flag}: {build}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make book" in readme
    assert "\nmake test\n" in ci


def test_setup_installs_and_does_nothing_else():
    """`make setup` is the students' set-up step: the environment, no tests and no book
    build."""
    plan = dry_run("--always-make", "setup")
    assert "pip install" in plan and "--constraint constraints.txt" in plan
    for other in ("pytest", "jupyter-book", "nbgrader"):
        assert other not in plan, (
            f"`make setup` must only install; it runs {other}: {plan}"
        )
    students = (
        (ROOT / "README.md").read_text().split("## For students")[1].split("\n## ")[0]
    )
    assert "make setup" in students and "make test-package" not in students
