"""Chapter 12: the attention-only transformer, its task and the scores of its heads."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from attention.induction import (
    AttentionOnlyTransformer,
    HalfScores,
    InductionConfig,
    InductionRun,
    attention_patterns,
    half_scores,
    induction_score,
    previous_token_score,
    repeated_tokens,
    train_induction,
    uniform_previous_token_score,
)
from tests.conftest import random_tensor

TINY = InductionConfig(vocab_size=8, context_length=8, emb_dim=8, n_heads=2)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models train several times faster on one thread than on two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(config: InductionConfig = TINY, seed: int = 0) -> AttentionOnlyTransformer:
    torch.manual_seed(seed)
    return AttentionOnlyTransformer(config)


def _tokens(seed: int, batch: int, length: int, vocab: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return repeated_tokens(batch, length, vocab_size=vocab, generator=g)


def _uniform_causal(t: int) -> torch.Tensor:
    """Every query spreads its attention evenly over itself and the tokens before it."""
    allowed = torch.ones(t, t).tril()  # (T, T)
    return allowed / allowed.sum(dim=-1, keepdim=True)


# -- the task ------------------------------------------------------------------


def test_repeated_tokens_golden_values():
    x = repeated_tokens(2, 3, vocab_size=10, generator=torch.Generator().manual_seed(0), tokens=7)
    assert x.tolist() == [[4, 9, 3, 4, 9, 3, 4], [0, 3, 9, 0, 3, 9, 0]]


@given(
    seed=st.integers(0, 2**31 - 1),
    b=st.integers(1, 4),
    n=st.integers(1, 9),
    extra=st.integers(0, 20),
)
def test_repeated_tokens_are_periodic(seed, b, n, extra):
    x = repeated_tokens(
        b, n, vocab_size=5, generator=torch.Generator().manual_seed(seed), tokens=n + extra
    )
    assert x.shape == (b, n + extra)
    assert x.dtype == torch.int64
    assert x.min() >= 0
    assert x.max() < 5
    for t in range(n, n + extra):
        assert torch.equal(x[:, t], x[:, t - n])


def test_repeated_tokens_default_to_two_copies_and_leave_the_global_state_alone():
    state = torch.random.get_rng_state()
    x = _tokens(3, 4, 6)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert x.shape == (4, 12)
    assert torch.equal(x[:, :6], x[:, 6:])
    assert torch.equal(x, _tokens(3, 4, 6))
    assert not torch.equal(x, _tokens(4, 4, 6))


# -- the model -----------------------------------------------------------------


def test_model_shapes_and_weights():
    model = _model()
    x = _tokens(0, 3, 4)  # (3, 8)
    logits, weights = model(x, return_weights=True)
    assert logits.shape == (3, 8, 8)
    assert weights.shape == (3, 2, 2, 8, 8)  # (B, N, H, T, T)
    assert torch.allclose(weights.sum(dim=-1), torch.ones(3, 2, 2, 8))
    assert torch.equal(model(x), logits)


def test_model_has_no_mlp_and_no_norm():
    kinds = {type(m).__name__ for m in _model().modules()}
    assert kinds == {
        "AttentionOnlyTransformer",
        "Embedding",
        "ModuleList",
        "MultiHeadAttention",
        "Linear",
        "Dropout",
    }


def test_model_is_causal():
    model = _model()
    x = _tokens(1, 2, 4)
    weights = model(x, return_weights=True)[1]
    above = torch.ones(8, 8, dtype=torch.bool).triu(diagonal=1)
    assert (weights[..., above] == 0).all()
    changed = x.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % 8  # change only the future of position 4
    assert torch.allclose(model(changed)[:, :5], model(x)[:, :5])
    assert not torch.allclose(model(changed)[:, 5:], model(x)[:, 5:])


def test_attention_patterns_are_one_sequences_weights():
    model = _model()
    x = _tokens(2, 1, 3)[0]  # (6,)
    patterns = attention_patterns(model, x)
    assert patterns.shape == (2, 2, 6, 6)  # (N, H, T, T)
    assert torch.equal(patterns, model(x[None], return_weights=True)[1][0])
    assert not patterns.requires_grad


def test_same_seed_same_model():
    x = _tokens(0, 2, 4)
    assert torch.equal(_model(seed=5)(x), _model(seed=5)(x))
    assert not torch.equal(_model(seed=5)(x), _model(seed=6)(x))


# -- the scores ----------------------------------------------------------------


def test_a_perfect_previous_token_head_scores_one():
    t = 7
    perfect = torch.zeros(t, t)
    perfect[0, 0] = 1.0
    perfect[torch.arange(1, t), torch.arange(0, t - 1)] = 1.0
    assert previous_token_score(perfect).item() == 1.0
    assert previous_token_score(torch.eye(t)).item() == 0.0


@pytest.mark.parametrize("t", [2, 3, 8, 32])
def test_a_uniform_head_scores_the_mean_of_one_over_t(t):
    expected = sum(1 / (i + 1) for i in range(1, t)) / (t - 1)
    assert uniform_previous_token_score(t) == pytest.approx(expected)
    assert previous_token_score(_uniform_causal(t)).item() == pytest.approx(expected)


def test_uniform_previous_token_score_golden_values():
    assert uniform_previous_token_score(2) == 0.5
    assert uniform_previous_token_score(3) == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert uniform_previous_token_score(32) == pytest.approx(0.0987, abs=1e-4)  # (H_32 - 1) / 31


def test_a_perfect_induction_head_scores_one():
    n, t = 4, 8
    perfect = torch.zeros(t, t)
    perfect[:, 0] = 1.0  # before the repeat: rest on the first token
    for row in range(n, t):
        perfect[row] = 0.0
        perfect[row, row - n + 1] = 1.0
    assert induction_score(perfect, n).item() == 1.0
    assert previous_token_score(perfect).item() < 0.5


def test_a_uniform_head_has_a_small_induction_score():
    n, t = 4, 8
    expected = sum(1 / (row + 1) for row in range(n, t)) / (t - n)
    assert induction_score(_uniform_causal(t), n).item() == pytest.approx(expected)


@given(seed=st.integers(0, 2**31 - 1), n=st.integers(2, 5))
def test_scores_are_fractions_and_follow_leading_dimensions(seed, n):
    scores = random_tensor(seed, 3, 2, 2 * n, 2 * n)  # (B, H, T, T)
    weights = torch.softmax(scores, dim=-1)
    prev = previous_token_score(weights)
    ind = induction_score(weights, n)
    assert prev.shape == ind.shape == (3, 2)
    assert ((prev >= 0) & (prev <= 1)).all()
    assert ((ind >= 0) & (ind <= 1)).all()
    assert torch.allclose(ind[1, 0], induction_score(weights[1, 0], n))


# -- halves, training ----------------------------------------------------------


def test_half_scores_of_an_untrained_model_are_near_chance():
    scores = half_scores(_model(), _tokens(0, 64, 4))
    assert isinstance(scores, HalfScores)
    for loss in (scores.first_loss, scores.second_loss):
        assert abs(loss - math.log(8)) < 1.0
    for accuracy in (scores.first_accuracy, scores.second_accuracy):
        assert 0.0 <= accuracy < 0.4


def test_training_is_deterministic_and_leaves_the_global_state_alone():
    state = torch.random.get_rng_state()
    first = train_induction(TINY, steps=5, batch_size=4, test_size=4, seed=3)
    again = train_induction(TINY, steps=5, batch_size=4, test_size=4, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert isinstance(first, InductionRun)
    assert first.losses == again.losses
    assert torch.equal(first.induction, again.induction)
    assert first.length == 4
    assert first.previous_token.shape == first.induction.shape == (2, 2)
    assert not first.model.training


def test_training_golden_losses():
    run = train_induction(TINY, steps=3, batch_size=4, test_size=4)
    assert run.losses == pytest.approx((2.5879, 2.1969, 2.3382), abs=1e-3)


def test_a_short_run_reduces_the_loss():
    run = train_induction(TINY, steps=120, batch_size=16, test_size=16)
    assert sum(run.losses[-20:]) < sum(run.losses[:20]) - 20 * 0.1


def test_a_small_model_learns_a_previous_token_head_then_an_induction_head():
    config = InductionConfig(context_length=16)
    run = train_induction(config, steps=800, batch_size=32, test_size=100)
    assert run.scores.second_accuracy > 0.9 > 0.1 > run.scores.first_accuracy
    prev, ind = run.previous_token, run.induction  # (N, H)
    assert prev[0].max() > 0.35 > prev[1].max()
    assert prev[0].max() > 2 * uniform_previous_token_score(16)
    assert ind[1].max() > 0.6 > 0.3 > ind[0].max()


# -- errors --------------------------------------------------------------------


def test_bad_inputs_raise_named_errors():
    g = torch.Generator()
    with pytest.raises(TypeError, match="generator"):
        repeated_tokens(2, 3, vocab_size=5, generator=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tokens must be >= length=3"):
        repeated_tokens(2, 3, vocab_size=5, generator=g, tokens=2)
    with pytest.raises(ValueError, match="vocab_size"):
        repeated_tokens(2, 3, vocab_size=0, generator=g)
    with pytest.raises(TypeError, match="config must be an InductionConfig"):
        AttentionOnlyTransformer({"vocab_size": 8})  # type: ignore[arg-type]
    model = _model()
    with pytest.raises(ValueError, match="int64"):
        model(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="context_length=8"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="ids 0 to 7"):
        model(torch.full((1, 4), 8))
    with pytest.raises(ValueError, match=r"shape \(T,\)"):
        attention_patterns(model, torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="square"):
        previous_token_score(torch.rand(3, 4))
    with pytest.raises(ValueError, match="T >= 2"):
        previous_token_score(torch.ones(1, 1))
    with pytest.raises(ValueError, match="length must be in"):
        induction_score(torch.rand(4, 4), 4)
    with pytest.raises(ValueError, match="followed by themselves"):
        half_scores(model, torch.arange(8)[None] % 8)
    with pytest.raises(ValueError, match="min_length"):
        train_induction(TINY, min_length=1)
    with pytest.raises(ValueError, match="max_length"):
        train_induction(TINY, max_length=5)
    with pytest.raises(ValueError, match="lr"):
        train_induction(TINY, lr=0.0)
    with pytest.raises(ValueError, match="seed"):
        train_induction(TINY, seed=-1)
