"""Sinks and QK-norm: where a head puts its weight when nothing is relevant."""

from __future__ import annotations

import math
from typing import TypeVar

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from attention import MultiHeadAttention, masked_softmax
from attention.gpt import RMSNorm
from attention.scaling import scaling_experiment
from attention.sinks import (
    QKNormAttention,
    SinkAttention,
    first_token_share,
    qk_norm_experiment,
    qk_normalize,
    softmax_with_sink,
    softmax_with_sink_column,
    uniform_first_token_share,
)
from tests.conftest import random_tensor

seeds = st.integers(0, 2**31 - 1)
Layer = TypeVar("Layer", SinkAttention, QKNormAttention)


def _scores(seed: int, b: int, h: int, t: int, device: torch.device | str) -> torch.Tensor:
    """Causally masked random scores (B, H, T, T), spread wide (std 3)."""
    a = 3 * random_tensor(seed, b, h, t, t, device=device)  # (B, H, T, T)
    return a.masked_fill(torch.ones(t, t, dtype=torch.bool, device=device).triu(1), -torch.inf)


def _sink_share(scores: torch.Tensor, sinks: torch.Tensor) -> torch.Tensor:
    """exp(s) / (exp(s) + sum exp(a)), by log-sum-exp: (B, H, T_q)."""
    s = sinks.view(1, -1, 1).expand(scores.shape[:-1])  # (B, H, T_q)
    every = torch.cat((scores, s[..., None]), dim=-1)  # (B, H, T_q, T_k + 1)
    return torch.exp(s - torch.logsumexp(every, dim=-1))


def _seeded(cls: type[Layer], device: torch.device | str) -> Layer:
    """A layer drawn on the CPU from seed 123 (the same weights everywhere), then moved."""
    torch.manual_seed(123)
    return cls(4, 2, 6).to(device)


def _x(device: torch.device | str, *shape: int) -> torch.Tensor:
    return random_tensor(0, *(shape or (1, 6, 4)), device="cpu").to(device)


# -- softmax_with_sink ---------------------------------------------------------------


@given(seed=seeds, b=st.integers(1, 3), h=st.integers(1, 3), t=st.integers(1, 6))
def test_sink_softmax_equals_the_sink_column_form(device, seed, b, h, t):
    scores = _scores(seed, b, h, t, device)
    sinks = 3 * random_tensor(seed + 1, h, device=device)
    fast, column = softmax_with_sink(scores, sinks), softmax_with_sink_column(scores, sinks)
    assert fast.shape == (b, h, t, t)
    torch.testing.assert_close(fast, column, atol=1e-6, rtol=1e-5)


@given(seed=seeds, t=st.integers(1, 5))
def test_sink_softmax_gradients_equal_the_column_forms(device, seed, t):
    grads = []
    for form in (softmax_with_sink, softmax_with_sink_column):
        scores = _scores(seed, 2, 2, t, device).requires_grad_()
        sinks = random_tensor(seed + 1, 2, device=device).requires_grad_()
        upstream = random_tensor(seed + 2, 2, 2, t, t, device=device)
        (form(scores, sinks) * upstream).sum().backward()
        grads.append((scores.grad, sinks.grad))
    (fast_scores, fast_sinks), (column_scores, column_sinks) = grads
    torch.testing.assert_close(fast_scores, column_scores, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(fast_sinks, column_sinks, atol=1e-6, rtol=1e-5)


@given(seed=seeds, h=st.integers(1, 3), t=st.integers(1, 6))
def test_rows_sum_to_one_minus_the_sink_share(device, seed, h, t):
    scores = _scores(seed, 2, h, t, device)
    sinks = 3 * random_tensor(seed + 1, h, device=device)
    weights = softmax_with_sink(scores, sinks)
    torch.testing.assert_close(
        weights.sum(dim=-1), 1 - _sink_share(scores, sinks), atol=1e-6, rtol=1e-5
    )
    assert (weights >= 0).all()
    assert (weights.triu(diagonal=1) == 0).all()  # exact: exp(-inf) = 0


@given(seed=seeds, t=st.integers(1, 6), raise_by=st.floats(0.1, 5.0))
def test_a_larger_sink_takes_more_weight_from_every_row(device, seed, t, raise_by):
    scores, sinks = _scores(seed, 1, 2, t, device), torch.zeros(2, device=device)
    before = softmax_with_sink(scores, sinks).sum(dim=-1)  # (B, H, T)
    after = softmax_with_sink(scores, sinks + raise_by).sum(dim=-1)
    assert (after < before).all()


def test_a_minus_inf_sink_is_the_ordinary_softmax(device):
    scores = _scores(7, 2, 3, 5, device)
    off = torch.full((3,), -torch.inf, device=device)
    expected = masked_softmax(scores, torch.isneginf(scores))
    torch.testing.assert_close(softmax_with_sink(scores, off), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("sink", [0.0, -5.0, -torch.inf])
def test_a_fully_masked_row_gives_zeros_not_nan(device, sink):
    scores = torch.full((1, 1, 2, 3), -torch.inf, device=device)
    scores[0, 0, 1] = torch.tensor([0.5, -1.0, 2.0], device=device)  # row 0 sees no key
    sinks = torch.tensor([sink], device=device)
    for weights in (softmax_with_sink(scores, sinks), softmax_with_sink_column(scores, sinks)):
        assert not weights.isnan().any()
        assert (weights[0, 0, 0] == 0).all()  # exact: 0 / 1, or 0/0 returned as 0
        assert weights[0, 0, 1].sum() > 0


def test_sink_softmax_golden_values(device):
    # Three keys and a sink, all at logit 0: a quarter each. log 2 doubles the sink: 1/5 each.
    zeros = torch.zeros(1, 2, 1, 3, device=device)
    weights = softmax_with_sink(zeros, torch.tensor([0.0, math.log(2.0)], device=device))
    expected = torch.tensor([[0.25] * 3, [0.2] * 3], device=device).view(1, 2, 1, 3)
    torch.testing.assert_close(weights, expected, atol=1e-7, rtol=0)


def test_huge_scores_stay_finite(device):
    scores = torch.tensor([[[[1000.0, 990.0]]]], device=device)
    weights = softmax_with_sink(scores, torch.tensor([995.0], device=device))
    assert torch.isfinite(weights).all()
    expected = torch.softmax(torch.tensor([1000.0, 990.0, 995.0], device=device), dim=0)[:2]
    torch.testing.assert_close(weights.flatten(), expected, atol=1e-6, rtol=1e-5)


# -- SinkAttention ---------------------------------------------------------------------


def test_sink_attention_shapes_rows_and_causality(device):
    out, weights = _seeded(SinkAttention, device)(_x(device, 2, 5, 4), return_weights=True)
    assert out.shape == (2, 5, 4)
    assert weights.shape == (2, 2, 5, 5)
    assert (weights.triu(diagonal=1) == 0).all()  # exact: exp(-inf) = 0
    assert (weights.sum(dim=-1) < 1).all()  # the sink, at 0, always takes a share


def test_sink_attention_golden_values_seed_123(device):
    out, weights = _seeded(SinkAttention, device)(_x(device), return_weights=True)
    last = torch.tensor([-0.2279, 0.0580, -0.4032, 0.0352], device=device)
    sums = torch.tensor([0.4580, 0.5814, 0.8061, 0.7924, 0.8504, 0.8583], device=device)
    torch.testing.assert_close(out[0, -1], last, atol=1e-4, rtol=0)
    torch.testing.assert_close(weights.sum(dim=-1)[0, 0], sums, atol=1e-4, rtol=0)


def test_sinks_at_minus_inf_give_multihead_attention(device):
    """The same parameters under the same names: the sink is all that differs."""
    torch.manual_seed(0)
    reference = MultiHeadAttention(4, 4, 6, 0.0, num_heads=2).to(device)
    layer = SinkAttention(4, 2, 6).to(device)
    missing, unexpected = layer.load_state_dict(reference.state_dict(), strict=False)
    assert (missing, unexpected) == (["sinks"], [])
    with torch.no_grad():
        layer.sinks.fill_(-torch.inf)
    x = _x(device, 2, 6, 4)
    torch.testing.assert_close(layer(x), reference(x), atol=1e-6, rtol=1e-5)


def test_a_head_with_a_huge_sink_attends_to_nothing(device):
    layer = _seeded(SinkAttention, device)
    with torch.no_grad():
        layer.sinks.fill_(100.0)
    out, weights = layer(_x(device), return_weights=True)
    assert weights.max() < 1e-30
    # No context reaches the output projection: only its bias is left.
    torch.testing.assert_close(out[0], layer.out_proj.bias.expand(6, 4), atol=1e-6, rtol=0)


def test_the_sinks_learn(device):
    layer = _seeded(SinkAttention, device)
    layer(_x(device)).pow(2).sum().backward()
    grad = layer.sinks.grad
    assert isinstance(grad, torch.Tensor)
    assert bool((grad != 0).all())


# -- QK-norm ---------------------------------------------------------------------------


@given(seed=seeds, d=st.integers(1, 9))
def test_qk_normalize_equals_rms_norm(device, seed, d):
    x = random_tensor(seed, 2, 3, 4, d, device=device)
    g = random_tensor(seed + 1, d, device=device)
    torch.testing.assert_close(
        qk_normalize(x, g), F.rms_norm(x, (d,), g, 1e-6), atol=1e-6, rtol=1e-5
    )
    norm = RMSNorm(d, eps=1e-6).to(device)
    torch.testing.assert_close(qk_normalize(x), norm(x).detach(), atol=1e-6, rtol=1e-5)
    assert (qk_normalize(x).norm(dim=-1) <= math.sqrt(d) * (1 + 1e-6)).all()


@given(seed=seeds, t=st.integers(1, 6), log_scale=st.floats(-2.0, 3.0), gain=st.floats(0.1, 4.0))
def test_every_qk_normed_score_is_within_the_bound(device, seed, t, log_scale, gain):
    layer = _seeded(QKNormAttention, device)
    with torch.no_grad():
        layer.q_scale.mul_(gain * random_tensor(seed, 2, device=device))
        layer.k_scale.copy_(random_tensor(seed + 1, 2, device=device))
    x = 10**log_scale * random_tensor(seed + 2, 2, t, 4, device=device)
    bound = layer.score_bound()
    assert layer.scores(x).abs().max().item() <= bound * (1 + 1e-5)


def test_the_bound_is_sqrt_d_with_unit_gains_and_is_reached(device):
    layer = QKNormAttention(32, 2, 4, eps=1e-12).to(device)  # D = 16
    assert layer.score_bound() == 4.0  # exact: sqrt(16) * 1, unit gains
    with torch.no_grad():
        layer.W_query.weight.copy_(layer.W_key.weight)  # queries equal keys
        layer.k_scale.fill_(-2.0)  # the bound takes |g_q g_k|: now 8
        scores = layer.scores(random_tensor(0, 1, 4, 32, device=device))
    assert layer.score_bound() == 8.0  # exact: 4 * |1 * -2|
    # q . q = D for a unit-RMS q: the diagonal scores sit at the bound, -sqrt(D) * 2.
    expected = torch.full((1, 2, 4), -8.0, device=device)
    torch.testing.assert_close(scores.diagonal(dim1=-2, dim2=-1), expected, atol=1e-5, rtol=0)


@given(seed=seeds, t=st.integers(1, 6))
def test_input_scale_multiplies_plain_scores_and_leaves_qk_normed_ones(device, seed, t):
    plain = _seeded(SinkAttention, device)
    torch.manual_seed(123)
    # The same weights; an eps far below any mean square here, so the norm is exactly
    # scale-free (with eps = 1e-6, a query whose mean square is near eps would move).
    normed = QKNormAttention(4, 2, 6, eps=1e-12).to(device)
    x = random_tensor(seed, 2, t, 4, device=device)
    with torch.no_grad():
        # 1e-5: float32 rounding of dot products whose terms cancel
        torch.testing.assert_close(
            plain.scores(10 * x) / 100, plain.scores(x), atol=1e-5, rtol=1e-5
        )
        torch.testing.assert_close(normed.scores(10 * x), normed.scores(x), atol=1e-5, rtol=1e-5)


def test_qk_norm_attention_equals_rms_norm_then_sdpa(device):
    layer, x = _seeded(QKNormAttention, device), _x(device, 2, 6, 4)
    with torch.no_grad():
        layer.q_scale.copy_(torch.tensor([0.5, 2.0]))
        q = layer.W_query(x).view(2, 6, 2, 2).transpose(1, 2)  # (B, H, T, D)
        k = layer.W_key(x).view(2, 6, 2, 2).transpose(1, 2)
        v = layer.W_value(x).view(2, 6, 2, 2).transpose(1, 2)
        q, k = F.rms_norm(q, (2,), layer.q_scale, 1e-6), F.rms_norm(k, (2,), layer.k_scale, 1e-6)
        context = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, D)
        expected = layer.out_proj(context.transpose(1, 2).reshape(2, 6, 4))
        torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)


def test_qk_norm_attention_golden_values_and_rows(device):
    out, weights = _seeded(QKNormAttention, device)(_x(device), return_weights=True)
    assert out.shape == (1, 6, 4)
    last = torch.tensor([-0.2021, 0.0556, -0.6610, -0.0204], device=device)
    torch.testing.assert_close(out[0, -1], last, atol=1e-4, rtol=0)
    torch.testing.assert_close(
        weights.sum(dim=-1), torch.ones(1, 2, 6, device=device), atol=1e-6, rtol=1e-5
    )
    assert (weights.triu(diagonal=1) == 0).all()  # exact: exp(-inf) = 0


# -- chapter 4's experiment, with QK-norm -----------------------------------------------

D_KS = [4, 16, 64, 256]
SMALL = 16  # sequences per width, and tokens per sequence


@pytest.fixture(scope="module")
def unit() -> list:
    return qk_norm_experiment(D_KS, num_sequences=SMALL, num_tokens=SMALL)


def test_the_plain_columns_are_chapter_4s_numbers(unit):
    for point, chapter in zip(
        unit, scaling_experiment(D_KS, num_sequences=SMALL, num_tokens=SMALL), strict=True
    ):
        assert point.d_k == chapter.d_k
        # exact: the same generator, draws and operations (times 1.0, which rounds nothing)
        assert (point.unscaled, point.scaled) == (chapter.unscaled, chapter.scaled)


def test_qk_normed_spread_stays_near_one_as_plain_grows_like_sqrt_d(unit):
    for p in unit:
        assert p.unscaled.score_std == pytest.approx(math.sqrt(p.d_k), rel=0.1)
        assert p.qk_norm.score_std == pytest.approx(1.0, rel=0.1)
        assert p.qk_norm.saturated == 0.0  # exact: a fraction of counts


def test_qk_norm_ignores_the_inputs_scale_where_scaling_does_not(unit):
    wide = qk_norm_experiment(D_KS, input_std=3.0, num_sequences=SMALL, num_tokens=SMALL)
    for p, w in zip(unit, wide, strict=True):
        assert w.scaled.score_std == pytest.approx(9 * p.scaled.score_std, rel=1e-4)
        assert w.qk_norm.score_std == pytest.approx(p.qk_norm.score_std, rel=1e-4)
        assert w.qk_norm.max_weight == pytest.approx(p.qk_norm.max_weight, rel=1e-4)
    assert wide[-1].scaled.max_weight > 0.8  # scaled but wide inputs: near one-hot rows


def test_experiment_golden_values_seed_0():
    (p,) = qk_norm_experiment([16], num_sequences=4, num_tokens=8)
    assert p.qk_norm.score_std == pytest.approx(0.9475, abs=1e-4)
    assert p.qk_norm.max_weight == pytest.approx(0.3851, abs=1e-4)


def test_experiment_repeats_its_seed_on_the_device(device):
    first = qk_norm_experiment([4], num_sequences=2, num_tokens=4, device=device)
    assert first == qk_norm_experiment([4], num_sequences=2, num_tokens=4, device=device)


# -- the first-token share ---------------------------------------------------------------


def _uniform(t: int, device: torch.device | str) -> torch.Tensor:
    causal = torch.ones(t, t, device=device).tril()  # (T, T)
    return causal / causal.sum(dim=-1, keepdim=True)


def test_a_uniform_head_has_the_uniform_share(device):
    weights = _uniform(4, device).expand(3, 2, 4, 4)  # (B, H, T, T)
    share = first_token_share(weights)
    assert share.shape == (2,)
    assert uniform_first_token_share(4) == pytest.approx(13 / 36, abs=1e-12)  # (1/2+1/3+1/4)/3
    torch.testing.assert_close(
        share, torch.full((2,), 13 / 36, device=device), atol=1e-6, rtol=1e-5
    )


def test_known_shares_per_layer_and_head(device):
    sink = torch.zeros(4, 4, device=device)
    sink[:, 0] = 1.0  # every query on position 0
    half = 0.5 * sink + 0.5 * torch.eye(4, device=device)  # half there, half on itself
    weights = torch.stack((torch.stack((sink, half)), torch.stack((half, _uniform(4, device)))))
    share = first_token_share(weights[None])  # (1, N=2, H=2, T, T) -> (N, H)
    expected = torch.tensor([[1.0, 0.5], [0.5, 13 / 36]], device=device)
    torch.testing.assert_close(share, expected, atol=1e-6, rtol=1e-5)
    # From start=2: rows 2 and 3 only; a uniform head gives (1/3 + 1/4) / 2.
    assert first_token_share(weights[None], start=2)[1, 1].item() == pytest.approx(7 / 24, abs=1e-6)
    assert uniform_first_token_share(4, start=2) == pytest.approx(7 / 24, abs=1e-12)


@given(seed=seeds, t=st.integers(2, 7))
def test_shares_lie_between_zero_and_one(device, seed, t):
    weights = softmax_with_sink(_scores(seed, 2, 3, t, device), torch.zeros(3, device=device))
    share = first_token_share(weights)
    assert ((share >= 0) & (share <= 1)).all()
    assert 1 / t <= uniform_first_token_share(t) <= 0.5


# -- bad input -------------------------------------------------------------------------


def test_sink_softmax_rejects_bad_input():
    scores = torch.zeros(1, 2, 3, 3)
    with pytest.raises(ValueError, match=r"scores must have shape \(B, H, T_q, T_k\)"):
        softmax_with_sink(torch.zeros(2, 3, 3), torch.zeros(2))
    with pytest.raises(ValueError, match=r"sink_logits must have the same number of heads"):
        softmax_with_sink(scores, torch.zeros(3))
    with pytest.raises(TypeError, match=r"sink_logits must have the dtype of scores"):
        softmax_with_sink_column(scores, torch.zeros(2, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"scores must be a floating-point tensor"):
        softmax_with_sink(scores.long(), torch.zeros(2))
    with pytest.raises(TypeError, match=r"sink_logits must be a torch.Tensor, got list"):
        softmax_with_sink(scores, [0.0, 0.0])  # pyright: ignore[reportArgumentType]


@pytest.mark.parametrize("cls", [SinkAttention, QKNormAttention])
def test_layers_reject_bad_input(cls):
    with pytest.raises(ValueError, match=r"d_model must be divisible by num_heads.*d_model=6"):
        cls(6, 4, 8)
    with pytest.raises(ValueError, match=r"num_heads must be a positive int, got 0"):
        cls(4, 0, 8)
    layer = cls(4, 2, 6)
    with pytest.raises(ValueError, match=r"x must have last dimension d_in=4, got 3"):
        layer(torch.zeros(1, 5, 3))
    with pytest.raises(ValueError, match=r"x has 7 tokens, more than context_length=6"):
        layer(torch.zeros(1, 7, 4))
    with pytest.raises(ValueError, match=r"x must have shape \(B, T, C\)"):
        layer(torch.zeros(5, 4))
    with pytest.raises(TypeError, match=r"return_weights must be a bool, got int 1"):
        layer(torch.zeros(1, 5, 4), return_weights=1)


def test_qk_norm_rejects_bad_input():
    with pytest.raises(ValueError, match=r"scale must have last dimension D of x=4, got 3"):
        qk_normalize(torch.zeros(2, 4), torch.ones(3))
    with pytest.raises(ValueError, match=r"eps must be a positive number, got 0"):
        qk_normalize(torch.zeros(2, 4), eps=0.0)
    with pytest.raises(ValueError, match=r"eps must be a positive number, got -1"):
        QKNormAttention(4, 2, 6, eps=-1.0)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"d_ks": 16}, TypeError, r"d_ks must be a sequence of positive ints, got int"),
        ({"d_ks": []}, ValueError, r"d_ks must hold at least one width"),
        ({"d_ks": [4, 0]}, ValueError, r"d_ks\[1\] must be a positive int, got 0"),
        ({"d_ks": [4], "input_std": 0.0}, ValueError, r"input_std must be a positive number"),
        ({"d_ks": [4], "num_tokens": 1}, ValueError, r"num_tokens must be at least 2, got 1"),
        ({"d_ks": [4], "seed": -1}, ValueError, r"seed must be an int >= 0, got -1"),
    ],
)
def test_experiment_rejects_bad_input(kwargs, error, message):
    d_ks = kwargs.pop("d_ks")
    with pytest.raises(error, match=message):
        qk_norm_experiment(d_ks, **kwargs)


def test_first_token_share_rejects_bad_input():
    with pytest.raises(ValueError, match=r"weights must have shape \(B, H, T, T\) or"):
        first_token_share(torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"weights must be square .* got \(1, 1, 3, 4\)"):
        first_token_share(torch.zeros(1, 1, 3, 4))
    with pytest.raises(ValueError, match=r"start must be below the number of tokens T=3, got 3"):
        first_token_share(torch.zeros(1, 1, 3, 3), start=3)
    with pytest.raises(TypeError, match=r"start must be an int >= 0, got bool True"):
        uniform_first_token_share(4, start=True)
    with pytest.raises(ValueError, match=r"num_tokens must be a positive int, got 0"):
        uniform_first_token_share(0)
