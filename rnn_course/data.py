"""Real and synthetic sequences (chapter 1, "A neuron without memory"; used again in
chapter 6).

The real data are NOAA's daily weather records for Seattle, 2012-2015, shipped inside
the package (``data/seattle-weather.csv``; source and licence in ``data/SOURCE.md``), so
every chapter runs offline. The steps a forecaster needs, in order:

1. :func:`load_seattle_weather` reads the file into tensors, one value per day;
2. :func:`split_by_time` cuts the days into train / validation / test periods, in that
   order, so that no model ever sees a day from the future of the period it is tested
   on;
3. :class:`Standardizer` learns a mean and a standard deviation from the training period
   only;
4. :func:`make_windows` turns a series into (window of past days, next day) pairs, in
   PyTorch's (sequence, batch, feature) layout or batch-first.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from dataclasses import dataclass
from importlib import resources

import torch

from .validate import require_positive_int, require_series, require_tensor

WEATHER_FILE = "seattle-weather.csv"
NUMERIC_COLUMNS = ("precipitation", "temp_max", "temp_min", "wind")


@dataclass
class WeatherData:
    """Daily Seattle weather: one entry per day, oldest first."""

    dates: list[dt.date]  # len == days
    values: dict[str, torch.Tensor]  # column name -> (days,)
    labels: list[str]  # the "weather" column: "rain", "sun", ...

    def __len__(self) -> int:
        return len(self.dates)


def load_seattle_weather(dtype: torch.dtype = torch.float32) -> WeatherData:
    """Read the shipped NOAA file: precipitation (mm), temp_max and temp_min (°C), wind
    (m/s).
    """
    text = (
        resources.files(__package__)
        .joinpath("data", WEATHER_FILE)
        .read_text(encoding="utf-8")
    )
    rows = list(csv.DictReader(text.splitlines()))
    dates = [dt.datetime.strptime(row["date"], "%Y/%m/%d").date() for row in rows]
    values = {
        name: torch.tensor([float(row[name]) for row in rows], dtype=dtype)
        for name in NUMERIC_COLUMNS
    }
    for name, column in values.items():
        require_tensor(
            column, f"column {name!r} of {WEATHER_FILE}", ndim=1
        )  # no missing values
    return WeatherData(
        dates=dates, values=values, labels=[row["weather"] for row in rows]
    )


def load_daily_temperatures(
    column: str = "temp_max", dtype: torch.dtype = torch.float32
):
    """Return ``(dates, temperatures)``: a list of dates and a (days,) tensor in °C."""
    if column not in ("temp_max", "temp_min"):
        raise ValueError(f"column must be 'temp_max' or 'temp_min', got {column!r}")
    weather = load_seattle_weather(dtype)
    return weather.dates, weather.values[column]


@dataclass(frozen=True)
class TimeSplit:
    """Index ranges of three consecutive periods: ``series[split.train]`` and so on."""

    train: slice
    validation: slice
    test: slice


def split_by_time(
    num_days: int, train_fraction: float = 0.7, validation_fraction: float = 0.15
) -> TimeSplit:
    """Cut ``num_days`` consecutive days into train, validation and test periods, in
    time order.

    A random split would put days from the test period's past *and future* into
    training, so a model could interpolate instead of forecast; consecutive periods keep
    the test honest.
    """
    require_positive_int(num_days, "num_days")
    if not (
        0 < train_fraction < 1
        and 0 <= validation_fraction < 1
        and train_fraction + validation_fraction < 1
    ):
        raise ValueError(
            "expected 0 < train_fraction < 1, 0 <= validation_fraction < 1 and their "
            "sum < 1 "
            f"(the rest is the test period), got {train_fraction} and "
            f"{validation_fraction}"
        )
    train_end = math.floor(num_days * train_fraction)
    validation_end = train_end + math.floor(num_days * validation_fraction)
    if train_end < 1 or validation_end >= num_days:
        raise ValueError(
            f"{num_days} days are too few to split into non-empty train and test "
            "periods"
        )
    return TimeSplit(
        slice(0, train_end),
        slice(train_end, validation_end),
        slice(validation_end, num_days),
    )


class Standardizer:
    """Shift and scale a series to mean 0 and standard deviation 1, using the training
    period only.

    Fitting on all the data would leak the test period's mean into training.
    """

    def __init__(self) -> None:
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None

    def fit(self, train_series: torch.Tensor) -> Standardizer:
        require_tensor(train_series, "train_series")
        if train_series.shape[0] < 2:
            raise ValueError(
                "need at least 2 training values to estimate a spread, got "
                f"{train_series.shape[0]}"
            )
        self.mean = train_series.mean(dim=0)
        self.std = train_series.std(dim=0)
        if (self.std == 0).any():
            raise ValueError(
                "the training series is constant: its standard deviation is 0, so it "
                "cannot be scaled"
            )
        return self

    def _fitted(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mean is None or self.std is None:
            raise RuntimeError("call fit(train_series) before transform or inverse")
        return self.mean, self.std

    def transform(self, series: torch.Tensor) -> torch.Tensor:
        mean, std = self._fitted()
        return (series - mean.to(series)) / std.to(series)

    def inverse(self, scaled: torch.Tensor) -> torch.Tensor:
        mean, std = self._fitted()
        return scaled * std.to(scaled) + mean.to(scaled)


def make_windows(
    series: torch.Tensor,
    window: int,
    batch_first: bool = False,
    target_feature: int = 0,
):
    """Cut a series into every (``window`` consecutive days, the next day's value) pair.

    ``series`` is (days,) or (days, features). Returns ``(inputs, targets)`` with
    inputs (window, num_windows, features) — or (num_windows, window, features) when
    ``batch_first`` — and targets (num_windows, 1): the value of ``target_feature`` on
    the day right after each window. Window ``i`` covers days ``i .. i+window-1`` and
    its target is day ``i+window``.
    """
    series = require_series(series)  # (days, features)
    require_positive_int(window, "window")
    days, features = series.shape
    if not 0 <= target_feature < features:
        raise ValueError(
            f"target_feature must be in [0, {features}), got {target_feature}"
        )
    num_windows = days - window
    if num_windows < 1:
        raise ValueError(
            f"a window of {window} days plus a next-day target needs at least "
            f"{window + 1} days, "
            f"the series has {days}"
        )
    windows = series.unfold(0, window, 1)[
        :num_windows
    ]  # (num_windows, features, window)
    inputs = windows.permute(2, 0, 1).contiguous()  # (window, num_windows, features)
    targets = series[
        window:, target_feature : target_feature + 1
    ].clone()  # (num_windows, 1)
    if batch_first:
        inputs = inputs.transpose(0, 1).contiguous()  # (num_windows, window, features)
    return inputs, targets


def noisy_sine_sequences(
    num_sequences: int,
    length: int,
    noise: float = 0.05,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Synthetic data for quick experiments: sine waves with random phase and period,
    plus noise.

    Returns (length, num_sequences, 1), in the (sequence, batch, feature) layout.
    """
    require_positive_int(num_sequences, "num_sequences")
    require_positive_int(length, "length")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    generator = torch.Generator().manual_seed(seed)
    phase = (
        torch.rand(1, num_sequences, generator=generator, dtype=dtype) * 2 * math.pi
    )  # (1, batch)
    period = 8 + 24 * torch.rand(
        1, num_sequences, generator=generator, dtype=dtype
    )  # (1, batch)
    time = torch.arange(length, dtype=dtype).unsqueeze(1)  # (length, 1)
    clean = torch.sin(2 * math.pi * time / period + phase)  # (length, batch)
    noisy = clean + noise * torch.randn(
        length, num_sequences, generator=generator, dtype=dtype
    )
    return noisy.unsqueeze(2)  # (length, batch, 1)
