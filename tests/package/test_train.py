"""Tests of rnn_course.train (chapter 6): each function against a hand computation or
PyTorch's own modules.
"""

import copy
import datetime as dt
import math

import pytest
import torch
from torch import nn

from rnn_course.data import Standardizer, make_windows, noisy_sine_sequences
from rnn_course.train import (
    ForecastConfig,
    RNNForecaster,
    check_lengths,
    evaluate_loss,
    forecast_multi_step,
    last_valid_steps,
    mae_by_horizon,
    mae_celsius,
    make_forecaster,
    make_multi_step_windows,
    make_streams,
    minibatches,
    pad_sequences,
    predict,
    run_packed,
    season_features,
    to_celsius,
    train_forecaster,
    train_stateful,
    windows_for_period,
)

CONFIG = ForecastConfig(hidden_size=5, epochs=3, batch_size=4, seed=0)


def random_model(
    input_size=3,
    hidden_size=5,
    output_size=1,
    num_layers=1,
    predict_change=True,
    batch_first=False,
    seed=0,
    dtype=torch.float64,
):
    """A forecaster whose linear layer is random too (with predict_change it would start
    at zero).
    """
    torch.manual_seed(seed)
    model = RNNForecaster(
        input_size, hidden_size, output_size, num_layers, predict_change, batch_first
    )
    nn.init.normal_(model.head.weight)
    nn.init.normal_(model.head.bias)
    return model.to(dtype)


def by_hand(model: RNNForecaster, x: torch.Tensor) -> torch.Tensor:
    """ŷ for one layer, written from the equations: hₜ = tanh(W_ih xₜ + b_ih + W_hh hₜ₋₁
    + b_hh).
    """
    rnn = model.rnn
    h = torch.zeros(x.shape[1], model.hidden_size, dtype=x.dtype)  # (batch, hidden)
    for x_t in x:
        h = torch.tanh(
            x_t @ rnn.weight_ih_l0.T
            + rnn.bias_ih_l0
            + h @ rnn.weight_hh_l0.T
            + rnn.bias_hh_l0
        )
    y_hat = h @ model.head.weight.T + model.head.bias  # (batch, output)
    return y_hat + x[-1, :, : model.output_size] if model.predict_change else y_hat


# --- data helpers
# -----------------------------------------------------------------------------------


def test_season_features_by_hand():
    dates = [dt.date(2015, 1, 1), dt.date(2015, 7, 2), dt.date(2015, 12, 31)]
    features = season_features(dates)
    assert features.shape == (3, 2)
    for row, day in zip(features, (1, 183, 365)):
        angle = 2 * math.pi * day / 365.25
        assert row.tolist() == pytest.approx(
            [math.sin(angle), math.cos(angle)], abs=1e-6
        )
    # 31 December and 1 January are neighbours on the circle
    assert (
        torch.dist(features[0], features[2])
        < 0.03
        < torch.dist(features[0], features[1])
    )


def test_windows_for_period_targets_are_the_period():
    series = torch.arange(20.0).unsqueeze(1)  # day i has value i
    inputs, targets = windows_for_period(series, slice(10, 15), window=3)
    assert targets.flatten().tolist() == [10, 11, 12, 13, 14]
    assert inputs[:, 0, 0].tolist() == [7, 8, 9]  # the 3 days before the first target
    with pytest.raises(ValueError, match="needs 3 days before it"):
        windows_for_period(series, slice(2, 15), window=3)


def test_make_multi_step_windows_by_hand():
    series = torch.stack([torch.arange(10.0), -torch.arange(10.0)], dim=1)  # (10, 2)
    inputs, targets = make_multi_step_windows(series, window=3, steps=2)
    assert inputs.shape == (3, 6, 2) and targets.shape == (2, 6, 2)
    assert inputs[:, 4, 0].tolist() == [4, 5, 6]
    assert targets[:, 4, 0].tolist() == [7, 8]
    assert targets[:, 4, 1].tolist() == [-7, -8]
    with pytest.raises(ValueError, match="at least 12 days"):
        make_multi_step_windows(series, window=10, steps=2)


# --- the model
# ------------------------------------------------------------------------------------


@pytest.mark.parametrize("predict_change", [True, False])
def test_forecaster_matches_the_equations(predict_change):
    model = random_model(predict_change=predict_change)
    x = torch.randn(6, 4, 3, dtype=torch.float64)  # (seq, batch, features)
    y_hat, h_n = model(x)
    assert y_hat.shape == (4, 1) and h_n.shape == (1, 4, 5)
    torch.testing.assert_close(y_hat, by_hand(model, x), rtol=1e-12, atol=1e-12)


def test_forecaster_shapes_with_layers_outputs_and_batch_first():
    model = random_model(input_size=4, output_size=2, num_layers=2)
    x = torch.randn(7, 3, 4, dtype=torch.float64)
    y_hat, h_n = model(x)
    assert y_hat.shape == (3, 2) and h_n.shape == (2, 3, 5)
    every_step, h_n_steps = model.forward_every_step(x)
    assert every_step.shape == (7, 3, 2)
    torch.testing.assert_close(
        every_step[-1], y_hat
    )  # the last step's forecast is the forecast
    torch.testing.assert_close(h_n_steps, h_n)

    batch_first = random_model(
        input_size=4, output_size=2, num_layers=2, batch_first=True
    )
    batch_first.load_state_dict(model.state_dict())
    y_bf, h_bf = batch_first(x.transpose(0, 1))
    torch.testing.assert_close(y_bf, y_hat)
    assert h_bf.shape == (2, 3, 5)  # the hidden state is never batch-first


def test_untrained_change_forecaster_is_persistence():
    model = make_forecaster(3, ForecastConfig(hidden_size=4))
    x = torch.randn(5, 8, 3)
    y_hat, _ = model(x)
    assert torch.equal(y_hat, x[-1, :, :1])


def test_make_forecaster_depends_only_on_the_seed_and_keeps_the_global_generator():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = make_forecaster(3, ForecastConfig(seed=7))
    assert torch.equal(
        torch.rand(1), expected_next
    )  # the caller's random stream is untouched
    b = make_forecaster(3, ForecastConfig(seed=7))
    c = make_forecaster(3, ForecastConfig(seed=8))
    assert torch.equal(a.rnn.weight_hh_l0, b.rnn.weight_hh_l0)
    assert not torch.equal(a.rnn.weight_hh_l0, c.rnn.weight_hh_l0)


def test_forecaster_errors_say_what_was_expected():
    model = random_model()
    with pytest.raises(ValueError, match="input_size = 3"):
        model(torch.randn(4, 2, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="3 dimensions"):
        model(torch.randn(4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="never batch-first"):
        model(
            torch.randn(4, 2, 3, dtype=torch.float64),
            h0=torch.zeros(2, 1, 5, dtype=torch.float64),
        )
    with pytest.raises(ValueError, match="empty"):
        model(torch.randn(0, 2, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="convert one of them"):
        model(torch.randn(4, 2, 3, dtype=torch.float32))  # the model is float64
    with pytest.raises(ValueError, match="cannot exceed input_size"):
        RNNForecaster(2, 4, output_size=3)
    with pytest.raises(ValueError, match="hidden_size must be a positive int"):
        RNNForecaster(2, 0)


# --- training
# --------------------------------------------------------------------------------------


def sine_windows(window=8, seed=0):
    series = noisy_sine_sequences(1, 300, noise=0.05, seed=seed)[:, 0]  # (300, 1)
    return make_windows(series, window)


def test_minibatches_cover_every_window_once_in_a_seeded_order():
    inputs = (
        torch.arange(10.0).reshape(1, 10, 1).expand(2, 10, 1)
    )  # window i holds the number i
    targets = torch.arange(10.0).unsqueeze(1)
    seen = []
    for x, y in minibatches(inputs, targets, 4, torch.Generator().manual_seed(0)):
        assert torch.equal(x[0, :, 0], y[:, 0])  # inputs and targets stay paired
        seen += y[:, 0].tolist()
    assert sorted(seen) == list(range(10)) and seen != list(range(10))
    again = [
        y[:, 0].tolist()
        for _, y in minibatches(inputs, targets, 4, torch.Generator().manual_seed(0))
    ]
    assert sum(again, []) == seen


def test_training_reduces_the_loss_and_is_repeatable():
    inputs, targets = sine_windows()
    config = ForecastConfig(
        hidden_size=8, epochs=5, batch_size=16, predict_change=False, seed=0
    )
    model = make_forecaster(1, config)
    before = evaluate_loss(model, inputs, targets)
    history = train_forecaster(model, inputs, targets, config, progress=False)
    after = evaluate_loss(model, inputs, targets)
    assert len(history.train_loss) == 5 and history.best_epoch == 5
    assert after < 0.2 * before
    assert history.train_loss[-1] < history.train_loss[0]

    twin = make_forecaster(1, config)
    assert (
        train_forecaster(twin, inputs, targets, config, progress=False).train_loss
        == history.train_loss
    )


def test_training_matches_a_hand_written_adam_loop():
    inputs, targets = sine_windows(window=5)
    config = ForecastConfig(
        hidden_size=4, epochs=2, batch_size=50, max_grad_norm=None, seed=3
    )
    assert targets.shape[0] % config.batch_size != 0, (
        "the last mini-batch must be smaller than the others"
    )
    model = make_forecaster(1, config)
    reference = copy.deepcopy(model)
    history = train_forecaster(model, inputs, targets, config, progress=False)

    optimizer = torch.optim.Adam(reference.parameters(), lr=config.learning_rate)
    generator = torch.Generator().manual_seed(config.seed)
    for epoch in range(config.epochs):
        order = torch.randperm(targets.shape[0], generator=generator)
        squared_errors = 0.0
        for start in range(0, len(order), config.batch_size):
            index = order[start : start + config.batch_size]
            _, h_n = reference.rnn(inputs[:, index])
            y_hat = (
                reference.head(h_n[-1]) + inputs[-1, index]
            )  # the change, added to the last value
            loss = ((y_hat - targets[index]) ** 2).mean()
            squared_errors += ((y_hat - targets[index]) ** 2).sum().item()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        # the epoch's loss is the mean over all windows, not the mean of the batch means
        assert history.train_loss[epoch] == pytest.approx(
            squared_errors / targets.shape[0], rel=1e-5
        )
    for (name, ours), theirs in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(ours, theirs, msg=name)


def test_validation_keeps_the_best_epoch():
    inputs, targets = sine_windows(seed=0)
    validation = sine_windows(seed=1)
    config = ForecastConfig(
        hidden_size=8, epochs=6, batch_size=64, learning_rate=0.1, seed=1
    )  # a bumpy run
    model = make_forecaster(1, config)
    history = train_forecaster(
        model, inputs, targets, config, validation=validation, progress=False
    )
    best = min(range(6), key=lambda i: history.validation_loss[i]) + 1
    assert best < 6, "the test needs a run whose last epoch is not its best"
    assert history.best_epoch == best
    assert evaluate_loss(model, *validation) == pytest.approx(
        min(history.validation_loss), rel=1e-6
    )


def test_progress_bar_can_be_shown_and_hidden(capsys):
    inputs, targets = sine_windows()
    config = ForecastConfig(hidden_size=2, epochs=1)
    train_forecaster(
        make_forecaster(1, config), inputs, targets, config, progress=False
    )
    assert capsys.readouterr().err == ""
    train_forecaster(make_forecaster(1, config), inputs, targets, config, progress=True)
    assert "training" in capsys.readouterr().err


def test_training_errors_say_what_was_expected():
    inputs, targets = sine_windows()
    model = make_forecaster(1, CONFIG)
    with pytest.raises(
        ValueError, match=r"targets must be \(num_windows, output_size\)"
    ):
        train_forecaster(model, inputs, targets[:-1], CONFIG, progress=False)
    with pytest.raises(ValueError, match="model reads input_size = 2"):
        train_forecaster(
            make_forecaster(2, CONFIG), inputs, targets, CONFIG, progress=False
        )
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        train_forecaster(
            model, inputs, targets, ForecastConfig(batch_size=0), progress=False
        )
    with pytest.raises(ValueError, match="NaN"):
        train_forecaster(
            model, inputs.clone().fill_(float("nan")), targets, CONFIG, progress=False
        )


# --- evaluation
# ------------------------------------------------------------------------------------


def test_mae_in_celsius_by_hand():
    standardizer = Standardizer()
    standardizer.mean, standardizer.std = (
        torch.tensor([10.0, 0.0]),
        torch.tensor([2.0, 5.0]),
    )
    predictions = torch.tensor([[0.0], [1.0]])  # 10 °C and 12 °C
    targets = torch.tensor([[0.5], [0.0]])  # 11 °C and 10 °C
    assert to_celsius(predictions, standardizer).flatten().tolist() == [10.0, 12.0]
    assert mae_celsius(predictions, targets, standardizer) == pytest.approx(
        1.5
    )  # (1 + 2) / 2
    assert mae_celsius(predictions, targets, standardizer, feature=1) == pytest.approx(
        3.75
    )
    by_horizon = mae_by_horizon(
        torch.stack([predictions, predictions]),
        torch.stack([targets, predictions]),
        standardizer,
    )
    assert by_horizon == pytest.approx([1.5, 0.0])
    with pytest.raises(RuntimeError, match="not fitted"):
        to_celsius(predictions, Standardizer())
    with pytest.raises(ValueError, match="same shape"):
        mae_celsius(predictions, targets.T, standardizer)


def test_predict_is_the_model_in_batches_on_the_cpu():
    model = random_model()
    x = torch.randn(4, 10, 3, dtype=torch.float64)
    predictions = predict(model, x, batch_size=3)
    assert predictions.device.type == "cpu"
    torch.testing.assert_close(predictions, by_hand(model, x), rtol=1e-12, atol=1e-12)


# --- several days ahead
# ---------------------------------------------------------------------------


def test_multi_step_equals_rerunning_the_model_on_its_own_forecasts():
    model = random_model(input_size=2, output_size=2, hidden_size=6)
    history = torch.randn(5, 3, 2, dtype=torch.float64)
    forecasts = forecast_multi_step(model, history, steps=4)
    assert forecasts.shape == (4, 3, 2)

    # Reference: append each forecast to the sequence and run the whole model again from
    # h₀ = 0.
    sequence = history
    for step in range(4):
        with torch.no_grad():
            y_hat = by_hand(model, sequence)  # (batch, 2)
        torch.testing.assert_close(forecasts[step], y_hat, rtol=1e-10, atol=1e-12)
        sequence = torch.cat([sequence, y_hat.unsqueeze(0)])


def test_multi_step_equals_an_rnncell_loop():
    model = random_model(
        input_size=1,
        output_size=1,
        hidden_size=4,
        predict_change=False,
        dtype=torch.float32,
    )
    cell = nn.RNNCell(1, 4)
    cell.load_state_dict(
        {
            "weight_ih": model.rnn.weight_ih_l0,
            "weight_hh": model.rnn.weight_hh_l0,
            "bias_ih": model.rnn.bias_ih_l0,
            "bias_hh": model.rnn.bias_hh_l0,
        }
    )
    history = torch.randn(6, 2, 1)
    with torch.no_grad():
        h = torch.zeros(2, 4)
        for x_t in history:
            h = cell(x_t, h)
        expected = []
        for _ in range(3):
            y_hat = model.head(h)  # (batch, 1)
            expected.append(y_hat)
            h = cell(y_hat, h)  # the forecast is the next input
    torch.testing.assert_close(
        forecast_multi_step(model, history, 3), torch.stack(expected)
    )


def test_multi_step_needs_a_model_that_forecasts_every_input():
    with pytest.raises(ValueError, match="output_size == input_size"):
        forecast_multi_step(
            random_model(input_size=3), torch.randn(4, 2, 3, dtype=torch.float64), 2
        )
    with pytest.raises(ValueError, match="steps must be a positive int"):
        forecast_multi_step(
            random_model(input_size=1), torch.randn(4, 2, 1, dtype=torch.float64), 0
        )


# --- stateful training
# ----------------------------------------------------------------------------


def test_make_streams_by_hand():
    streams = make_streams(
        torch.arange(11.0), num_streams=3
    )  # 3 streams of 3 days; days 9 and 10 dropped
    assert streams.shape == (3, 3, 1)
    assert streams[:, :, 0].tolist() == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    with pytest.raises(ValueError, match="fewer than 2 days"):
        make_streams(torch.arange(5.0), num_streams=3)


def stateful_reference(model, streams, config, chunk_length, carry_state):
    """The stateful loop written out with nn.RNN and nn.Linear directly."""
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    for _ in range(config.epochs):
        h = None
        for start in range(0, streams.shape[0] - 1, chunk_length):
            stop = min(start + chunk_length, streams.shape[0] - 1)
            output, h_n = model.rnn(streams[start:stop], h)
            y_hat = model.head(output) + streams[start:stop]
            loss = ((y_hat - streams[start + 1 : stop + 1]) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            h = h_n.detach() if carry_state else None


@pytest.mark.parametrize("carry_state", [True, False])
def test_train_stateful_matches_a_hand_written_loop(carry_state):
    streams = noisy_sine_sequences(4, 23, seed=2)  # (23, 4, 1)
    config = ForecastConfig(hidden_size=5, epochs=2, seed=4)
    model = make_forecaster(1, config)
    reference = copy.deepcopy(model)
    history = train_stateful(
        model, streams, config, chunk_length=5, carry_state=carry_state, progress=False
    )
    stateful_reference(reference, streams, config, 5, carry_state)
    assert len(history.train_loss) == 2
    for ours, theirs in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(ours, theirs)


def test_carrying_the_state_changes_training():
    streams = noisy_sine_sequences(4, 40, seed=2)
    config = ForecastConfig(hidden_size=5, epochs=1, seed=4)
    carried = make_forecaster(1, config)
    reset = make_forecaster(1, config)
    train_stateful(
        carried, streams, config, chunk_length=5, carry_state=True, progress=False
    )
    train_stateful(
        reset, streams, config, chunk_length=5, carry_state=False, progress=False
    )
    assert not torch.equal(carried.rnn.weight_hh_l0, reset.rnn.weight_hh_l0)


def test_stateful_training_learns_a_sine_better_than_stateless():
    """With chunks of 3 steps, only a carried state can know a sine's period and
    phase."""
    streams = noisy_sine_sequences(16, 120, seed=0)
    config = ForecastConfig(hidden_size=8, epochs=15, learning_rate=0.01, seed=0)
    losses = {}
    for carry_state in (True, False):
        model = make_forecaster(1, config)
        losses[carry_state] = train_stateful(
            model, streams, config, 3, carry_state, progress=False
        ).train_loss[-1]
    assert losses[True] < 0.6 * losses[False]


def test_stateful_errors_say_what_was_expected():
    streams = torch.randn(10, 2, 1)
    with pytest.raises(ValueError, match="batch_first=False"):
        train_stateful(
            random_model(input_size=1, batch_first=True, dtype=torch.float32),
            streams,
            CONFIG,
            3,
        )
    with pytest.raises(ValueError, match="input_size = 2"):
        train_stateful(make_forecaster(2, CONFIG), streams, CONFIG, 3, progress=False)
    with pytest.raises(ValueError, match="chunk_length must be a positive int"):
        train_stateful(make_forecaster(1, CONFIG), streams, CONFIG, 0, progress=False)


# --- sequences of different lengths
# ---------------------------------------------------------------


def variable_sequences(lengths=(5, 2, 7, 1), features=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randn(length, features, generator=generator, dtype=torch.float64)
        for length in lengths
    ]


def test_pad_sequences_by_hand():
    sequences = [torch.ones(2, 1), 2 * torch.ones(3, 1)]
    padded, lengths = pad_sequences(sequences)
    assert (
        padded.shape == (3, 2, 1)
        and lengths.tolist() == [2, 3]
        and lengths.dtype == torch.int64
    )
    assert padded[:, 0, 0].tolist() == [1, 1, 0] and padded[:, 1, 0].tolist() == [
        2,
        2,
        2,
    ]
    padded_bf, _ = pad_sequences(sequences, batch_first=True)
    assert torch.equal(padded_bf, padded.transpose(0, 1))


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_packed_run_equals_running_each_sequence_alone(batch_first, num_layers):
    torch.manual_seed(0)
    rnn = nn.RNN(3, 4, num_layers, batch_first=batch_first).double()
    sequences = variable_sequences()
    padded, lengths = pad_sequences(sequences, batch_first=batch_first)
    output, h_n = run_packed(rnn, padded, lengths)
    for i, sequence in enumerate(sequences):
        alone = sequence.unsqueeze(0 if batch_first else 1)  # a batch of one
        output_alone, h_alone = rnn(alone)
        length = len(sequence)
        ours = output[i, :length] if batch_first else output[:length, i]
        torch.testing.assert_close(
            ours,
            output_alone[0] if batch_first else output_alone[:, 0],
            rtol=1e-12,
            atol=1e-12,
        )
        torch.testing.assert_close(h_n[:, i], h_alone[:, 0], rtol=1e-12, atol=1e-12)
        padding = output[i, length:] if batch_first else output[length:, i]
        assert torch.count_nonzero(padding) == 0


def test_forecaster_with_lengths_equals_each_sequence_alone_and_differs_without():
    model = random_model()
    sequences = variable_sequences()
    padded, lengths = pad_sequences(sequences)
    y_hat, _ = model(padded, lengths=lengths)
    for i, sequence in enumerate(sequences):
        torch.testing.assert_close(
            y_hat[i], by_hand(model, sequence.unsqueeze(1))[0], rtol=1e-12, atol=1e-12
        )
    y_ignoring_lengths, _ = model(
        padded
    )  # reads the zeros after the short sequences' ends
    assert not torch.allclose(y_ignoring_lengths, y_hat)


def test_last_valid_steps_by_hand():
    padded = torch.arange(12.0).reshape(
        4, 3, 1
    )  # (time, batch, 1): entry [t, b] = 3t + b
    assert last_valid_steps(padded, [1, 4, 2])[:, 0].tolist() == [0, 10, 5]
    assert last_valid_steps(padded.transpose(0, 1), [1, 4, 2], batch_first=True)[
        :, 0
    ].tolist() == [0, 10, 5]


def test_variable_length_errors_say_what_was_expected():
    with pytest.raises(ValueError, match="sequences is empty"):
        pad_sequences([])
    with pytest.raises(ValueError, match="length 0"):
        pad_sequences([torch.ones(2, 1), torch.ones(0, 1)])
    with pytest.raises(ValueError, match="same number of features"):
        pad_sequences([torch.ones(2, 1), torch.ones(2, 3)])
    with pytest.raises(ValueError, match="between 1 and the padded length 3"):
        check_lengths([2, 4], batch=2, max_length=3)
    with pytest.raises(ValueError, match="one entry per sequence"):
        check_lengths([2], batch=2, max_length=3)
    with pytest.raises(TypeError, match="integers"):
        check_lengths(torch.tensor([1.0, 2.0]), batch=2, max_length=3)
    rnn = nn.RNN(1, 2)
    with pytest.raises(ValueError, match="between 1 and the padded length"):
        run_packed(rnn, torch.zeros(3, 2, 1), torch.tensor([0, 3]))


# --- devices
# --------------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_everything_runs_on_cuda_and_returns_cpu_predictions():
    inputs, targets = sine_windows()
    config = ForecastConfig(hidden_size=4, epochs=2)
    model = make_forecaster(1, config, device="cuda")
    cpu_twin = make_forecaster(1, config)
    torch.testing.assert_close(
        model.rnn.weight_hh_l0.cpu(), cpu_twin.rnn.weight_hh_l0
    )  # same initial weights
    train_forecaster(
        model, inputs, targets, config, validation=(inputs, targets), progress=False
    )
    assert model.head.weight.device.type == "cuda"
    assert predict(model, inputs).device.type == "cpu"
    assert forecast_multi_step(model, inputs[:, :3].cuda(), 2).device.type == "cuda"
    padded, lengths = pad_sequences([torch.randn(3, 1), torch.randn(2, 1)])
    y_hat, _ = model(padded.cuda(), lengths=lengths.cuda())
    assert y_hat.shape == (2, 1)
    train_stateful(model, torch.randn(20, 2, 1), config, 4, progress=False)
    with pytest.raises(ValueError, match="same device"):
        model(torch.randn(3, 2, 1))
