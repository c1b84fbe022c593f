"""nbgrader's sanitizing pass of ``autograde``, run by the worker before the sandbox.

``nbgrader autograde`` converts each submitted notebook twice: a *sanitizing* pass that
runs no student code (its ``Autograde.sanitize_preprocessors``: clear the outputs,
de-duplicate cell ids, take the kernelspec from the gradebook, put back the test and
locked cells as released -- also deleted ones, ``OverwriteCells.add_missing_cells`` --
and check the cell metadata), and an *execution* pass. Only the execution runs student
code, so only it runs in the sandbox (:mod:`.driver`); this module does the first pass
here, with nbgrader's own preprocessors and exporter, on a notebook that intake has
already read with bounds and validated (:mod:`.intake`). Each worker imports nbgrader
once for all its submissions instead of each sandbox importing it for one (about 0.6 s
of CPU per submission).

The folder it prepares is what the sandbox runs, laid out as ``autograde`` lays out
``autograded/<student>/<assignment>/``: the student's other files, then the release's
files that are not notebooks copied over them (as ``Autograde.init_assignment`` does),
and the sanitized notebook under the released name.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


class SanitizeError(Exception):
    """nbgrader refused the notebook in its sanitizing pass; the message says why."""


def release_gradebook_copy(release_dir: Path, folder: Path) -> str:
    """A private copy of the release's gradebook for this worker (nbgrader's
    ``Gradebook`` may write to the file it opens); returns its URL."""
    target = Path(folder) / f"sanitize-gradebook-{os.getpid()}.db"
    shutil.copyfile(Path(release_dir) / "gradebook.db", target)
    return f"sqlite:///{target}"


def prepare_submission(
    job: dict, release_dir: Path, assignment: str, db_url: str, folder: Path
) -> None:
    """Fill ``folder`` with what the sandbox runs (see the top); may raise
    SanitizeError."""
    folder.mkdir(parents=True)
    os.chmod(folder, 0o755)
    notebook = job["expected_notebook"]
    for name, path in job["files"].items():
        if name.endswith(".ipynb"):
            continue  # other notebooks are not graded (nbgrader would skip them too)
        _copy(Path(path), folder / name)
    source = Path(release_dir) / "source" / assignment
    for path in sorted(source.rglob("*")):
        if path.is_file() and path.suffix != ".ipynb":
            _copy(path, folder / path.relative_to(source))
    output = sanitized(
        Path(job["files"][job["notebook"]]), notebook, assignment, db_url
    )
    target = folder / notebook
    target.write_text(output, encoding="utf-8")
    os.chmod(target, 0o644)


def sanitized(path: Path, notebook: str, assignment: str, db_url: str) -> str:
    """The notebook at ``path`` after nbgrader's sanitizing preprocessors, as nbgrader
    writes it (``nbgrader.converters.base.BaseConverter.convert_single_notebook``)."""
    from nbconvert.exporters import NotebookExporter
    from nbgrader.converters import Autograde
    from traitlets.config import Config

    config = Config()
    config.OverwriteCells.add_missing_cells = True
    exporter = NotebookExporter(config=config)
    exporter._preprocessors = []  # (as Autograde._init_preprocessors does)
    for preprocessor in Autograde.class_traits()["sanitize_preprocessors"].default():
        exporter.register_preprocessor(preprocessor(config=config))
    resources = {
        "unique_key": Path(notebook).stem,
        "nbgrader": {
            "student": "student",
            "assignment": assignment,
            "notebook": Path(notebook).stem,
            "db_url": db_url,
        },
    }
    try:
        output, _ = exporter.from_filename(str(path), resources=resources)
    except Exception as error:  # noqa: BLE001 (nbgrader's refusals take many types)
        raise SanitizeError(f"{type(error).__name__}: {error}"[-2000:]) from error
    return output


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(target.parent, 0o755)
    if target.exists() or target.is_symlink():
        target.unlink()
    shutil.copyfile(source, target, follow_symlinks=False)
    os.chmod(target, 0o644)
