"""A neuron without memory (chapter 1).

A neuron computes ŷ = f(x·wᵀ + b): a weighted sum of its inputs plus a bias, through an
activation f (none, for forecasting a temperature). Seeing one day it can only map
today's temperature to tomorrow's; the "fixed window" predictor gives it one input per
past day. Neither remembers anything between calls: that is what chapter 2's memory cell
adds.
"""

from __future__ import annotations

import torch

from .validate import require_positive_int, require_tensor


class Neuron(torch.nn.Module):
    """ŷ = activation(x·wᵀ + b), with ``weight`` (1, in_features) and ``bias`` (1,) like
    ``nn.Linear``.
    """

    def __init__(
        self,
        in_features: int = 1,
        activation=None,
        dtype: torch.dtype = torch.float32,
        device=None,
    ):
        super().__init__()
        require_positive_int(in_features, "in_features")
        self.in_features = in_features
        self.activation = activation
        self.weight = torch.nn.Parameter(
            torch.zeros(1, in_features, dtype=dtype, device=device)
        )  # (1, in)
        self.bias = torch.nn.Parameter(
            torch.zeros(1, dtype=dtype, device=device)
        )  # (1,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        require_tensor(x, "x", ndim=2, shape_hint="(batch, in_features)")
        if x.shape[1] != self.in_features:
            raise ValueError(
                f"x must be (batch, {self.in_features}), got {tuple(x.shape)}"
            )
        z = x @ self.weight.T + self.bias  # (batch, 1)
        return z if self.activation is None else self.activation(z)


def window_to_features(inputs: torch.Tensor, batch_first: bool = False) -> torch.Tensor:
    """Flatten windows from :func:`rnn_course.data.make_windows` into one row of
    features each.

    (window, batch, features) -> (batch, window * features): "one input per past day".
    """
    require_tensor(inputs, "inputs", ndim=3, shape_hint="(window, batch, features)")
    if not batch_first:
        inputs = inputs.transpose(0, 1)  # (batch, window, features)
    return inputs.reshape(inputs.shape[0], -1)  # (batch, window * features)


def fit_least_squares(
    neuron: Neuron, features: torch.Tensor, targets: torch.Tensor
) -> Neuron:
    """Set a linear neuron's weight and bias to the least-squares solution (no training
    loop needed).

    ``features`` (batch, in_features), ``targets`` (batch, 1). The bias is the weight of
    an extra input that is always 1.
    """
    require_tensor(features, "features", ndim=2, shape_hint="(batch, in_features)")
    require_tensor(targets, "targets", ndim=2, shape_hint="(batch, 1)")
    if targets.shape != (features.shape[0], 1):
        raise ValueError(
            f"targets must be (batch, 1) = ({features.shape[0]}, 1), got "
            f"{tuple(targets.shape)}"
        )
    if features.shape[1] != neuron.in_features:
        raise ValueError(
            f"features must have {neuron.in_features} columns, got {features.shape[1]}"
        )
    ones = torch.ones(
        features.shape[0], 1, dtype=features.dtype, device=features.device
    )
    design = torch.cat([features, ones], dim=1)  # (batch, in_features + 1)
    solution = torch.linalg.lstsq(
        design.cpu().double(), targets.cpu().double()
    ).solution  # (in + 1, 1)
    with torch.no_grad():
        neuron.weight.copy_(solution[:-1].T.to(neuron.weight))
        neuron.bias.copy_(solution[-1].to(neuron.bias))
    return neuron


def persistence_forecast(
    inputs: torch.Tensor, batch_first: bool = False, target_feature: int = 0
) -> torch.Tensor:
    """The baseline every forecaster must beat: tomorrow will be like today. Returns
    (batch, 1).
    """
    require_tensor(inputs, "inputs", ndim=3, shape_hint="(window, batch, features)")
    last_day = inputs[:, -1] if batch_first else inputs[-1]  # (batch, features)
    return last_day[:, target_feature : target_feature + 1].clone()  # (batch, 1)


def climatology_forecast(
    dates, values: torch.Tensor, fit_days: slice, target_days
) -> torch.Tensor:
    """The calendar baseline of chapter 6: the mean of ``values`` on the same calendar
    day.

    For every index in ``target_days``, the mean of ``values`` over the days of
    ``fit_days`` (the training years) that share its month and day: a forecast that
    knows the season and nothing about the weather of the last days. ``dates`` holds one
    ``datetime.date`` per entry of ``values`` (days,). Returns (len(target_days),).
    """
    require_tensor(values, "values", ndim=1, shape_hint="(days,)")
    if len(dates) != values.shape[0]:
        raise ValueError(
            f"dates has {len(dates)} entries but values has {values.shape[0]}: "
            "give one date per value"
        )
    sums, counts = {}, {}
    for index in range(*fit_days.indices(len(dates))):
        day = (dates[index].month, dates[index].day)
        sums[day] = sums.get(day, 0.0) + values[index].item()
        counts[day] = counts.get(day, 0) + 1
    forecasts = []
    for index in target_days:
        day = (dates[int(index)].month, dates[int(index)].day)
        if day not in counts:
            raise ValueError(
                f"no day of the fitting period falls on {day[1]}/{day[0]} (day/month): "
                "fit on at least one full year"
            )
        forecasts.append(sums[day] / counts[day])
    return torch.tensor(forecasts, dtype=values.dtype)  # (len(target_days),)


def mean_absolute_error(predictions: torch.Tensor, targets: torch.Tensor) -> float:
    """Average |prediction - target|, in the targets' units (°C for temperatures)."""
    if predictions.shape != targets.shape:
        raise ValueError(
            f"predictions {tuple(predictions.shape)} and targets "
            f"{tuple(targets.shape)} "
            "must have the same shape"
        )
    return (predictions - targets).abs().mean().item()
