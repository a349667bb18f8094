"""Chapter 12: the scores of the heads, and the training run that reports them."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from attention.induction import InductionConfig
from attention.induction_scores import (
    HalfScores,
    InductionRun,
    half_scores,
    induction_score,
    previous_token_score,
    train_induction,
    uniform_previous_token_score,
)
from tests.conftest import random_tensor
from tests.test_induction import TINY, _model, _tokens

# Tiny models train several times faster on one thread than on two.
pytestmark = pytest.mark.usefixtures("one_thread")


def _uniform_causal(t: int) -> torch.Tensor:
    """Every query spreads its attention evenly over itself and the tokens before it."""
    allowed = torch.ones(t, t).tril()  # (T, T)
    return allowed / allowed.sum(dim=-1, keepdim=True)


# -- the scores ----------------------------------------------------------------


def test_a_perfect_previous_token_head_scores_one():
    t = 7
    perfect = torch.zeros(t, t)
    perfect[0, 0] = 1.0
    perfect[torch.arange(1, t), torch.arange(0, t - 1)] = 1.0
    # exact: the mean of six 1.0s is 1.0, and of six 0.0s is 0.0
    assert previous_token_score(perfect).item() == 1.0
    assert previous_token_score(torch.eye(t)).item() == 0.0


@pytest.mark.parametrize("t", [2, 3, 8, 32])
def test_a_uniform_head_scores_the_mean_of_one_over_t(t):
    expected = sum(1 / (i + 1) for i in range(1, t)) / (t - 1)
    # The same sum in double precision, added in another order (fsum):
    assert uniform_previous_token_score(t) == pytest.approx(expected, rel=1e-12, abs=0)
    # float32 weights 1/(i+1), averaged: a few float32 roundings (~6e-8 each).
    assert previous_token_score(_uniform_causal(t)).item() == pytest.approx(
        expected, rel=1e-5, abs=0
    )


def test_uniform_previous_token_score_golden_values():
    assert uniform_previous_token_score(2) == 0.5  # exact: (1 / 2) / 1
    assert uniform_previous_token_score(3) == pytest.approx((1 / 2 + 1 / 3) / 2, rel=1e-12, abs=0)
    assert uniform_previous_token_score(32) == pytest.approx(0.0987, abs=1e-4)  # (H_32 - 1) / 31


def test_uniform_previous_token_score_needs_two_tokens():
    with pytest.raises(ValueError, match="tokens must be >= 2, got 1"):
        uniform_previous_token_score(1)
    with pytest.raises(ValueError, match="tokens"):
        uniform_previous_token_score(0)


def test_a_perfect_induction_head_scores_one():
    n, t = 4, 8
    perfect = torch.zeros(t, t)
    perfect[:, 0] = 1.0  # before the repeat: rest on the first token
    for row in range(n, t):
        perfect[row] = 0.0
        perfect[row, row - n + 1] = 1.0
    assert induction_score(perfect, n).item() == 1.0  # exact: the mean of 1.0s
    assert previous_token_score(perfect).item() < 0.5


def test_a_uniform_head_has_a_small_induction_score():
    n, t = 4, 8
    expected = sum(1 / (row + 1) for row in range(n, t)) / (t - n)
    assert induction_score(_uniform_causal(t), n).item() == pytest.approx(expected, rel=1e-5, abs=0)


@given(seed=st.integers(0, 2**31 - 1), n=st.integers(2, 5))
def test_scores_are_fractions_and_follow_leading_dimensions(seed, n):
    scores = random_tensor(seed, 3, 2, 2 * n, 2 * n)  # (B, H, T, T)
    weights = torch.softmax(scores, dim=-1)
    prev = previous_token_score(weights)
    ind = induction_score(weights, n)
    assert prev.shape == ind.shape == (3, 2)
    assert ((prev >= 0) & (prev <= 1)).all()
    assert ((ind >= 0) & (ind <= 1)).all()
    assert torch.allclose(ind[1, 0], induction_score(weights[1, 0], n), atol=1e-6, rtol=0)


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
    assert torch.equal(torch.random.get_rng_state(), state)  # exact: the state's bytes
    assert isinstance(first, InductionRun)
    # exact: seeded, the same operations on the same numbers again
    assert first.losses == again.losses
    assert torch.equal(first.induction, again.induction)  # exact: likewise
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
    model = _model()
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
