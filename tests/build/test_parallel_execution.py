"""book/_ext/parallel_execution.py: chapters executed side by side must be what myst-nb
itself would find in its cache, and a failing chapter must be left for myst-nb."""

import sys
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from jupyter_cache import get_cache
from myst_nb.core.config import NbParserConfig
from myst_nb.core.execute import create_client

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "book" / "_ext"))

import parallel_execution  # noqa: E402  (book/_ext, as Jupyter Book's local_extensions)


def _notebook(path, *sources, **mystnb):
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    if mystnb:
        notebook.metadata["mystnb"] = mystnb
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(notebook, path)
    return path


class _Messages:
    """myst-nb's logger interface, keeping what it is told."""

    def __init__(self):
        self.lines = []

    def _keep(self, message, *args, **kwargs):
        self.lines.append(message)

    info = warning = debug = error = critical = _keep


def test_a_chapter_executed_here_is_found_by_myst_nb_and_a_failing_one_is_not(tmp_path):
    good = _notebook(tmp_path / "good.ipynb", "import os\nprint(os.getcwd())", "6 * 7")
    bad = _notebook(tmp_path / "bad.ipynb", "raise ValueError('a broken chapter')")
    config = NbParserConfig(
        execution_mode="cache", execution_cache_path=str(tmp_path / "cache")
    )
    env = SimpleNamespace(
        mystnb_config=config, doc2path=lambda name: str(tmp_path / f"{name}.ipynb")
    )
    parallel_execution.execute_uncached_notebooks(None, env, {"good", "bad"})

    cache = get_cache(config.execution_cache_path)
    with pytest.raises(KeyError):  # myst-nb executes it itself and reports the error
        cache.match_cache_notebook(nbformat.read(bad, as_version=4))

    messages = _Messages()
    read = nbformat.read(good, as_version=4)
    with create_client(read, str(good), config, messages) as client:
        executed = client.notebook
    assert any("Using cached notebook" in line for line in messages.lines), messages
    assert not any("Executing" in line for line in messages.lines), messages
    printed, value = (cell.outputs for cell in executed.cells)
    assert printed[0]["text"] == f"{tmp_path}\n"  # myst-nb's local working folder
    assert value[0]["data"]["text/plain"] == "42"


def _settings_of(path, config):
    notebook = nbformat.read(path, as_version=4)
    return parallel_execution._settings(path, notebook, config)


def test_the_settings_are_those_myst_nb_applies_to_the_notebook(tmp_path):
    config = NbParserConfig(
        execution_mode="cache",
        execution_timeout=30,
        execution_excludepatterns=["*/skipped.ipynb"],
    )
    own = _notebook(tmp_path / "own.ipynb", "1", execution_timeout=7)
    off = _notebook(tmp_path / "off.ipynb", "1", execution_mode="off")
    skipped = _notebook(tmp_path / "skipped.ipynb", "1")
    plain = _notebook(tmp_path / "plain.ipynb", "1")

    assert _settings_of(own, config).execution_timeout == 7
    assert _settings_of(plain, config).execution_timeout == 30
    assert _settings_of(off, config) is None
    assert _settings_of(skipped, config) is None


def test_a_worker_starts_its_kernel_only_while_no_other_worker_starts_one(tmp_path):
    """The workers' kernel starts take one lock (two starts at once can be given the
    same free ports): while the lock is held elsewhere, a worker's kernel waits."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures import TimeoutError as NotYet

    notebook = _notebook(tmp_path / "waits.ipynb", "6 * 7")
    context = multiprocessing.get_context("spawn")
    lock = context.Lock()
    with ProcessPoolExecutor(
        1,
        mp_context=context,
        initializer=parallel_execution._keep,
        initargs=(lock,),
    ) as pool:
        with lock:  # another worker's kernel is starting
            job = pool.submit(
                parallel_execution._execute, str(notebook), 30, False, False
            )
            with pytest.raises(NotYet):
                job.result(timeout=6)  # unlocked, it would be done in ~3 s
        text, _, error = job.result(timeout=120)
    assert error == ""
    executed = nbformat.reads(text, as_version=4)
    assert executed.cells[0].outputs[0]["data"]["text/plain"] == "42"
