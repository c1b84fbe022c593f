"""rnn_course.text (chapter 7) against hand-counted values, nn.Embedding, a hand-written
log-softmax, the memory cell of chapter 2 and consecutive streams."""

import itertools
import math

import pytest
import torch
from torch import nn

from rnn_course.cell import rnn_cell_step
from rnn_course.text import (
    PLAY_SEPARATOR,
    PLAYS,
    CharRNN,
    Vocabulary,
    bigram_log_probs,
    bigram_nats,
    entropy_nats,
    load_play,
    load_shakespeare,
    make_text_streams,
    next_character_windows,
    one_hot,
    sample,
    sequence_loss,
    split_by_position,
    stream_batches,
    stream_nats,
    temperature_probabilities,
    train_on_streams,
    unigram_log_probs,
    unigram_nats,
)

# --- the shipped text -----------------------------------------------------------------


def test_the_five_plays_are_shipped_and_joined_in_order():
    lengths = {
        "Hamlet": 173_942,
        "Macbeth": 103_427,
        "Romeo and Juliet": 141_753,
        "Julius Caesar": 116_216,
        "Othello": 154_519,
    }
    assert list(PLAYS) == list(lengths)
    for title, length in lengths.items():
        assert len(load_play(title)) == length
    text = load_shakespeare()
    assert len(text) == sum(lengths.values()) + 4 * len(PLAY_SEPARATOR)
    assert text.startswith("HAMLET, PRINCE OF DENMARK")
    assert text.isascii() and "\r" not in text
    assert load_shakespeare(["Macbeth", "Hamlet"]) == (
        load_play("Macbeth") + PLAY_SEPARATOR + load_play("Hamlet")
    )


def test_unknown_play_and_bad_titles_are_clear_errors():
    with pytest.raises(ValueError, match="unknown play 'Lear'.*Hamlet"):
        load_play("Lear")
    with pytest.raises(ValueError, match="non-empty list of play titles"):
        load_shakespeare("Hamlet")
    with pytest.raises(ValueError, match="non-empty list"):
        load_shakespeare([])


# --- vocabulary -----------------------------------------------------------------------


def test_vocabulary_from_text_is_sorted_distinct_characters():
    vocab = Vocabulary.from_text(
        "hello world"
    )  # counted by hand: ' ', d, e, h, l, o, r, w
    assert vocab.symbols == (" ", "d", "e", "h", "l", "o", "r", "w")
    assert len(vocab) == 8
    assert vocab.encode("hello").tolist() == [3, 2, 4, 4, 5]
    assert vocab.encode("hello").dtype == torch.int64
    assert vocab.decode(torch.tensor([7, 5, 6, 4, 1])) == "world"
    assert vocab.decode([0]) == " "
    assert vocab.decode(vocab.encode("low red")) == "low red"


def test_shipped_vocabulary_has_the_73_characters_of_the_plays():
    vocab = Vocabulary.from_text(load_shakespeare())
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    assert len(vocab) == 73
    for symbol in letters + [c.upper() for c in letters] + ["\n", " ", "[", "]", "."]:
        assert symbol in vocab


def test_character_outside_the_vocabulary_is_a_clear_error():
    vocab = Vocabulary.from_text("abc")
    with pytest.raises(
        ValueError,
        match=r"character 'z' at position 2 is not in the "
        r"vocabulary of 3 characters.*unknown=",
    ):
        vocab.encode("abz")


def test_explicit_unknown_symbol_stands_for_unseen_characters():
    vocab = Vocabulary.from_text("abc", unknown="?")
    assert vocab.symbols == ("a", "b", "c", "?")
    assert vocab.encode("azc?").tolist() == [0, 3, 2, 3]
    assert vocab.decode(vocab.encode("abzz")) == "ab??"
    already = Vocabulary(["?", "a"], unknown="?")  # present already: not added twice
    assert already.symbols == ("?", "a")


@pytest.mark.parametrize(
    "symbols, message",
    [
        (["a", "a", "b"], "must be unique.*'a'"),
        (["ab"], "single character"),
        ([], "at least one symbol"),
    ],
)
def test_bad_vocabularies_are_refused(symbols, message):
    with pytest.raises(ValueError, match=message):
        Vocabulary(symbols)


def test_decode_refuses_bad_ids():
    vocab = Vocabulary.from_text("abc")
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 3\), got \[3\]"):
        vocab.decode([0, 3])
    with pytest.raises(ValueError, match="1-D tensor of integer ids"):
        vocab.decode(torch.tensor([0.0, 1.0]))
    with pytest.raises(TypeError, match="expects a str"):
        vocab.encode(["a"])


# --- one-hot vectors and embeddings ---------------------------------------------------


def test_embedding_is_one_hot_times_its_weight():
    torch.manual_seed(0)
    embedding = nn.Embedding(11, 5)
    ids = torch.tensor([[3, 0], [10, 3], [7, 7]])  # (seq, batch)
    x = one_hot(ids, 11)  # (3, 2, 11)
    assert x.shape == (3, 2, 11) and torch.equal(x.sum(dim=-1), torch.ones(3, 2))
    assert torch.equal(x @ embedding.weight, embedding(ids))
    model = CharRNN(11, 5, 4)
    assert torch.equal(one_hot(ids, 11) @ model.embedding.weight, model.embedding(ids))


def test_one_hot_has_a_single_one_at_the_id():
    x = one_hot(torch.tensor([2, 0]), 4, dtype=torch.float64)
    assert x.tolist() == [[0, 0, 1, 0], [1, 0, 0, 0]]
    assert x.dtype == torch.float64


# --- splits, windows and streams ------------------------------------------------------


def test_split_by_position_is_consecutive_without_overlap():
    split = split_by_position(1000, 0.8, 0.1)
    assert (split.train, split.validation, split.test) == (
        slice(0, 800),
        slice(800, 900),
        slice(900, 1000),
    )
    with pytest.raises(ValueError, match="positive int"):
        split_by_position(0)


def test_next_character_windows_shift_targets_by_one():
    ids = torch.arange(11)  # the id of position i is i
    inputs, targets = next_character_windows(ids, 3)  # (3 - 1 leftover) -> 3 windows
    assert inputs.tolist() == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    assert torch.equal(targets, inputs + 1)
    vocab = Vocabulary.from_text("To be, or not")
    x, y = next_character_windows(vocab.encode("To be, or not"), 4)
    assert [vocab.decode(x[:, j]) for j in range(3)] == ["To b", "e, o", "r no"]
    assert [vocab.decode(y[:, j]) for j in range(3)] == ["o be", ", or", " not"]


def test_windows_need_enough_ids_and_int64():
    with pytest.raises(ValueError, match="needs at least 5 ids, got 4"):
        next_character_windows(torch.arange(4), 4)
    with pytest.raises(TypeError, match="int64 ids"):
        next_character_windows(torch.arange(10.0), 3)


def test_streams_are_consecutive_stretches_side_by_side():
    ids = torch.arange(23)
    streams = make_text_streams(ids, 4)  # L = 5, the last 3 ids dropped
    assert streams.shape == (5, 4)
    for j in range(4):
        assert streams[:, j].tolist() == list(range(5 * j, 5 * j + 5))
    with pytest.raises(ValueError, match="fewer than 2 characters per stream"):
        make_text_streams(torch.arange(7), 4)


def test_stream_batches_continue_each_other():
    streams = make_text_streams(torch.arange(4 * 11), 4)  # (11, 4)
    chunks = list(stream_batches(streams, 3))
    assert [x.shape[0] for x, _ in chunks] == [
        3,
        3,
        3,
        1,
    ]  # 10 steps have a next character
    for (x, y), (next_x, _) in itertools.pairwise(chunks):
        assert torch.equal(
            next_x[0], y[-1]
        )  # chunk k+1 starts where chunk k's targets end
        assert torch.equal(y, x + 1)
    assert torch.equal(torch.cat([x for x, _ in chunks]), streams[:-1])
    assert torch.equal(torch.cat([y for _, y in chunks]), streams[1:])
    with pytest.raises(ValueError, match="at least 2 steps"):
        list(stream_batches(streams[:1], 3))


# --- counting baselines ---------------------------------------------------------------


def test_unigram_and_bigram_against_hand_counts():
    ids = Vocabulary.from_text("ab").encode("abab")  # a b a b: pairs ab, ba, ab
    unigram = unigram_log_probs(ids, 2)  # counts 2 + 1 and 2 + 1
    assert torch.allclose(unigram.exp(), torch.tensor([0.5, 0.5], dtype=torch.float64))
    bigram = bigram_log_probs(
        ids, 2
    ).exp()  # rows: after a: [0+1, 2+1]; after b: [1+1, 0+1]
    expected = torch.tensor([[1 / 4, 3 / 4], [2 / 3, 1 / 3]], dtype=torch.float64)
    assert torch.allclose(bigram, expected)
    assert bigram_nats(bigram.log(), ids) == pytest.approx(
        -(math.log(3 / 4) + math.log(2 / 3) + math.log(3 / 4)) / 3
    )
    assert unigram_nats(unigram, ids) == pytest.approx(math.log(2))


def test_unseen_pairs_keep_a_finite_probability():
    bigram = bigram_log_probs(torch.tensor([0, 0, 0]), 3)
    assert torch.isfinite(bigram).all()
    assert torch.allclose(bigram.exp().sum(dim=1), torch.ones(3, dtype=torch.float64))


# --- the model and its loss -----------------------------------------------------------


def test_sequence_loss_is_the_mean_of_a_hand_written_log_softmax():
    torch.manual_seed(1)
    logits = torch.randn(4, 3, 7, dtype=torch.float64)  # (seq, batch, V)
    targets = torch.randint(0, 7, (4, 3))
    log_probs = logits - logits.exp().sum(dim=-1, keepdim=True).log()  # by hand
    per_step = -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (4, 3)
    assert torch.allclose(sequence_loss(logits, targets), per_step.mean())
    assert torch.allclose(
        sequence_loss(logits, targets, reduction="sum"), per_step.sum()
    )


def test_sequence_loss_refuses_mismatched_targets():
    with pytest.raises(
        ValueError, match=r"targets \(3, 4\) must be \(seq_len, batch\)"
    ):
        sequence_loss(torch.zeros(4, 3, 5), torch.zeros(3, 4, dtype=torch.int64))
    with pytest.raises(TypeError, match="int64 ids"):
        sequence_loss(torch.zeros(4, 3, 5), torch.zeros(4, 3))


def test_char_rnn_equals_the_memory_cell_with_a_read_out():
    torch.manual_seed(2)
    model = CharRNN(vocab_size=9, embedding_size=4, hidden_size=6).double()
    ids = torch.randint(0, 9, (5, 2))  # (seq, batch)
    logits, h_n = model(ids)
    rnn = model.rnn
    b = rnn.bias_ih_l0 + rnn.bias_hh_l0
    h = torch.zeros(2, 6, dtype=torch.float64)
    expected = []
    for t in range(5):
        x_t = one_hot(ids[t], 9, torch.float64) @ model.embedding.weight  # (2, 4)
        h = rnn_cell_step(x_t, h, rnn.weight_ih_l0, rnn.weight_hh_l0, b)
        expected.append(h @ model.head.weight.T + model.head.bias)  # (2, 9)
    assert torch.allclose(logits, torch.stack(expected))
    assert torch.allclose(h_n[0], h)


def test_char_rnn_refuses_bad_ids_and_h0():
    model = CharRNN(5, 3, 4)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 5\)"):
        model(torch.tensor([[5]]))
    with pytest.raises(
        ValueError,
        match=r"h0 must be \(num_layers, batch, hidden_size\) = "
        r"\(1, 2, 4\)",
    ):
        model(torch.zeros(3, 2, dtype=torch.int64), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="2 dimension"):
        model(torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="positive int"):
        CharRNN(0, 3, 4)


def test_stream_nats_with_carried_state_equals_one_pass_over_the_whole_text():
    torch.manual_seed(3)
    model = CharRNN(8, 4, 10).double()
    ids = torch.randint(0, 8, (53,))
    with torch.no_grad():
        logits, _ = model(ids[:-1].unsqueeze(1))  # the whole text at once, from h0 = 0
        expected = sequence_loss(logits, ids[1:].unsqueeze(1)).item()
    for seq_len in (5, 7, 100):  # windows of several lengths, the last one shorter
        assert stream_nats(model, ids, seq_len) == pytest.approx(expected, rel=1e-12)


def _manual_training(model, streams, seq_len, carry_state):
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    h = None
    for start in range(0, streams.shape[0] - 1, seq_len):
        stop = min(start + seq_len, streams.shape[0] - 1)  # the last step has no target
        x, y = streams[start:stop], streams[start + 1 : stop + 1]
        logits, h_n = model(x, h)
        loss = nn.functional.cross_entropy(logits.reshape(-1, 6), y.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        h = h_n.detach() if carry_state else None


@pytest.mark.parametrize("carry_state", [True, False])
def test_train_on_streams_is_truncated_bptt_with_the_state_carried(carry_state):
    torch.manual_seed(4)
    streams = torch.randint(0, 6, (13, 3))
    reference = CharRNN(6, 3, 5).double()
    model = CharRNN(6, 3, 5).double()
    model.load_state_dict(reference.state_dict())
    other = CharRNN(6, 3, 5).double()
    other.load_state_dict(reference.state_dict())
    _manual_training(reference, streams, 4, carry_state)
    losses = train_on_streams(
        model, streams, 4, learning_rate=0.01, carry_state=carry_state, progress=False
    )
    train_on_streams(
        other,
        streams,
        4,
        learning_rate=0.01,
        carry_state=not carry_state,
        progress=False,
    )
    assert len(losses) == 3  # 12 steps with a next character, chunks of 4
    for mine, theirs in zip(model.parameters(), reference.parameters()):
        assert torch.allclose(mine, theirs)
    # carrying the state or not changes the training: the test can tell them apart
    assert not all(
        torch.allclose(p, q) for p, q in zip(model.parameters(), other.parameters())
    )


# --- sampling -------------------------------------------------------------------------


def test_temperature_divides_the_logits_before_the_softmax():
    logits = torch.tensor([[2.0, 0.0, -1.0]], dtype=torch.float64)
    for temperature in (0.5, 1.0, 1.5):
        weights = torch.exp(logits / temperature)
        expected = weights / weights.sum()
        assert torch.allclose(temperature_probabilities(logits, temperature), expected)
    with pytest.raises(ValueError, match="temperature must be positive"):
        temperature_probabilities(logits, 0.0)


def test_entropy_against_hand_values():
    assert entropy_nats(torch.full((4,), 0.25)).item() == pytest.approx(math.log(4))
    assert entropy_nats(torch.tensor([1.0, 0.0, 0.0])).item() == 0.0
    assert entropy_nats(torch.tensor([0.5, 0.5, 0.0])).item() == pytest.approx(
        math.log(2)
    )


def test_sampling_is_reproducible_and_draws_from_the_tempered_distribution():
    torch.manual_seed(5)
    vocab = Vocabulary.from_text("abcdef")
    model = CharRNN(len(vocab), 3, 8)
    first = sample(model, vocab, "abc", 30, 1.0, torch.Generator().manual_seed(7))
    again = sample(model, vocab, "abc", 30, 1.0, torch.Generator().manual_seed(7))
    assert first == again and len(first) == 30 and set(first) <= set(vocab.symbols)
    with torch.no_grad():
        logits, _ = model(vocab.encode("abc").unsqueeze(1))
    p = torch.softmax(logits[-1, 0].double() / 1.5, dim=-1)
    expected = torch.multinomial(
        p, 1, generator=torch.Generator().manual_seed(9)
    ).item()
    drawn = sample(model, vocab, "abc", 1, 1.5, torch.Generator().manual_seed(9))
    assert drawn == vocab.symbols[expected]


def test_sampling_at_a_tiny_temperature_is_greedy_decoding():
    torch.manual_seed(6)
    vocab = Vocabulary.from_text("xyz ")
    model = CharRNN(len(vocab), 2, 7)
    ids = vocab.encode("xy").tolist()
    with torch.no_grad():
        logits, h = model(torch.tensor(ids).unsqueeze(1))
        greedy = []
        for _ in range(12):  # feed the most likely character back, by hand
            next_id = int(logits[-1, 0].argmax())
            greedy.append(next_id)
            logits, h = model(torch.tensor([[next_id]]), h)
    assert sample(model, vocab, "xy", 12, 1e-4) == vocab.decode(greedy)


def test_sampling_refuses_an_empty_prompt_and_unknown_characters():
    vocab = Vocabulary.from_text("ab")
    model = CharRNN(2, 2, 2)
    with pytest.raises(ValueError, match="prompt must hold at least one character"):
        sample(model, vocab, "", 5)
    with pytest.raises(ValueError, match="character 'c' at position 0"):
        sample(model, vocab, "c", 5)
