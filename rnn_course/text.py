"""Text: a character-level language model (chapter 7, "Text").

The pieces, in the order chapter 7 uses them:

1. :func:`load_shakespeare` reads five plays shipped inside the package
   (``data/*_gut.txt``, Project Gutenberg editions; source and licence in
   ``data/SOURCE.md``), so the chapter runs offline;
2. :class:`Vocabulary` gives every character an id, encodes text to ids and decodes ids
   back; a character outside the vocabulary is a clear error, or, if asked, an explicit
   unknown symbol;
3. :func:`split_by_position` cuts the text into train / validation / test parts, in
   order;
4. :func:`next_character_windows` cuts (sequence, batch) windows whose targets are the
   inputs shifted by one character; :func:`make_text_streams` and :func:`stream_batches`
   cut a text into side-by-side streams read in consecutive chunks, so a hidden state
   can be carried from one chunk to the next (chapter 6's stateful training, on
   characters);
5. :func:`unigram_log_probs` and :func:`bigram_log_probs`: the counting baselines;
6. :class:`CharRNN`, :func:`sequence_loss`, :func:`train_on_streams`,
   :func:`stream_nats`: an embedding, ``nn.RNN`` and a read-out to one score per
   character, the cross-entropy at every step, truncated BPTT over the streams, and nats
   per character over a carried state;
7. :func:`temperature_probabilities`, :func:`entropy_nats`, :func:`sample`: sampling one
   character at a time, with temperature, from a seeded generator.

Shapes follow ``nn.RNN``: ids are (seq_len, batch) int64, logits (seq_len, batch,
vocab_size), hidden states (num_layers, batch, hidden_size).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from importlib import resources

import torch
from torch import nn
from tqdm import tqdm

from .data import TimeSplit, split_by_time
from .validate import require_positive_int, require_tensor

PLAYS = {
    "Hamlet": "hamlet_gut.txt",
    "Macbeth": "macbeth_gut.txt",
    "Romeo and Juliet": "romeo_and_juliet_gut.txt",
    "Julius Caesar": "julius_caesar_gut.txt",
    "Othello": "othello_gut.txt",
}
"""The shipped plays, title -> file name, in the order load_shakespeare joins them."""

PLAY_SEPARATOR = "\n\n\n"


# --- the text -------------------------------------------------------------------------


def load_play(title: str) -> str:
    """The text of one shipped play, e.g. ``load_play("Hamlet")``."""
    if title not in PLAYS:
        raise ValueError(f"unknown play {title!r}; the shipped plays are {list(PLAYS)}")
    data = resources.files(__package__).joinpath("data", PLAYS[title])
    return data.read_text(encoding="utf-8")


def load_shakespeare(titles: Sequence[str] = tuple(PLAYS)) -> str:
    """The chosen plays joined into one text, in the order given (default: all five)."""
    if isinstance(titles, str) or len(titles) == 0:
        raise ValueError(
            f"titles must be a non-empty list of play titles, got {titles!r}"
        )
    return PLAY_SEPARATOR.join(load_play(title) for title in titles)


# --- characters and ids ---------------------------------------------------------------


class Vocabulary:
    """The characters a model reads and writes, with ids: ``symbols[id]`` (chapter 7).

    ``unknown``: a symbol that stands for every character outside the vocabulary (it is
    added as the last symbol if it is not there yet). Without it, encoding such a
    character raises a ``ValueError`` that names it and its position.
    """

    def __init__(self, symbols: Sequence[str], unknown: str | None = None):
        symbols = list(symbols)
        if unknown is not None and unknown not in symbols:
            symbols.append(unknown)
        for symbol in symbols:
            if not isinstance(symbol, str) or len(symbol) != 1:
                raise ValueError(
                    f"every symbol must be a single character, got {symbol!r}"
                )
        if len(set(symbols)) != len(symbols):
            repeated = sorted({s for s in symbols if symbols.count(s) > 1})
            raise ValueError(f"symbols must be unique, these repeat: {repeated}")
        if not symbols:
            raise ValueError("a vocabulary needs at least one symbol")
        self.symbols = tuple(symbols)
        self.unknown = unknown
        self.index = {symbol: i for i, symbol in enumerate(self.symbols)}

    @classmethod
    def from_text(cls, text: str, unknown: str | None = None) -> Vocabulary:
        """Every distinct character of ``text``, sorted by code point."""
        if not isinstance(text, str) or not text:
            raise ValueError("from_text needs a non-empty string")
        return cls(sorted(set(text)), unknown=unknown)

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, symbol: str) -> bool:
        return symbol in self.index

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} symbols, unknown={self.unknown!r})"

    def encode(self, text: str) -> torch.Tensor:
        """``text`` -> ids (len(text),) int64 on the CPU."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        unknown_id = None if self.unknown is None else self.index[self.unknown]
        ids = []
        for position, character in enumerate(text):
            i = self.index.get(character, unknown_id)
            if i is None:
                raise ValueError(
                    f"character {character!r} at position {position} is not in the "
                    f"vocabulary of {len(self)} characters; build the vocabulary "
                    "from a text that contains it, or give Vocabulary(..., "
                    "unknown=...) a symbol for characters it has never seen"
                )
            ids.append(i)
        return torch.tensor(ids, dtype=torch.int64)

    def decode(self, ids) -> str:
        """ids (a 1-D integer tensor or a list of ints) -> the text they spell."""
        ids = torch.as_tensor(ids)
        if ids.dim() != 1 or ids.is_floating_point() or ids.dtype == torch.bool:
            raise ValueError(
                f"decode expects a 1-D tensor of integer ids, got "
                f"{ids.dtype} of shape {tuple(ids.shape)}"
            )
        values = ids.tolist()
        bad = [i for i in values if not 0 <= i < len(self)]
        if bad:
            raise ValueError(f"ids must lie in [0, {len(self)}), got {bad[:5]}")
        return "".join(self.symbols[i] for i in values)


def require_ids(ids, name: str = "ids", ndim: int = 1) -> torch.Tensor:
    """Check a tensor of character ids: int64 with ``ndim`` dimensions."""
    if not isinstance(ids, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of int64 ids, got {type(ids).__name__}"
        )
    if ids.dtype != torch.int64:
        raise TypeError(
            f"{name} must hold int64 ids (what Vocabulary.encode returns), "
            f"got {ids.dtype}"
        )
    if ids.dim() != ndim:
        raise ValueError(
            f"{name} must have {ndim} dimension(s), got shape {tuple(ids.shape)}"
        )
    return ids


def one_hot(ids: torch.Tensor, vocab_size: int, dtype=torch.float32) -> torch.Tensor:
    """ids (...) -> one-hot vectors (..., vocab_size): a 1 at each id, 0 elsewhere."""
    require_positive_int(vocab_size, "vocab_size")
    return nn.functional.one_hot(ids, vocab_size).to(dtype)


# --- splits, windows and streams ------------------------------------------------------


def split_by_position(
    length: int, train_fraction: float = 0.8, validation_fraction: float = 0.1
) -> TimeSplit:
    """Consecutive train / validation / test slices of a text of ``length`` characters.

    Chapter 1's split by time, on positions: no character is in two parts, and the model
    is measured on text that comes after everything it trained on.
    """
    require_positive_int(length, "length")
    return split_by_time(length, train_fraction, validation_fraction)


def next_character_windows(ids: torch.Tensor, seq_len: int):
    """Non-overlapping windows, next-character targets: (inputs, targets), (seq_len, N).

    Window ``j`` reads ``ids[j·seq_len : (j+1)·seq_len]``; its targets are the same
    positions shifted by one, ``ids[j·seq_len + 1 : (j+1)·seq_len + 1]``: at every step
    the target is the character that comes next. N = (len(ids) - 1) // seq_len; the
    leftover end is dropped.
    """
    require_ids(ids)
    require_positive_int(seq_len, "seq_len")
    num_windows = (ids.shape[0] - 1) // seq_len
    if num_windows < 1:
        raise ValueError(
            f"a window of {seq_len} characters plus its next-character target "
            f"needs at least {seq_len + 1} ids, got {ids.shape[0]}"
        )
    used = num_windows * seq_len
    inputs = ids[:used].reshape(num_windows, seq_len).T  # (seq_len, N)
    targets = ids[1 : used + 1].reshape(num_windows, seq_len).T  # (seq_len, N)
    return inputs.contiguous(), targets.contiguous()


def make_text_streams(ids: torch.Tensor, num_streams: int) -> torch.Tensor:
    """Cut ids (length,) into ``num_streams`` pieces side by side: (L, num_streams).

    Column ``j`` holds ``ids[j·L : (j+1)·L]`` with L = length // num_streams (the
    leftover end is dropped): read down a column, the text goes on, so a state can be
    carried down it.
    """
    require_ids(ids)
    require_positive_int(num_streams, "num_streams")
    stream_length = ids.shape[0] // num_streams
    if stream_length < 2:
        raise ValueError(
            f"{ids.shape[0]} ids cut into {num_streams} streams leave fewer "
            "than 2 characters per stream"
        )
    used = ids[: stream_length * num_streams]
    return used.reshape(num_streams, stream_length).T.contiguous()  # (L, num_streams)


def stream_batches(
    streams: torch.Tensor, seq_len: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Consecutive chunks of streams (L, S): yields ``(inputs, targets)``, (chunk, S).

    Chunk ``k`` covers steps ``k·seq_len …`` of every stream, so chunk k+1 continues
    chunk k in each column; targets are the inputs shifted by one step. The last chunk
    may be shorter.
    """
    require_ids(streams, "streams", ndim=2)
    require_positive_int(seq_len, "seq_len")
    if streams.shape[0] < 2:
        raise ValueError(
            "streams need at least 2 steps: an input and its next character"
        )
    for start in range(0, streams.shape[0] - 1, seq_len):
        stop = min(start + seq_len, streams.shape[0] - 1)
        yield streams[start:stop], streams[start + 1 : stop + 1]  # (chunk, S) each


# --- counting baselines ---------------------------------------------------------------


def unigram_log_probs(
    ids: torch.Tensor, vocab_size: int, smoothing: float = 1.0
) -> torch.Tensor:
    """log P(c) from character counts plus ``smoothing`` (Laplace): (V,) float64."""
    require_ids(ids)
    require_positive_int(vocab_size, "vocab_size")
    counts = torch.bincount(ids, minlength=vocab_size).double() + smoothing  # (V,)
    return (counts / counts.sum()).log()


def bigram_log_probs(
    ids: torch.Tensor, vocab_size: int, smoothing: float = 1.0
) -> torch.Tensor:
    """log P(next | previous) from pair counts: (V, V) float64, one row per previous.

    Add-``smoothing`` counts keep a pair never seen in training at a small, finite
    probability.
    """
    require_ids(ids)
    require_positive_int(vocab_size, "vocab_size")
    pairs = (
        ids[:-1] * vocab_size + ids[1:]
    )  # (length - 1,): one number per (previous, next)
    counts = torch.bincount(pairs, minlength=vocab_size * vocab_size).double()
    counts = counts.reshape(vocab_size, vocab_size) + smoothing  # (V, V)
    return (counts / counts.sum(dim=1, keepdim=True)).log()


def unigram_nats(log_probs: torch.Tensor, ids: torch.Tensor) -> float:
    """Mean −log P(c) per character of ``ids`` under unigram ``log_probs`` (V,)."""
    require_ids(ids)
    return -log_probs[ids].mean().item()


def bigram_nats(log_probs: torch.Tensor, ids: torch.Tensor) -> float:
    """Mean −log P(next | previous) over ``ids[1:]``, each given the one before."""
    require_ids(ids)
    return -log_probs[ids[:-1], ids[1:]].mean().item()


# --- the model ------------------------------------------------------------------------


class CharRNN(nn.Module):
    """Embedding, ``nn.RNN`` and a read-out to one score (logit) per character (ch. 7).

    ids (seq_len, batch) -> logits (seq_len, batch, vocab_size) and h_n; the embedding
    is the one-hot vector times a matrix, done by looking up a row.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_size: int,
        hidden_size: int,
        num_layers: int = 1,
    ):
        super().__init__()
        for value, name in (
            (vocab_size, "vocab_size"),
            (embedding_size, "embedding_size"),
            (hidden_size, "hidden_size"),
            (num_layers, "num_layers"),
        ):
            require_positive_int(value, name)
        self.vocab_size, self.hidden_size, self.num_layers = (
            vocab_size,
            hidden_size,
            num_layers,
        )
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.rnn = nn.RNN(embedding_size, hidden_size, num_layers)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, ids: torch.Tensor, h0: torch.Tensor | None = None):
        require_ids(ids, "ids", ndim=2)
        if ids.numel() > 0 and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(
                f"ids must lie in [0, {self.vocab_size}), got values from "
                f"{ids.min().item()} to {ids.max().item()}"
            )
        if h0 is not None:
            expected = (self.num_layers, ids.shape[1], self.hidden_size)
            if tuple(h0.shape) != expected:
                raise ValueError(
                    f"h0 must be (num_layers, batch, hidden_size) = {expected}, "
                    f"got {tuple(h0.shape)}"
                )
        x = self.embedding(ids)  # (seq_len, batch, embedding)
        output, h_n = self.rnn(
            x, h0
        )  # (seq_len, batch, hidden), (layers, batch, hidden)
        return self.head(output), h_n  # (seq_len, batch, vocab)


def sequence_loss(
    logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Cross-entropy at every step: logits (seq, batch, V), targets (seq, batch) ids.

    The logits go in, not probabilities: cross-entropy applies the log-softmax itself.
    ``reduction="sum"`` gives the summed loss, for nats over a whole stream.
    """
    require_tensor(logits, "logits", ndim=3, shape_hint="(seq_len, batch, vocab_size)")
    require_ids(targets, "targets", ndim=2)
    if tuple(targets.shape) != tuple(logits.shape[:2]):
        raise ValueError(
            f"targets {tuple(targets.shape)} must be (seq_len, batch) = "
            f"{tuple(logits.shape[:2])} to match logits {tuple(logits.shape)}"
        )
    return nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction=reduction
    )


def train_on_streams(
    model: CharRNN,
    streams: torch.Tensor,
    seq_len: int,
    epochs: int = 1,
    learning_rate: float = 0.003,
    max_grad_norm: float | None = 1.0,
    carry_state: bool = True,
    progress: bool = True,
) -> list[float]:
    """Truncated BPTT over streams (L, S), one Adam step per chunk; returns the losses.

    With ``carry_state`` each chunk starts from the previous chunk's final state,
    detached (the forward pass remembers, the backward pass stops at the chunk
    boundary); without it, every chunk starts from h₀ = 0.
    """
    require_positive_int(epochs, "epochs")
    device = next(model.parameters()).device
    streams = streams.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    losses = []
    num_chunks = math.ceil((streams.shape[0] - 1) / seq_len) * epochs
    bar = tqdm(
        total=num_chunks,
        desc="training",
        unit="chunk",
        disable=not progress,
        mininterval=1.0,
    )
    model.train()
    for _ in range(epochs):
        h = None
        for x, y in stream_batches(streams, seq_len):
            logits, h_n = model(x, h)  # (chunk, S, V)
            loss = sequence_loss(logits, y)
            optimizer.zero_grad()
            loss.backward()
            if max_grad_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
            h = h_n.detach() if carry_state else None  # keep the values, cut the graph
            losses.append(loss.item())
            bar.update()
    bar.close()
    return losses


@torch.no_grad()
def stream_nats(model: CharRNN, ids: torch.Tensor, seq_len: int = 256) -> float:
    """Nats per character of ``ids`` (length,), read as one stream, the state carried.

    The losses of every window are *summed* and divided by the number of predicted
    characters (length - 1); exp of the result is the perplexity.
    """
    require_ids(ids)
    if ids.shape[0] < 2:
        raise ValueError("need at least 2 ids: one input and its next character")
    model.eval()
    device = next(model.parameters()).device
    stream = ids.to(device).unsqueeze(1)  # (length, 1)
    total, h = 0.0, None
    for x, y in stream_batches(stream, seq_len):
        logits, h = model(x, h)  # (chunk, 1, V)
        total += sequence_loss(logits, y, reduction="sum").item()
    return total / (ids.shape[0] - 1)


# --- sampling -------------------------------------------------------------------------


def temperature_probabilities(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / temperature) over the last dimension (the characters)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    return torch.softmax(logits / temperature, dim=-1)


def entropy_nats(probabilities: torch.Tensor) -> torch.Tensor:
    """H(p) = −Σ p log p over the last dimension, in nats (0·log 0 counts as 0)."""
    logs = torch.where(probabilities > 0, probabilities.log(), 0.0)
    return -(probabilities * logs).sum(dim=-1)


@torch.no_grad()
def sample(
    model: CharRNN,
    vocabulary: Vocabulary,
    prompt: str,
    length: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> str:
    """Read ``prompt``, then write ``length`` characters, one at a time (free running).

    Each character is drawn with ``torch.multinomial`` from softmax(logits /
    temperature), on the CPU with ``generator`` (seeded: the same text every time), and
    fed back as the next input with the hidden state passed along, as an ``nn.RNNCell``
    loop would (chapter 5).
    """
    require_positive_int(length, "length")
    if not prompt:
        raise ValueError("prompt must hold at least one character to start from")
    model.eval()
    device = next(model.parameters()).device
    ids = vocabulary.encode(prompt).to(device).unsqueeze(1)  # (prompt, 1)
    logits, h = model(ids)  # the prompt, read with teacher forcing
    written = []
    for _ in range(length):
        p = temperature_probabilities(logits[-1, 0].double().cpu(), temperature)  # (V,)
        next_id = torch.multinomial(p, 1, generator=generator)  # (1,)
        written.append(next_id.item())
        logits, h = model(
            next_id.to(device).view(1, 1), h
        )  # one step, from the carried h
    return vocabulary.decode(written)
