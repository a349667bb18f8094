"""Chapter 1: encoder-decoder RNNs, additive attention and the toy copy task.

Training and the measurements of a trained model are tested in test_rnn_training.py.
"""

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
    digit_batch,
)
from tests.conftest import generator, random_tensor

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(attention: bool, seed: int = 0, device: torch.device | str = "cpu") -> Seq2Seq:
    torch.manual_seed(seed)
    return Seq2Seq(Seq2SeqConfig(attention=attention, embed_size=4, hidden_size=8)).to(device)


def _digits(seed: int, batch: int, length: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """A batch of digit strings drawn on ``device`` (digit_batch draws on its generator's)."""
    return digit_batch(batch, length, generator=generator(device, seed))[0]


# -- the task ------------------------------------------------------------------


def test_digit_batch_golden_values():
    source, target = digit_batch(2, 6, generator=torch.Generator().manual_seed(0))  # cpu: golden
    assert source.tolist() == [[4, 9, 3, 0, 3, 9], [7, 3, 7, 3, 1, 6]]
    assert torch.equal(target, source)  # exact: integer digits


def test_digit_batch_is_deterministic_and_leaves_the_global_state_alone():
    # About the CPU's global generator: the draws here stay on the CPU.
    state = torch.random.get_rng_state()
    first = digit_batch(4, 7, generator=torch.Generator().manual_seed(3), task="reverse")  # cpu:
    again = digit_batch(4, 7, generator=torch.Generator().manual_seed(3), task="reverse")  # cpu:
    assert torch.equal(torch.random.get_rng_state(), state)  # exact: the state's bytes
    # exact: integer digits
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    other = digit_batch(4, 7, generator=torch.Generator().manual_seed(4), task="reverse")  # cpu:
    assert not torch.equal(first[0], other[0])  # exact: integer digits


@given(seed=st.integers(0, 2**31 - 1), b=st.integers(1, 4), s=st.integers(1, 12))
def test_targets_are_the_copy_or_the_reversal(device, seed, b, s):
    source, copied = digit_batch(b, s, generator=generator(device, seed))
    same, reversed_ = digit_batch(b, s, generator=generator(device, seed), task="reverse")
    assert source.device.type == device.type
    assert torch.equal(source, same)  # exact: integer digits
    assert source.shape == (b, s)
    assert source.dtype == torch.int64
    assert source.min() >= 0
    assert source.max() <= 9
    assert torch.equal(copied, source)  # exact: integer digits
    for i in range(s):
        assert torch.equal(reversed_[:, i], source[:, s - 1 - i])  # exact: integer digits


# -- additive attention ---------------------------------------------------------


def test_additive_attention_equals_a_loop_over_positions(device):
    torch.manual_seed(0)
    attend = AdditiveAttention(3, 4, 5).to(device)
    query, keys = random_tensor(1, 2, 3, device=device), random_tensor(2, 2, 6, 4, device=device)
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


def test_precomputed_keys_give_the_same_result(device):
    attend = AdditiveAttention(3, 4, 5).to(device)
    query, keys = random_tensor(1, 2, 3, device=device), random_tensor(2, 2, 6, 4, device=device)
    plain = attend(query, keys)
    cached = attend(query, keys, attend.W_h(keys))
    # exact: the precomputed keys are the same W_h(keys) the layer computes itself
    assert all(torch.equal(a, b) for a, b in zip(plain, cached, strict=True))


@given(
    seed=st.integers(0, 2**31 - 1),
    b=st.integers(1, 3),
    s=st.integers(1, 9),
    scale=st.floats(0.1, 50.0),
)
def test_weights_are_non_negative_and_sum_to_one(device, seed, b, s, scale):
    torch.manual_seed(seed)
    attend = AdditiveAttention(3, 4, 5).to(device)
    context, weights = attend(
        random_tensor(seed, b, 3, device=device) * scale,
        random_tensor(seed + 1, b, s, 4, device=device) * scale,
    )
    assert weights.shape == (b, s)
    assert context.shape == (b, 4)
    assert (weights >= 0).all()
    assert torch.allclose(weights.sum(dim=-1), torch.ones(b, device=device), atol=1e-6)


# -- encoder, decoders, model ---------------------------------------------------


def test_shapes_of_every_component(device):
    source = _digits(0, 3, 5, device)  # (B, S)
    states, last = Encoder(4, 8).to(device)(source)
    assert states.shape == (3, 5, 8)
    assert last.shape == (3, 8)
    assert torch.equal(states[:, -1], last)  # exact: the GRU returns its last state twice
    tokens = torch.full((3, 7), BOS, device=device)  # (B, T)
    logits, state, weights = Decoder(4, 8).to(device)(tokens, last, states)
    assert logits.shape == (3, 7, VOCAB_SIZE)
    assert state.shape == (3, 8)
    assert weights is None
    logits, state, weights = AttentionDecoder(4, 8, 6).to(device)(tokens, last, states)
    assert logits.shape == (3, 7, VOCAB_SIZE)
    assert state.shape == (3, 8)
    assert weights is not None
    assert weights.shape == (3, 7, 5)


@pytest.mark.parametrize("attention", [False, True])
def test_seq2seq_shapes_with_and_without_a_target(device, attention):
    model = _model(attention, device=device)
    source, target = _digits(0, 3, 5, device), _digits(1, 3, 4, device)
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
def test_greedy_decoding_equals_teacher_forcing_on_its_own_answers(device, attention):
    # Greedy decoding runs one step per call; teacher forcing runs the whole
    # string at once. Fed the greedy answers, the two must agree.
    model = _model(attention, device=device)
    source = _digits(2, 4, 6, device)
    greedy, greedy_weights = model(source)
    forced, forced_weights = model(source, greedy.argmax(dim=-1))
    assert torch.allclose(greedy, forced, atol=1e-5)
    if attention:
        assert greedy_weights is not None
        assert forced_weights is not None
        assert torch.allclose(greedy_weights, forced_weights, atol=1e-6)


def test_the_plain_decoder_depends_only_on_the_last_encoder_state(device):
    model = _model(attention=False, device=device)
    a = torch.tensor([[1, 2, 3, 4]], device=device)
    b = torch.tensor([[9, 9, 3, 4]], device=device)
    states_a, last_a = model.encoder(a)
    states_b, _ = model.encoder(b)
    tokens = torch.tensor([[BOS, 5, 6]], device=device)
    # exact: the plain decoder never reads the states, so both run the same operations
    assert torch.equal(
        model.decoder(tokens, last_a, states_a)[0], model.decoder(tokens, last_a, states_b)[0]
    )


# -- bad input ------------------------------------------------------------------


def test_bad_task_arguments():
    g = torch.Generator().manual_seed(0)  # cpu: about the arguments, not the draws
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
    with pytest.raises(TypeError, match=r"source must be an int64 tensor of digits, got dtype"):
        model(torch.rand(2, 5))
    with pytest.raises(ValueError, match=r"source must be a non-empty int64 tensor of shape"):
        model(torch.zeros(2, 0, dtype=torch.int64))
    with pytest.raises(TypeError, match=r"attention must be a bool, got str"):
        Seq2Seq(Seq2SeqConfig(attention="yes"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"source must hold digits 0 to 9, got values 0 to 10"):
        model(torch.tensor([[0, 10]]))
    with pytest.raises(ValueError, match=r"target must have batch size B=2, got 3"):
        model(_digits(0, 2, 4), _digits(0, 3, 4))
    with pytest.raises(TypeError, match=r"source must be a torch.Tensor, got list"):
        model([[1, 2]])  # type: ignore[arg-type]
