"""Input checks shared by the package: every bad input gets an error that says what was
expected.

These are plumbing, not teaching code; each chapter's functions call them first so that
a wrong shape fails at the call that caused it, with the names a reader knows from the
chapter.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def require_tensor(
    value, name: str, ndim: int | None = None, shape_hint: str = ""
) -> torch.Tensor:
    """Check that ``value`` is a floating-point tensor with ``ndim`` dimensions and no
    NaN."""
    hint = f" shaped {shape_hint}" if shape_hint else ""
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor{hint}, got {type(value).__name__}"
        )
    if not value.is_floating_point():
        raise TypeError(
            f"{name} must hold floating-point numbers (float32 or float64), "
            f"got {value.dtype}"
        )
    if ndim is not None and value.dim() != ndim:
        raise ValueError(
            f"{name} must have {ndim} dimensions{hint}, got shape {tuple(value.shape)}"
        )
    if value.numel() > 0 and torch.isnan(value).any():
        raise ValueError(
            f"{name} contains NaN; clean or impute the data before using it"
        )
    return value


def require_shape(
    value: torch.Tensor, name: str, expected: Sequence[int], meaning: str
) -> None:
    """Check an exact shape; ``meaning`` spells the dimensions, e.g.
    "(hidden_size, input_size)"."""
    if tuple(value.shape) != tuple(expected):
        raise ValueError(
            f"{name} must have shape {meaning} = {tuple(expected)}, "
            f"got {tuple(value.shape)}"
        )


def require_positive_int(value, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def require_same_device_dtype(
    reference: torch.Tensor, name: str, other: torch.Tensor, other_name: str
) -> None:
    if other.device != reference.device:
        raise ValueError(
            f"{other_name} is on {other.device} but {name} is on {reference.device}; "
            f"move them to the same device with .to(device)"
        )
    if other.dtype != reference.dtype:
        raise TypeError(
            f"{other_name} is {other.dtype} but {name} is {reference.dtype}; "
            f"convert one of them with .to(dtype)"
        )


def require_series(value, name: str = "series") -> torch.Tensor:
    """Check a daily series, (days,) or (days, features), and return it as
    (days, features)."""
    require_tensor(value, name, shape_hint="(days,) or (days, features)")
    if value.dim() == 1:
        value = value.unsqueeze(1)  # (days, 1)
    if value.dim() != 2:
        raise ValueError(
            f"{name} must be (days,) or (days, features), "
            f"got shape {tuple(value.shape)}"
        )
    return value
