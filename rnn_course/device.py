"""Devices, seeds and deterministic settings (used by every chapter and by grading).

The course runs the same code on a laptop CPU, an NVIDIA GPU (CUDA) or an Apple GPU
(MPS). Code takes a ``device`` argument instead of assuming one; :func:`get_device`
picks the best one available, and :func:`make_deterministic` fixes everything that
changes printed numbers between runs: the random seeds, the number of CPU threads and
the non-deterministic GPU kernels.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

DEFAULT_SEED = 0
DEFAULT_THREADS = 1


def get_device(prefer: str | torch.device | None = None) -> torch.device:
    """Return the device to compute on.

    ``prefer`` may name a device ("cpu", "cuda", "cuda:1", "mps"); without it the best
    available one is chosen, in the order CUDA, MPS, CPU. Asking for a device this
    machine does not have is an error rather than a silent fall-back to the CPU.
    """
    if prefer is not None:
        device = torch.device(prefer)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"device {str(device)!r} was asked for, but CUDA is not available "
                "here; "
                "use 'cpu' or leave the device unset to pick the best available one"
            )
        if device.type == "mps" and not _mps_available():
            raise RuntimeError(
                "device 'mps' was asked for, but Apple's MPS backend is not available "
                "here; "
                "use 'cpu' or leave the device unset"
            )
        if device.type not in ("cpu", "cuda", "mps"):
            raise ValueError(
                f"unsupported device type {device.type!r}; expected 'cpu', 'cuda' or "
                "'mps'"
            )
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def seed_everything(seed: int = DEFAULT_SEED) -> None:
    """Seed Python's, NumPy's and PyTorch's random generators (CPU and every GPU)."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def make_deterministic(
    seed: int = DEFAULT_SEED, threads: int = DEFAULT_THREADS
) -> None:
    """Make results repeatable, as grading and the book's stored outputs need.

    Seeds are not enough: a float sum split over two CPU threads can differ in its last
    bits from the same sum on one thread, so the thread count is fixed too. On CUDA,
    TF32 matrix products are switched off (they round to ~10 bits) and PyTorch is asked
    for deterministic kernels; cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG`` for that, set
    here if it is unset.
    """
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    seed_everything(seed)
    torch.set_num_threads(threads)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.use_deterministic_algorithms(True, warn_only=True)


def describe_device(device: torch.device) -> str:
    """A one-line description of ``device`` for printing in a chapter."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "mps":
        return "mps (Apple GPU)"
    threads = torch.get_num_threads()
    return f"cpu ({threads} thread{'s' if threads != 1 else ''})"
