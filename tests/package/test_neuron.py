"""The neuron, the fixed-window predictor and the persistence baseline (chapter 1)."""

import numpy as np
import pytest
import torch

from rnn_course.data import make_windows
from rnn_course.neuron import (
    Neuron,
    fit_least_squares,
    mean_absolute_error,
    persistence_forecast,
    window_to_features,
)


def test_neuron_equals_nn_linear():
    torch.manual_seed(0)
    neuron = Neuron(in_features=3)
    linear = torch.nn.Linear(3, 1)
    with torch.no_grad():
        neuron.weight.copy_(linear.weight)
        neuron.bias.copy_(linear.bias)
    x = torch.randn(5, 3)
    torch.testing.assert_close(neuron(x), linear(x))
    torch.testing.assert_close(
        Neuron(3, activation=torch.tanh)(x), torch.zeros(5, 1)
    )  # zero weights -> tanh(0)


def test_least_squares_matches_numpy_polyfit():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(50, 1, generator=generator, dtype=torch.float64)
    y = (
        0.8 * x
        + 2.0
        + 0.1 * torch.randn(50, 1, generator=generator, dtype=torch.float64)
    )
    neuron = fit_least_squares(Neuron(1, dtype=torch.float64), x, y)
    slope, intercept = np.polyfit(x[:, 0].numpy(), y[:, 0].numpy(), 1)
    assert neuron.weight.item() == pytest.approx(slope, abs=1e-10)
    assert neuron.bias.item() == pytest.approx(intercept, abs=1e-10)


def test_window_features_are_days_in_order_and_persistence_is_last_day():
    inputs, targets = make_windows(torch.arange(8.0), window=3)
    features = window_to_features(inputs)
    assert features.shape == (5, 3)
    assert features[0].tolist() == [0.0, 1.0, 2.0]
    assert torch.equal(
        window_to_features(inputs.transpose(0, 1), batch_first=True), features
    )
    assert persistence_forecast(inputs)[:, 0].tolist() == [2.0, 3.0, 4.0, 5.0, 6.0]
    # on a straight line the persistence error is exactly one step
    assert mean_absolute_error(persistence_forecast(inputs), targets) == pytest.approx(
        1.0
    )


def test_window_predictor_learns_an_exact_linear_recurrence():
    """x_{t+1} = 0.5 x_t + 0.3 x_{t-1} + 1 is recovered exactly by a 2-day window."""
    values = [1.0, 2.0]
    for _ in range(30):
        values.append(0.5 * values[-1] + 0.3 * values[-2] + 1.0)
    inputs, targets = make_windows(torch.tensor(values, dtype=torch.float64), window=2)
    neuron = fit_least_squares(
        Neuron(2, dtype=torch.float64), window_to_features(inputs), targets
    )
    torch.testing.assert_close(
        neuron.weight, torch.tensor([[0.3, 0.5]], dtype=torch.float64)
    )
    assert neuron.bias.item() == pytest.approx(1.0)


def test_neuron_errors():
    with pytest.raises(ValueError, match=r"x must be \(batch, 2\)"):
        Neuron(2)(torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"targets must be \(batch, 1\) = \(4, 1\)"):
        fit_least_squares(Neuron(2), torch.randn(4, 2), torch.randn(3, 1))
    with pytest.raises(ValueError, match="must have the same shape"):
        mean_absolute_error(torch.zeros(3, 1), torch.zeros(3))


def test_climatology_is_the_mean_of_the_same_calendar_day_in_the_fitting_years():
    """Hand-computed: 1 March is 10 and 14 in the fitting years, 2 March 20 and 30."""
    import datetime

    from rnn_course.neuron import climatology_forecast

    dates = [
        datetime.date(year, 3, day) for year in (2012, 2013, 2014) for day in (1, 2)
    ]
    values = torch.tensor(
        [10.0, 20.0, 14.0, 30.0, 99.0, 99.0]
    )  # 2014 is the target year
    forecast = climatology_forecast(dates, values, slice(0, 4), target_days=[4, 5, 0])
    assert forecast.tolist() == [12.0, 25.0, 12.0]
    with pytest.raises(ValueError, match="no day of the fitting period"):
        climatology_forecast(dates, values, slice(0, 1), target_days=[5])
    with pytest.raises(ValueError, match="one date per value"):
        climatology_forecast(dates[:3], values, slice(0, 3), target_days=[0])
