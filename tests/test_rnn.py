"""Chapter 1: encoder-decoder RNNs, additive attention and the toy copy task."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from attention.rnn import (
    BOS,
    VOCAB_SIZE,
    AdditiveAttention,
    AttentionDecoder,
    Decoder,
    Encoder,
    Seq2Seq,
    Seq2SeqConfig,
    TrainingRun,
    alignment,
    digit_batch,
    influence,
    position_accuracy,
    train,
)
from tests.conftest import random_tensor

TINY = Seq2SeqConfig(embed_size=4, hidden_size=8, attention_size=6)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny recurrent models run many times faster on one thread than on two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(attention: bool, seed: int = 0) -> Seq2Seq:
    torch.manual_seed(seed)
    return Seq2Seq(Seq2SeqConfig(attention=attention, embed_size=4, hidden_size=8))


def _digits(seed: int, batch: int, length: int) -> torch.Tensor:
    return digit_batch(batch, length, generator=torch.Generator().manual_seed(seed))[0]


# -- the task ------------------------------------------------------------------


def test_digit_batch_golden_values():
    source, target = digit_batch(2, 6, generator=torch.Generator().manual_seed(0))
    assert source.tolist() == [[4, 9, 3, 0, 3, 9], [7, 3, 7, 3, 1, 6]]
    assert torch.equal(target, source)


def test_digit_batch_is_deterministic_and_leaves_the_global_state_alone():
    state = torch.random.get_rng_state()
    first = digit_batch(4, 7, generator=torch.Generator().manual_seed(3), task="reverse")
    again = digit_batch(4, 7, generator=torch.Generator().manual_seed(3), task="reverse")
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    other = digit_batch(4, 7, generator=torch.Generator().manual_seed(4), task="reverse")
    assert not torch.equal(first[0], other[0])


@given(seed=st.integers(0, 2**31 - 1), b=st.integers(1, 4), s=st.integers(1, 12))
def test_targets_are_the_copy_or_the_reversal(seed, b, s):
    source, copied = digit_batch(b, s, generator=torch.Generator().manual_seed(seed))
    same, reversed_ = digit_batch(
        b, s, generator=torch.Generator().manual_seed(seed), task="reverse"
    )
    assert torch.equal(source, same)
    assert source.shape == (b, s)
    assert source.dtype == torch.int64
    assert source.min() >= 0
    assert source.max() <= 9
    assert torch.equal(copied, source)
    for i in range(s):
        assert torch.equal(reversed_[:, i], source[:, s - 1 - i])


# -- additive attention ---------------------------------------------------------


def test_additive_attention_equals_a_loop_over_positions():
    torch.manual_seed(0)
    attend = AdditiveAttention(3, 4, 5)
    query, keys = random_tensor(1, 2, 3), random_tensor(2, 2, 6, 4)
    context, weights = attend(query, keys)
    W_s, b_s = attend.W_s.weight, attend.W_s.bias
    W_h, v = attend.W_h.weight, attend.v.weight[0]
    for b in range(2):
        scores = torch.stack(
            [v @ torch.tanh(W_s @ query[b] + b_s + W_h @ keys[b, j]) for j in range(6)]
        )
        expected = torch.exp(scores) / torch.exp(scores).sum()
        assert torch.allclose(weights[b], expected, atol=1e-6)
        blended = sum(expected[j] * keys[b, j] for j in range(6))
        assert torch.allclose(context[b], blended, atol=1e-6)


def test_precomputed_keys_give_the_same_result():
    attend = AdditiveAttention(3, 4, 5)
    query, keys = random_tensor(1, 2, 3), random_tensor(2, 2, 6, 4)
    plain = attend(query, keys)
    cached = attend(query, keys, attend.W_h(keys))
    assert all(torch.equal(a, b) for a, b in zip(plain, cached, strict=True))


@given(
    seed=st.integers(0, 2**31 - 1),
    b=st.integers(1, 3),
    s=st.integers(1, 9),
    scale=st.floats(0.1, 50.0),
)
def test_weights_are_non_negative_and_sum_to_one(seed, b, s, scale):
    torch.manual_seed(seed)
    attend = AdditiveAttention(3, 4, 5)
    context, weights = attend(
        random_tensor(seed, b, 3) * scale, random_tensor(seed + 1, b, s, 4) * scale
    )
    assert weights.shape == (b, s)
    assert context.shape == (b, 4)
    assert (weights >= 0).all()
    assert torch.allclose(weights.sum(dim=-1), torch.ones(b), atol=1e-6)


# -- encoder, decoders, model ---------------------------------------------------


def test_shapes_of_every_component():
    source = _digits(0, 3, 5)  # (B, S)
    states, last = Encoder(4, 8)(source)
    assert states.shape == (3, 5, 8)
    assert last.shape == (3, 8)
    assert torch.equal(states[:, -1], last)
    tokens = torch.full((3, 7), BOS)  # (B, T)
    logits, state, weights = Decoder(4, 8)(tokens, last, states)
    assert logits.shape == (3, 7, VOCAB_SIZE)
    assert state.shape == (3, 8)
    assert weights is None
    logits, state, weights = AttentionDecoder(4, 8, 6)(tokens, last, states)
    assert logits.shape == (3, 7, VOCAB_SIZE)
    assert state.shape == (3, 8)
    assert weights is not None
    assert weights.shape == (3, 7, 5)


@pytest.mark.parametrize("attention", [False, True])
def test_seq2seq_shapes_with_and_without_a_target(attention):
    model = _model(attention)
    source, target = _digits(0, 3, 5), _digits(1, 3, 4)
    logits, weights = model(source, target)
    assert logits.shape == (3, 4, VOCAB_SIZE)
    greedy, greedy_weights = model(source)
    assert greedy.shape == (3, 5, VOCAB_SIZE)
    if attention:
        assert weights is not None
        assert weights.shape == (3, 4, 5)
        assert greedy_weights is not None
        assert greedy_weights.shape == (3, 5, 5)
    else:
        assert weights is None
        assert greedy_weights is None


@pytest.mark.parametrize("attention", [False, True])
def test_greedy_decoding_equals_teacher_forcing_on_its_own_answers(attention):
    # Greedy decoding runs one step per call; teacher forcing runs the whole
    # string at once. Fed the greedy answers, the two must agree.
    model = _model(attention)
    source = _digits(2, 4, 6)
    greedy, greedy_weights = model(source)
    forced, forced_weights = model(source, greedy.argmax(dim=-1))
    assert torch.allclose(greedy, forced, atol=1e-5)
    if attention:
        assert greedy_weights is not None
        assert forced_weights is not None
        assert torch.allclose(greedy_weights, forced_weights, atol=1e-6)


def test_the_plain_decoder_depends_only_on_the_last_encoder_state():
    model = _model(attention=False)
    a, b = torch.tensor([[1, 2, 3, 4]]), torch.tensor([[9, 9, 3, 4]])
    states_a, last_a = model.encoder(a)
    states_b, _ = model.encoder(b)
    tokens = torch.tensor([[BOS, 5, 6]])
    assert torch.equal(
        model.decoder(tokens, last_a, states_a)[0], model.decoder(tokens, last_a, states_b)[0]
    )


def test_position_accuracy_counts_right_digits():
    model = _model(attention=True)
    source = _digits(3, 5, 4)
    answers = model(source)[0].argmax(dim=-1)
    assert torch.equal(position_accuracy(model, source, answers), torch.ones(4))
    wrong = (answers + 1) % 10
    assert torch.equal(position_accuracy(model, source, wrong), torch.zeros(4))


# -- training -------------------------------------------------------------------


def _tiny_run(attention: bool, seed: int = 0, steps: int = 100) -> TrainingRun:
    config = Seq2SeqConfig(attention=attention, embed_size=4, hidden_size=16, attention_size=8)
    return train(config, lengths=(3, 4), steps=steps, batch_size=16, seed=seed, test_size=20)


@pytest.mark.parametrize("attention", [False, True])
def test_a_short_training_run_lowers_the_loss(attention):
    run = _tiny_run(attention)
    assert len(run.losses) == 100
    assert run.lengths == (3, 4)
    assert len(run.accuracy) == 2
    assert sum(run.losses[-5:]) < 0.85 * sum(run.losses[:5])
    assert all(0.0 <= a <= 1.0 for a in run.accuracy)
    assert not run.model.training
    assert run.seconds > 0


def test_training_is_reproducible_and_leaves_the_global_state_alone():
    state = torch.random.get_rng_state()
    first, second = _tiny_run(True, seed=5, steps=10), _tiny_run(True, seed=5, steps=10)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert first.losses == second.losses
    assert first.accuracy == second.accuracy
    assert _tiny_run(True, seed=6, steps=10).losses != first.losses


def test_alignment_shape():
    model = _model(attention=True)
    weights = alignment(model, torch.tensor([3, 1, 4, 1, 5]))
    assert weights.shape == (5, 5)
    assert torch.allclose(weights.sum(dim=-1), torch.ones(5), atol=1e-6)


def test_influence_equals_the_jacobian_norm():
    encoder = _model(attention=False).encoder
    source = _digits(4, 2, 5)
    got = influence(encoder, source)
    assert got.shape == (5,)
    assert (got > 0).all()
    expected = torch.zeros(5)
    for b in range(2):
        x = encoder.embedding(source[b : b + 1]).detach()  # (1, S, E)
        jac = torch.autograd.functional.jacobian(lambda e: encoder.gru(e)[1][0, 0], x)
        expected += jac.square().sum(dim=(0, 1, 3)).sqrt() / 2  # (N, 1, S, E) -> (S,)
    assert torch.allclose(got, expected, atol=1e-5)


# -- bad input ------------------------------------------------------------------


def test_bad_task_arguments():
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match=r"length must be a positive int, got 0"):
        digit_batch(2, 0, generator=g)
    with pytest.raises(TypeError, match=r"batch_size must be a positive int, got float 2.0"):
        digit_batch(2.0, 3, generator=g)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"generator must be a torch.Generator, got int"):
        digit_batch(2, 3, generator=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"task must be 'copy' or 'reverse', got 'sort'"):
        digit_batch(2, 3, generator=g, task="sort")  # type: ignore[arg-type]


def test_bad_attention_inputs():
    attend = AdditiveAttention(3, 4, 5)
    with pytest.raises(ValueError, match=r"keys must have shape \(B, S, key_size\)"):
        attend(torch.rand(2, 3), torch.rand(6, 4))
    with pytest.raises(ValueError, match=r"query must have last dimension query_size=3, got 2"):
        attend(torch.rand(2, 2), torch.rand(2, 6, 4))
    with pytest.raises(TypeError, match=r"query must be a floating-point tensor"):
        attend(torch.ones(2, 3, dtype=torch.int64), torch.rand(2, 6, 4))
    with pytest.raises(ValueError, match=r"attention_size must be a positive int, got 0"):
        AdditiveAttention(3, 4, 0)


def test_bad_model_inputs():
    model = _model(attention=True)
    with pytest.raises(TypeError, match=r"config must be a Seq2SeqConfig, got dict"):
        Seq2Seq({"attention": True})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"hidden_size must be a positive int, got -1"):
        Seq2Seq(Seq2SeqConfig(hidden_size=-1))
    with pytest.raises(ValueError, match=r"source must be a non-empty int64 tensor of shape"):
        model(torch.rand(2, 5))
    with pytest.raises(ValueError, match=r"source must hold digits 0 to 9, got values 0 to 10"):
        model(torch.tensor([[0, 10]]))
    with pytest.raises(ValueError, match=r"target must have batch size B=2, got 3"):
        model(_digits(0, 2, 4), _digits(0, 3, 4))
    with pytest.raises(TypeError, match=r"source must be a torch.Tensor, got list"):
        model([[1, 2]])  # type: ignore[arg-type]


def test_bad_measurement_arguments():
    model = _model(attention=False)
    with pytest.raises(ValueError, match=r"target must have the shape of source, \(2, 4\), got"):
        position_accuracy(model, _digits(0, 2, 4), _digits(0, 2, 5))
    with pytest.raises(TypeError, match=r"encoder must be an Encoder, got Seq2Seq"):
        influence(model, _digits(0, 2, 4))  # type: ignore[arg-type]


def test_bad_training_and_alignment_arguments():
    with pytest.raises(ValueError, match=r"lengths must hold at least one length"):
        train(TINY, lengths=())
    with pytest.raises(ValueError, match=r"lengths must be a positive int, got 0"):
        train(TINY, lengths=(3, 0))
    with pytest.raises(ValueError, match=r"lr must be a positive number, got -0.1"):
        train(TINY, lr=-0.1)
    with pytest.raises(ValueError, match=r"seed must be an int >= 0, got -1"):
        train(TINY, seed=-1)
    with pytest.raises(ValueError, match=r"model must be a Seq2Seq built with .*attention=True"):
        alignment(_model(attention=False), torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"source must have shape \(S,\), got shape \(1, 3\)"):
        alignment(_model(attention=True), torch.tensor([[1, 2, 3]]))
