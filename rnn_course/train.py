"""Putting it together: forecasting real temperatures with ``nn.RNN`` (chapter 6).

The pieces of a forecaster, in the order chapter 6 uses them:

1. :class:`ForecastConfig` holds every hyper-parameter, each with a comment saying why;
2. :class:`RNNForecaster`: ``nn.RNN`` reads a window of days, and a linear layer turns
   the last hidden state h_T into tomorrow's value. With ``predict_change`` it predicts
   the change from the last day instead, ŷ = x_T + Linear(h_T), so an untrained model
   starts as the persistence baseline ("tomorrow will be like today") and training only
   has to learn the correction;
3. :func:`train_forecaster`: shuffled mini-batches of windows, Adam, clipping by norm
   (chapter 4), a tqdm progress bar, and the weights of the epoch with the lowest
   validation loss;
4. :func:`predict`, :func:`to_celsius`, :func:`mae_celsius`: errors in °C, after undoing
   the standardisation;
5. :func:`forecast_multi_step`: several days ahead, each prediction fed back in as the
   next input;
6. :func:`make_streams`, :func:`train_stateful`: stateful training, where the hidden
   state is carried from one batch to the next and detached, so backpropagation stops at
   the batch boundary;
7. :func:`pad_sequences`, :func:`run_packed`, :func:`last_valid_steps`: sequences of
   different lengths in one batch.

Shapes follow ``nn.RNN``: (seq_len, batch, features), or (batch, seq_len, features) with
``batch_first``; hidden states are (num_layers, batch, hidden_size) either way. Training
and prediction take a ``device`` (by default the model's); :func:`predict` and the
metrics return CPU values, so printed numbers do not depend on where the model ran.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence, pad_sequence
from tqdm import tqdm

from .data import Standardizer, make_windows
from .validate import (
    require_positive_int,
    require_same_device_dtype,
    require_series,
    require_tensor,
)

PROGRESS_COLUMNS = 80
"""Width of the progress bars, within the book's text column, so no line is cut off."""
PROGRESS_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"
"""tqdm's bar without its rate and time left, so the losses fit in PROGRESS_COLUMNS."""


@dataclass
class ForecastConfig:
    """Hyper-parameters of chapter 6's forecaster (a handful of settings tried on the
    validation period).
    """

    # days the RNN reads before each forecast (for cutting windows): two weeks of
    # weather
    window: int = 14
    # size of hₜ: enough for a few weather features, small enough to train in a second
    hidden_size: int = 16
    num_layers: int = 1  # one recurrent layer (chapter 3 stacks more)
    predict_change: bool = (
        True  # forecast tomorrow minus today: an untrained model starts as persistence
    )
    batch_size: int = (
        32  # windows per optimiser step: about 32 steps per epoch on 1,000 windows
    )
    epochs: int = (
        10  # passes over the training windows; the epoch best on validation is kept
    )
    learning_rate: float = 0.01  # Adam's step size
    max_grad_norm: float | None = (
        1.0  # clip the gradient's global norm (chapter 4); None: no clipping
    )
    seed: int = 0  # initial weights and the order of the mini-batches


@dataclass
class TrainingHistory:
    """What a training run measured, one entry per epoch."""

    train_loss: list[float] = field(
        default_factory=list
    )  # mean squared error on the training data
    validation_loss: list[float] = field(
        default_factory=list
    )  # same on validation data; empty without it
    best_epoch: int | None = (
        None  # 1-based epoch whose weights the model holds at the end
    )


# --- data: calendar features and windows for a period
# -----------------------------------------------


def season_features(dates: Sequence) -> torch.Tensor:
    """sin and cos of the day of the year: (days, 2). 31 December sits next to 1 January
    on the circle.
    """
    if len(dates) == 0:
        raise ValueError("dates is empty")
    day_of_year = torch.tensor(
        [date.timetuple().tm_yday for date in dates], dtype=torch.float32
    )  # (days,)
    angle = 2 * math.pi * day_of_year / 365.25  # (days,)
    return torch.stack([torch.sin(angle), torch.cos(angle)], dim=1)  # (days, 2)


def windows_for_period(
    series: torch.Tensor,
    period: slice,
    window: int,
    batch_first: bool = False,
    target_feature: int = 0,
):
    """Windows whose *targets* are the days of ``period``, e.g. ``split.test``.

    The first target is the period's first day, so its inputs are the ``window`` days
    just before the period: past days may be read, no day after the target is. Returns
    :func:`rnn_course.data.make_windows`'s ``(inputs, targets)``.
    """
    require_positive_int(window, "window")
    start, stop = (
        period.start or 0,
        period.stop if period.stop is not None else series.shape[0],
    )
    if start < window:
        raise ValueError(
            f"the period starts at day {start}, but a window of {window} days needs "
            f"{window} days "
            "before it; use a later period or a shorter window"
        )
    return make_windows(
        series[start - window : stop],
        window,
        batch_first=batch_first,
        target_feature=target_feature,
    )


def make_multi_step_windows(series: torch.Tensor, window: int, steps: int):
    """Every (``window`` days, the ``steps`` days after them) pair, for multi-step
    forecasting.

    ``series`` (days, features) -> inputs (window, N, features) and targets (steps, N,
    features), with N = days - window - steps + 1. Window ``i`` covers days ``i ..
    i+window-1`` and its targets are days ``i+window .. i+window+steps-1``.
    """
    require_tensor(series, "series", ndim=2, shape_hint="(days, features)")
    require_positive_int(window, "window")
    require_positive_int(steps, "steps")
    num_windows = series.shape[0] - window - steps + 1
    if num_windows < 1:
        raise ValueError(
            f"a window of {window} days plus {steps} target days needs at least "
            f"{window + steps} days, "
            f"the series has {series.shape[0]}"
        )
    pieces = series.unfold(0, window + steps, 1)  # (N, features, window + steps)
    pieces = pieces.permute(2, 0, 1)  # (window + steps, N, features)
    return pieces[:window].contiguous(), pieces[window:].contiguous()


# --- the model
# -------------------------------------------------------------------------------------


class RNNForecaster(nn.Module):
    """``nn.RNN`` followed by a linear layer on the last hidden state: ŷ = Linear(h_T)
    (+ x_T).

    The model forecasts the first ``output_size`` input features (put the targets
    first). With ``predict_change`` the linear layer starts at zero, so the first
    forecast is the last day's value.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int = 1,
        num_layers: int = 1,
        predict_change: bool = True,
        batch_first: bool = False,
    ):
        super().__init__()
        for value, name in (
            (input_size, "input_size"),
            (hidden_size, "hidden_size"),
            (output_size, "output_size"),
            (num_layers, "num_layers"),
        ):
            require_positive_int(value, name)
        if output_size > input_size:
            raise ValueError(
                f"output_size ({output_size}) cannot exceed input_size ({input_size}): "
                "the model "
                "forecasts the first output_size input features"
            )
        self.input_size, self.hidden_size, self.output_size = (
            input_size,
            hidden_size,
            output_size,
        )
        self.num_layers, self.predict_change, self.batch_first = (
            num_layers,
            predict_change,
            batch_first,
        )
        self.rnn = nn.RNN(input_size, hidden_size, num_layers, batch_first=batch_first)
        self.head = nn.Linear(hidden_size, output_size)
        if predict_change:
            nn.init.zeros_(self.head.weight)  # start as persistence: a zero change
            nn.init.zeros_(self.head.bias)

    def forward(
        self,
        x: torch.Tensor,
        h0: torch.Tensor | None = None,
        lengths: torch.Tensor | Sequence[int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forecast the day after each sequence. Returns ``(y_hat (batch, output_size),
        h_n)``.

        ``lengths`` (batch,): the true length of each padded sequence; the forecast then
        uses each sequence's own last step, never the padding.
        """
        self._check_input(x, h0)
        if lengths is None:
            _, h_n = self.rnn(x, h0)  # h_n: (layers, batch, hidden)
            last_input = x[:, -1] if self.batch_first else x[-1]  # (batch, input)
        else:
            _, h_n = run_packed(
                self.rnn, x, lengths, h0
            )  # the state after each sequence's last real step
            last_input = last_valid_steps(
                x, lengths, self.batch_first
            )  # (batch, input)
        return self._read_out(h_n[-1], last_input), h_n

    def forward_every_step(
        self, x: torch.Tensor, h0: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A forecast after *every* step: ``(y_hat (seq_len, batch, output_size), h_n)``
        (stateful training).
        """
        self._check_input(x, h0)
        output, h_n = self.rnn(
            x, h0
        )  # output: (seq_len, batch, hidden), the top layer's hₜ for every t
        return self._read_out(output, x), h_n

    def _read_out(self, hidden: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        y_hat = self.head(hidden)  # (..., output)
        if self.predict_change:
            y_hat = (
                y_hat + inputs[..., : self.output_size]
            )  # the change, added to the last known value
        return y_hat

    def _check_input(self, x: torch.Tensor, h0: torch.Tensor | None) -> None:
        layout = (
            "(batch, seq_len, input_size)"
            if self.batch_first
            else "(seq_len, batch, input_size)"
        )
        require_tensor(x, "x", ndim=3, shape_hint=layout)
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"x must have input_size = {self.input_size} features in its last "
                "dimension, "
                f"got shape {tuple(x.shape)} (layout {layout})"
            )
        if 0 in x.shape[:2]:
            raise ValueError(f"x is empty: shape {tuple(x.shape)} (layout {layout})")
        require_same_device_dtype(self.head.weight, "the model", x, "x")
        if h0 is not None:
            batch = x.shape[0] if self.batch_first else x.shape[1]
            expected = (self.num_layers, batch, self.hidden_size)
            if tuple(h0.shape) != expected:
                raise ValueError(
                    f"h0 must be (num_layers, batch, hidden_size) = {expected}, got "
                    f"{tuple(h0.shape)} "
                    "(h0 is never batch-first)"
                )


def make_forecaster(
    input_size: int, config: ForecastConfig, output_size: int = 1, device=None
) -> RNNForecaster:
    """A forecaster whose initial weights depend only on ``config.seed``, whatever the
    device.

    The weights are drawn on the CPU (a GPU's random generator draws other numbers) from
    a forked generator, so the caller's random state is left alone; then the model moves
    to ``device``.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = RNNForecaster(
            input_size,
            config.hidden_size,
            output_size,
            config.num_layers,
            config.predict_change,
        )
    return model.to(device or "cpu")


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


# --- training on windows
# ---------------------------------------------------------------------------


def _check_pairs(
    inputs: torch.Tensor, targets: torch.Tensor, model: RNNForecaster
) -> None:
    require_tensor(
        inputs, "inputs", ndim=3, shape_hint="(window, num_windows, features)"
    )
    require_tensor(targets, "targets", ndim=2, shape_hint="(num_windows, output_size)")
    num_windows = inputs.shape[0] if model.batch_first else inputs.shape[1]
    if tuple(targets.shape) != (num_windows, model.output_size):
        raise ValueError(
            f"targets must be (num_windows, output_size) = ({num_windows}, "
            f"{model.output_size}) to match "
            f"inputs {tuple(inputs.shape)}, got {tuple(targets.shape)}"
        )
    if inputs.shape[-1] != model.input_size:
        raise ValueError(
            f"inputs have {inputs.shape[-1]} features but the model reads input_size = "
            f"{model.input_size}"
        )


def minibatches(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    batch_size: int,
    generator: torch.Generator | None = None,
    batch_first: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x (window, batch, features), y (batch, output))`` mini-batches; shuffled
    when a generator is given.

    The order is drawn on the CPU, so it is the same on every device.
    """
    require_positive_int(batch_size, "batch_size")
    num_windows = targets.shape[0]
    if generator is None:
        order = torch.arange(num_windows)
    else:
        order = torch.randperm(num_windows, generator=generator)  # (num_windows,)
    batch_dim = 0 if batch_first else 1
    for start in range(0, num_windows, batch_size):
        index = order[start : start + batch_size].to(inputs.device)  # (batch,)
        yield (
            inputs.index_select(batch_dim, index),
            targets.index_select(0, index.to(targets.device)),
        )


def train_one_epoch(
    model: RNNForecaster,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    generator: torch.Generator | None = None,
    max_grad_norm: float | None = None,
) -> float:
    """One pass over the windows, one optimiser step per mini-batch. Returns the mean
    training loss.
    """
    model.train()
    total_loss = 0.0
    for x, y in minibatches(inputs, targets, batch_size, generator, model.batch_first):
        y_hat, _ = model(x)  # (batch, output)
        loss = nn.functional.mse_loss(y_hat, y)
        optimizer.zero_grad()
        loss.backward()
        if max_grad_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        total_loss += (
            loss.item() * y.shape[0]
        )  # weight each batch by its size: the last one may be smaller
    return total_loss / targets.shape[0]


@torch.no_grad()
def evaluate_loss(
    model: RNNForecaster,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    batch_size: int = 1024,
) -> float:
    """Mean squared error over all windows, without training."""
    model.eval()
    total_loss = 0.0
    for x, y in minibatches(inputs, targets, batch_size, batch_first=model.batch_first):
        y_hat, _ = model(x)
        total_loss += nn.functional.mse_loss(y_hat, y, reduction="sum").item()
    return total_loss / targets.numel()


def train_forecaster(
    model: RNNForecaster,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    config: ForecastConfig,
    validation: tuple[torch.Tensor, torch.Tensor] | None = None,
    device=None,
    progress: bool = True,
) -> TrainingHistory:
    """Train on (window, next day) pairs for ``config.epochs`` epochs with Adam; returns
    the losses.

    With ``validation`` = (inputs, targets), the model ends with the weights of the
    epoch whose validation loss was lowest (early stopping without stopping).
    ``progress=False`` hides the bar.
    """
    _check_pairs(inputs, targets, model)
    require_positive_int(config.epochs, "config.epochs")
    require_positive_int(config.batch_size, "config.batch_size")
    device = torch.device(device) if device is not None else _model_device(model)
    model.to(device)
    inputs, targets = inputs.to(device), targets.to(device)
    if validation is not None:
        _check_pairs(*validation, model)
        validation = (validation[0].to(device), validation[1].to(device))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    generator = torch.Generator().manual_seed(
        config.seed
    )  # the mini-batch order, on the CPU
    history, best_state = TrainingHistory(), None
    # mininterval: redraw at most once a second; in a stored notebook every redraw
    # becomes a new line
    bar = tqdm(
        range(config.epochs),
        desc="training",
        unit="epoch",
        disable=not progress,
        mininterval=1.0,
        ncols=PROGRESS_COLUMNS,
        bar_format=PROGRESS_FORMAT,
    )
    for _ in bar:
        history.train_loss.append(
            train_one_epoch(
                model,
                inputs,
                targets,
                optimizer,
                config.batch_size,
                generator,
                config.max_grad_norm,
            )
        )
        postfix = {
            "train loss": f"{history.train_loss[-1]:.4f}"
        }  # short: the bar fits in 88 columns
        if validation is not None:
            history.validation_loss.append(evaluate_loss(model, *validation))
            postfix["val loss"] = f"{history.validation_loss[-1]:.4f}"
            if history.validation_loss[-1] == min(history.validation_loss):
                best_state = copy.deepcopy(model.state_dict())
                history.best_epoch = len(history.validation_loss)
        bar.set_postfix(postfix, refresh=False)  # shown at the next redraw
    if best_state is not None:
        model.load_state_dict(
            best_state
        )  # the epoch that forecast the validation period best
    else:
        history.best_epoch = config.epochs
    return history


# --- evaluation
# ------------------------------------------------------------------------------------


@torch.no_grad()
def predict(
    model: RNNForecaster, inputs: torch.Tensor, batch_size: int = 1024, device=None
) -> torch.Tensor:
    """Forecasts for every window: (num_windows, output_size), returned on the CPU.

    The model is moved to ``device`` first (by default it stays where it is).
    """
    require_tensor(
        inputs, "inputs", ndim=3, shape_hint="(window, num_windows, features)"
    )
    device = torch.device(device) if device is not None else _model_device(model)
    model.to(device).eval()
    batch_dim = 0 if model.batch_first else 1
    pieces = []
    for x in inputs.split(batch_size, dim=batch_dim):
        y_hat, _ = model(x.to(device))  # (batch, output)
        pieces.append(y_hat.cpu())
    return torch.cat(pieces)  # (num_windows, output)


def to_celsius(
    scaled: torch.Tensor, standardizer: Standardizer, feature: int = 0
) -> torch.Tensor:
    """Undo the standardisation of one feature: scaled · std + mean (°C for a
    temperature).
    """
    if standardizer.mean is None or standardizer.std is None:
        raise RuntimeError(
            "the standardizer is not fitted: call fit(train_series) first"
        )
    mean, std = standardizer.mean, standardizer.std
    if (
        mean.dim() > 0
    ):  # fitted on (days, features): pick the feature's own mean and spread
        if not 0 <= feature < mean.shape[0]:
            raise ValueError(f"feature must be in [0, {mean.shape[0]}), got {feature}")
        mean, std = mean[feature], std[feature]
    return scaled * std.to(scaled) + mean.to(scaled)


def mae_celsius(
    predictions: torch.Tensor,
    targets: torch.Tensor,
    standardizer: Standardizer,
    feature: int = 0,
) -> float:
    """Mean absolute error in °C of standardised predictions, computed on the CPU."""
    if predictions.shape != targets.shape:
        raise ValueError(
            f"predictions {tuple(predictions.shape)} and targets "
            f"{tuple(targets.shape)} "
            "must have the same shape"
        )
    errors = to_celsius(predictions.cpu(), standardizer, feature) - to_celsius(
        targets.cpu(), standardizer, feature
    )
    return errors.abs().mean().item()


# --- several days ahead: feeding predictions back
# --------------------------------------------------


@torch.no_grad()
def forecast_multi_step(
    model: RNNForecaster, history: torch.Tensor, steps: int
) -> torch.Tensor:
    """Forecast ``steps`` days after ``history`` (window, batch, features), feeding each
    forecast back.

    After reading the history the RNN keeps its state; each forecast becomes the next
    input, one step at a time, as a cell loop would (chapter 5). The model must
    therefore forecast every feature it reads. Returns (steps, batch, output_size), on
    the model's device.
    """
    require_positive_int(steps, "steps")
    if model.output_size != model.input_size:
        raise ValueError(
            f"feeding forecasts back needs a model that forecasts every input feature "
            f"(output_size == input_size), got output_size={model.output_size}, "
            f"input_size={model.input_size}"
        )
    model.eval()
    y_hat, h = model(history)  # (batch, features), (layers, batch, hidden)
    forecasts = [y_hat]
    for _ in range(steps - 1):
        next_input = y_hat.unsqueeze(
            1 if model.batch_first else 0
        )  # one step: (1, batch, features)
        y_hat, h = model(next_input, h)  # continue from the state, not from zero
        forecasts.append(y_hat)
    return torch.stack(
        forecasts, dim=1 if model.batch_first else 0
    )  # (steps, batch, output)


def mae_by_horizon(
    predictions: torch.Tensor,
    targets: torch.Tensor,
    standardizer: Standardizer,
    feature: int = 0,
) -> list[float]:
    """MAE in °C of each horizon: predictions and targets (steps, N, output) -> one
    value per step.
    """
    if predictions.shape != targets.shape or predictions.dim() != 3:
        raise ValueError(
            f"predictions {tuple(predictions.shape)} and targets "
            f"{tuple(targets.shape)} must both be "
            "(steps, N, output)"
        )
    return [
        mae_celsius(p, t, standardizer, feature) for p, t in zip(predictions, targets)
    ]


# --- stateful training: carrying the hidden state across batches
# -----------------------------------


def make_streams(series: torch.Tensor, num_streams: int) -> torch.Tensor:
    """Cut a series into ``num_streams`` consecutive pieces, side by side:
    (stream_length, num_streams, features).

    Stream ``j`` holds days ``j·L … (j+1)·L - 1`` with L = days // num_streams; the
    leftover days at the end are dropped. Step t of column j is the day right after step
    t-1 of the same column, so a hidden state can be carried down each column from batch
    to batch.
    """
    series = require_series(series)  # (days, features)
    require_positive_int(num_streams, "num_streams")
    stream_length = series.shape[0] // num_streams
    if stream_length < 2:
        raise ValueError(
            f"{series.shape[0]} days cut into {num_streams} streams leaves fewer than "
            "2 days per stream"
        )
    used = series[: stream_length * num_streams]  # (L·S, features)
    return (
        used.reshape(num_streams, stream_length, -1).transpose(0, 1).contiguous()
    )  # (L, S, features)


def train_stateful(
    model: RNNForecaster,
    streams: torch.Tensor,
    config: ForecastConfig,
    chunk_length: int,
    carry_state: bool = True,
    device=None,
    progress: bool = True,
) -> TrainingHistory:
    """Train on consecutive chunks of ``streams`` (stream_length, num_streams,
    features), in order.

    Every step of a chunk forecasts the next day. With ``carry_state`` the final hidden
    state of one chunk is the initial state of the next, *detached*: the forward pass
    remembers the past, but backpropagation stops at the chunk boundary (truncated BPTT,
    chapter 4), so each step costs the same and the graph of the previous chunk can be
    freed. Without it every chunk starts from h₀ = 0 (stateless).
    """
    require_tensor(
        streams, "streams", ndim=3, shape_hint="(stream_length, num_streams, features)"
    )
    require_positive_int(chunk_length, "chunk_length")
    require_positive_int(config.epochs, "config.epochs")
    if model.batch_first:
        raise ValueError(
            "train_stateful expects a model with batch_first=False: streams are (time, "
            "stream, features)"
        )
    if streams.shape[2] != model.input_size:
        raise ValueError(
            f"streams have {streams.shape[2]} features but the model reads "
            f"input_size = {model.input_size}"
        )
    if streams.shape[0] < 2:
        raise ValueError(
            "streams need at least 2 steps: one input and the next day as its target"
        )
    device = torch.device(device) if device is not None else _model_device(model)
    model.to(device).train()
    streams = streams.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    history = TrainingHistory()
    for _ in tqdm(
        range(config.epochs),
        desc="stateful" if carry_state else "stateless",
        unit="epoch",
        disable=not progress,
        mininterval=1.0,
        ncols=PROGRESS_COLUMNS,
        bar_format=PROGRESS_FORMAT,
    ):
        h, total_loss, total_steps = None, 0.0, 0
        for start in range(0, streams.shape[0] - 1, chunk_length):
            stop = min(start + chunk_length, streams.shape[0] - 1)
            x = streams[start:stop]  # (chunk, streams, features)
            y = streams[
                start + 1 : stop + 1, :, : model.output_size
            ]  # the next day of every step
            y_hat, h_n = model.forward_every_step(x, h)  # (chunk, streams, output)
            loss = nn.functional.mse_loss(y_hat, y)
            optimizer.zero_grad()
            loss.backward()
            if config.max_grad_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            h = h_n.detach() if carry_state else None  # keep the values, cut the graph
            total_loss += loss.item() * (stop - start)
            total_steps += stop - start
        history.train_loss.append(total_loss / total_steps)
    history.best_epoch = config.epochs
    return history


# --- sequences of different lengths
# ---------------------------------------------------------------


def pad_sequences(
    sequences: Sequence[torch.Tensor],
    batch_first: bool = False,
    padding_value: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack sequences of different lengths, each (length_i, features), into one padded
    batch.

    Returns ``(padded (max_length, batch, features), lengths (batch,))``, batch-first if
    asked; lengths is an int64 tensor on the CPU, as ``pack_padded_sequence`` wants it.
    """
    if len(sequences) == 0:
        raise ValueError(
            "sequences is empty: give at least one (length, features) tensor"
        )
    features = None
    for i, sequence in enumerate(sequences):
        require_tensor(
            sequence, f"sequences[{i}]", ndim=2, shape_hint="(length, features)"
        )
        if sequence.shape[0] == 0:
            raise ValueError(
                f"sequences[{i}] is empty (length 0); every sequence needs at least "
                "one step"
            )
        if features is not None and sequence.shape[1] != features:
            raise ValueError(
                f"sequences[{i}] has {sequence.shape[1]} features, sequences[0] has "
                f"{features}: "
                "all sequences must have the same number of features"
            )
        features = sequence.shape[1]
    lengths = torch.tensor(
        [sequence.shape[0] for sequence in sequences], dtype=torch.int64
    )  # (batch,)
    padded = pad_sequence(
        list(sequences), batch_first=batch_first, padding_value=padding_value
    )
    return padded, lengths  # padded: (max_length, batch, features)


def check_lengths(lengths, batch: int, max_length: int) -> torch.Tensor:
    """Lengths as an int64 CPU tensor (batch,), each in [1, max_length]; a clear error
    otherwise.
    """
    lengths = torch.as_tensor(lengths).cpu()
    if lengths.dim() != 1 or lengths.shape[0] != batch:
        raise ValueError(
            f"lengths must have one entry per sequence: shape ({batch},), got "
            f"{tuple(lengths.shape)}"
        )
    if lengths.is_floating_point() or lengths.dtype == torch.bool:
        raise TypeError(f"lengths must be integers, got {lengths.dtype}")
    if (lengths < 1).any() or (lengths > max_length).any():
        raise ValueError(
            f"every length must be between 1 and the padded length {max_length}, got "
            f"{lengths.tolist()}"
        )
    return lengths.to(torch.int64)


def run_packed(
    rnn: nn.RNN, padded: torch.Tensor, lengths, h0: torch.Tensor | None = None
):
    """Run ``rnn`` over a padded batch so that no sequence ever reads its padding.

    ``pack_padded_sequence`` packs the real steps only; at step t the RNN processes just
    the sequences longer than t. Returns ``(output, h_n)``: output shaped like the
    padded input (zeros after each sequence's end), h_n the state after each sequence's
    own last step.
    """
    require_tensor(
        padded,
        "padded",
        ndim=3,
        shape_hint="(batch, max_length, features)"
        if rnn.batch_first
        else "(max_length, batch, features)",
    )
    time_dim, batch_dim = (1, 0) if rnn.batch_first else (0, 1)
    lengths = check_lengths(lengths, padded.shape[batch_dim], padded.shape[time_dim])
    packed = pack_padded_sequence(
        padded, lengths, batch_first=rnn.batch_first, enforce_sorted=False
    )
    packed_output, h_n = rnn(
        packed, h0
    )  # h_n comes back in the original order of the batch
    output, _ = pad_packed_sequence(
        packed_output, batch_first=rnn.batch_first, total_length=padded.shape[time_dim]
    )
    return output, h_n


def last_valid_steps(
    padded: torch.Tensor, lengths, batch_first: bool = False
) -> torch.Tensor:
    """Each sequence's last real step: padded (max_length, batch, features) -> (batch,
    features).
    """
    require_tensor(padded, "padded", ndim=3)
    time_dim, batch_dim = (1, 0) if batch_first else (0, 1)
    batch = padded.shape[batch_dim]
    lengths = check_lengths(lengths, batch, padded.shape[time_dim])
    last = (lengths - 1).to(padded.device)  # (batch,)
    rows = torch.arange(batch, device=padded.device)  # (batch,)
    return (
        padded[rows, last] if batch_first else padded[last, rows]
    )  # (batch, features)
