"""Sphinx extension: execute the chapters that are not in the execution cache, several
at a time, before myst-nb reads them.

myst-nb's ``cache`` mode executes a notebook while it reads it, one page after another,
so the build runs one kernel while the other cores idle (eight chapters, about 65 s on
one core). This extension runs those kernels side by side when Sphinx is about to read
the pages, and stores each executed notebook in the same jupyter-cache that myst-nb
looks up. myst-nb then finds every chapter in the cache ("Using cached notebook"), and
nothing else about the build changes.

It does only what myst-nb would have done: the same execution function of
jupyter-cache, with the settings myst-nb applies to that notebook (the working folder,
the timeout, ``allow_errors``, the notebook's own ``mystnb`` metadata). A chapter that
myst-nb would not execute in cache mode is left alone, as is every chapter when kernel
aliases are configured. A chapter that fails here is left out of the cache: myst-nb
executes it again, as before, and reports the error itself.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from pathlib import Path, PurePosixPath

import nbformat
from jupyter_client.manager import AsyncKernelManager
from sphinx.util import logging

logger = logging.getLogger(__name__)


def setup(app):
    app.connect("env-before-read-docs", execute_uncached_notebooks)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def execute_uncached_notebooks(app, env, docnames):
    """Fill myst-nb's cache with the notebooks about to be read that are not in it."""
    config = env.mystnb_config  # myst-nb's own settings, made when the builder started
    if config.kernel_rgx_aliases:  # they rename kernels, which changes the cache's keys
        return
    from jupyter_cache import get_cache

    cache = get_cache(config.execution_cache_path)
    todo = {}  # path: the settings myst-nb will execute it with
    for path in (Path(env.doc2path(name)) for name in sorted(docnames)):
        if path.suffix != ".ipynb":
            continue
        notebook = nbformat.read(path, as_version=4)
        settings = _settings(path, notebook, config)
        if settings is not None and not _in_cache(notebook, cache):
            todo[path] = settings
    if not todo:
        return
    workers = min(len(todo), len(os.sched_getaffinity(0)))
    logger.info(f"Executing {len(todo)} notebook(s), {workers} at a time")
    # spawn, not fork: each worker starts clean instead of copying the Sphinx process.
    context = multiprocessing.get_context("spawn")
    start_lock = context.Lock()  # one kernel start at a time: see OneStartAtATime
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_keep, initargs=(start_lock,)
    ) as pool:
        jobs = {
            path: pool.submit(
                _execute,
                str(path),
                settings.execution_timeout,
                settings.execution_allow_errors,
                settings.execution_in_temp,
            )
            for path, settings in todo.items()
        }
        for path, job in jobs.items():
            try:
                text, seconds, error = job.result()
            except Exception as crash:  # a worker died: myst-nb still has its turn
                text, seconds, error = "", 0.0, f"{type(crash).__name__}: {crash}"
            if error:
                logger.info(f"{path.name} failed here; myst-nb runs it again: {error}")
                continue
            _store(cache, path, nbformat.reads(text, as_version=4), seconds)
            logger.info(f"{path.name}: executed in {seconds:.2f} seconds")


def _settings(path, notebook, config):
    """The settings myst-nb applies to ``path``, or None where it would not execute it
    in cache mode.

    A notebook's own ``mystnb`` metadata overrides the global settings, as in myst-nb's
    parser (``sphinx_.py``).
    """
    posix_path = PurePosixPath(path.as_posix())
    if any(posix_path.match(pattern) for pattern in config.execution_excludepatterns):
        return None
    overrides = dict(notebook.metadata.get(config.metadata_key, {}))
    overrides.pop("output_folder", None)  # myst-nb does not let a notebook set it
    try:
        settings = config.copy(**overrides)
    except Exception:  # myst-nb warns about it when it reads the page
        return None
    return settings if settings.execution_mode == "cache" else None


def _in_cache(notebook, cache):
    try:
        cache.match_cache_notebook(notebook)
    except KeyError:
        return False
    return True


_start_lock = None  # in a worker process: the lock its kernel starts take


def _keep(start_lock):
    """Run once in each worker process, with the lock the workers share."""
    global _start_lock
    _start_lock = start_lock


class OneStartAtATime(AsyncKernelManager):
    """A kernel manager whose kernel starts, in all the workers, happen one at a time.

    jupyter_client picks a kernel's five TCP ports by asking the system for free ones,
    then lets them go for the kernel to bind a moment later. A kernel starting in
    another process at that moment can be given the same ports, and one of the two
    dies with "Address already in use". Holding the workers' lock from the choice of
    the ports until the kernel answers (its ports are bound by then) closes that gap.
    """

    async def start_kernel(self, **kwargs):
        with _start_lock:
            await super().start_kernel(**kwargs)
            client = self.client()
            client.start_channels()
            try:
                await client.wait_for_ready(timeout=60)
            finally:
                client.stop_channels()


def _execute(path, timeout, allow_errors, in_temp):
    """Run in a worker process: execute one notebook as myst-nb's cache mode does.

    Returns the executed notebook as JSON text, the seconds it took, and the error's
    text (empty when it ran).
    """
    from encrypted_kernels import use_curve_keys
    from jupyter_cache.executors.utils import single_nb_execution

    use_curve_keys()  # the build's kernels talk over CurveZMQ (encrypted_kernels.py)
    notebook = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    # (as myst-nb's cache mode: a temporary folder, or the notebook's own)
    folder = (
        tempfile.TemporaryDirectory() if in_temp else nullcontext(Path(path).parent)
    )
    with folder as cwd:
        result = single_nb_execution(
            notebook,
            cwd=str(cwd),
            allow_errors=allow_errors,
            timeout=timeout,
            meta_override=True,
            kernel_manager_class=OneStartAtATime,
        )
    if result.err is not None:
        return "", time.perf_counter() - started, f"{type(result.err).__name__}"
    return nbformat.writes(notebook), result.time, ""


def _store(cache, path, notebook, seconds):
    """Cache ``notebook`` as myst-nb's cache mode stores a notebook it executed."""
    from jupyter_cache.base import CacheBundleIn

    record = cache.add_nb_to_project(str(path))
    cache.cache_notebook_bundle(
        CacheBundleIn(notebook, record.uri, data={"execution_seconds": seconds}),
        check_validity=False,
        overwrite=True,
    )
