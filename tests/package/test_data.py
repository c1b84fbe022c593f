"""Data loading, splitting by time, standardising and windowing (chapter 1)."""

import datetime as dt

import pytest
import torch

from rnn_course.data import (
    Standardizer,
    load_daily_temperatures,
    load_seattle_weather,
    make_windows,
    noisy_sine_sequences,
    split_by_time,
)


def test_seattle_weather_is_shipped_complete_and_ordered():
    weather = load_seattle_weather()
    assert len(weather) == 1461  # 2012-01-01 .. 2015-12-31, 2012 is a leap year
    assert weather.dates[0] == dt.date(2012, 1, 1) and weather.dates[-1] == dt.date(
        2015, 12, 31
    )
    assert all(
        b - a == dt.timedelta(days=1) for a, b in zip(weather.dates, weather.dates[1:])
    )
    # first row of the CSV: 2012/01/01,0.0,12.8,5.0,4.7,drizzle
    assert weather.values["temp_max"][0].item() == pytest.approx(12.8)
    assert weather.values["temp_min"][0].item() == pytest.approx(5.0)
    assert weather.values["wind"][0].item() == pytest.approx(4.7)
    assert weather.labels[0] == "drizzle"
    assert (weather.values["temp_max"] >= weather.values["temp_min"]).all()


def test_temperatures_dtype_and_bad_column():
    dates, temps = load_daily_temperatures("temp_min", dtype=torch.float64)
    assert temps.dtype == torch.float64 and temps.shape == (len(dates),)
    with pytest.raises(ValueError, match="column must be 'temp_max' or 'temp_min'"):
        load_daily_temperatures("humidity")


def test_split_by_time_is_consecutive_without_overlap():
    split = split_by_time(1461, 0.7, 0.15)
    days = torch.arange(1461)
    train, validation, test = (
        days[split.train],
        days[split.validation],
        days[split.test],
    )
    assert len(train) + len(validation) + len(test) == 1461
    assert (
        train.max() < validation.min() and validation.max() < test.min()
    )  # strictly in time order
    assert len(train) == 1022 and len(validation) == 219 and len(test) == 220
    assert not set(train.tolist()) & set(test.tolist())


@pytest.mark.parametrize("fractions", [(0.0, 0.1), (0.7, 0.3), (1.2, 0.0), (0.5, -0.1)])
def test_split_rejects_bad_fractions(fractions):
    with pytest.raises(ValueError, match="train_fraction"):
        split_by_time(100, *fractions)


def test_split_rejects_too_few_days():
    with pytest.raises(ValueError, match="too few"):
        split_by_time(2, 0.4, 0.3)


def test_standardizer_uses_training_period_only():
    series = torch.cat([torch.tensor([1.0, 2.0, 3.0]), torch.tensor([100.0, 200.0])])
    scaler = Standardizer().fit(series[:3])
    assert scaler.mean.item() == pytest.approx(2.0)
    assert scaler.std.item() == pytest.approx(1.0)  # sample std of 1, 2, 3
    torch.testing.assert_close(
        scaler.transform(series), torch.tensor([-1.0, 0.0, 1.0, 98.0, 198.0])
    )
    torch.testing.assert_close(scaler.inverse(scaler.transform(series)), series)


def test_standardizer_errors():
    with pytest.raises(RuntimeError, match="call fit"):
        Standardizer().transform(torch.ones(3))
    with pytest.raises(ValueError, match="constant"):
        Standardizer().fit(torch.ones(5))
    with pytest.raises(ValueError, match="contains NaN"):
        Standardizer().fit(torch.tensor([1.0, float("nan"), 2.0]))


def test_windows_line_up_with_next_day_targets():
    series = torch.arange(10.0)  # day i has value i
    inputs, targets = make_windows(series, window=3)
    assert inputs.shape == (3, 7, 1) and targets.shape == (7, 1)
    for i in range(7):
        assert inputs[:, i, 0].tolist() == [i, i + 1, i + 2]
        assert targets[i, 0].item() == i + 3  # the day right after the window
    batch_first_inputs, batch_first_targets = make_windows(
        series, window=3, batch_first=True
    )
    assert batch_first_inputs.shape == (7, 3, 1)
    assert torch.equal(batch_first_inputs, inputs.transpose(0, 1))
    assert torch.equal(batch_first_targets, targets)


def test_windows_with_several_features_and_target_feature():
    series = torch.stack(
        [torch.arange(6.0), 10 * torch.arange(6.0)], dim=1
    )  # (days, 2)
    inputs, targets = make_windows(series, window=2, target_feature=1)
    assert inputs.shape == (2, 4, 2)
    assert inputs[:, 0].tolist() == [[0.0, 0.0], [1.0, 10.0]]
    assert targets[:, 0].tolist() == [20.0, 30.0, 40.0, 50.0]


def test_window_errors_name_what_was_expected():
    with pytest.raises(ValueError, match="needs at least 6 days, the series has 5"):
        make_windows(torch.arange(5.0), window=5)
    with pytest.raises(ValueError, match="window must be a positive int"):
        make_windows(torch.arange(5.0), window=0)
    with pytest.raises(ValueError, match="series contains NaN"):
        make_windows(torch.tensor([1.0, float("nan"), 3.0, 4.0]), window=2)
    with pytest.raises(ValueError, match=r"\(days,\) or \(days, features\)"):
        make_windows(torch.zeros(4, 2, 2), window=2)
    with pytest.raises(TypeError, match="series must be a torch.Tensor"):
        make_windows([1.0, 2.0, 3.0], window=1)
    with pytest.raises(ValueError, match="target_feature"):
        make_windows(torch.zeros(5, 2), window=2, target_feature=2)


def test_noisy_sines_shape_determinism_and_range():
    a = noisy_sine_sequences(4, 30, noise=0.0, seed=3)
    b = noisy_sine_sequences(4, 30, noise=0.0, seed=3)
    assert a.shape == (30, 4, 1) and torch.equal(a, b)
    assert a.abs().max() <= 1.0 + 1e-6
    assert not torch.equal(a, noisy_sine_sequences(4, 30, noise=0.0, seed=4))
    with pytest.raises(ValueError, match="noise must be >= 0"):
        noisy_sine_sequences(2, 5, noise=-1)
