"""Chapter 6: dropout on the scores, the weights or the context vectors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from attention import CausalAttention, causal_mask, masked_softmax, toy_inputs
from attention.dropout import (
    PLACEMENTS,
    PlacementAttention,
    drop_scores,
    dropout_attention,
    inverted_dropout,
    keep_mask,
)
from tests.conftest import generator, random_tensor

seeds = st.integers(0, 2**31 - 1)
rates = st.floats(0.05, 0.95)
tokens = st.integers(1, 8)
widths = st.integers(1, 4)

# CausalAttention(3, 2, 6, 0.0) with seed 123 on the running example (the book's numbers).
CAUSAL_SEED_123 = [
    [-0.4519, 0.2216],
    [-0.5874, 0.0058],
    [-0.6300, -0.0632],
    [-0.5675, -0.0843],
    [-0.5526, -0.0981],
    [-0.5299, -0.1081],
]


def _qkv(seed: int, t: int, d: int, b: int = 2, device="cpu") -> tuple[torch.Tensor, ...]:
    return tuple(random_tensor(seed + i, b, t, d, device=device) for i in range(3))


def _gen(seed: int, device="cpu") -> torch.Generator:
    return generator(device, seed)


@given(seed=seeds, t=tokens, d=widths, p=rates)
def test_eval_mode_is_the_identity_for_every_placement(device, seed, t, d, p):
    q, k, v = _qkv(seed, t, d, device=device)
    reference = dropout_attention(q, k, v, p=0.0, placement="weights", training=False)
    for placement in PLACEMENTS:
        out = dropout_attention(
            q, k, v, p=p, placement=placement, training=False, blocked=causal_mask(t, device=device)
        )
        causal = dropout_attention(
            q,
            k,
            v,
            p=0.0,
            placement=placement,
            training=False,
            blocked=causal_mask(t, device=device),
        )
        # exact: in eval mode every placement returns its input, so both calls run
        # the same operations on the same numbers
        assert torch.equal(out[0], causal[0])
        assert torch.equal(out[1], causal[1])
    unmasked = dropout_attention(q, k, v, p=p, placement="scores", training=False)
    # exact: an all-False mask only copies the scores; then the same softmax and product
    assert torch.equal(unmasked[0], reference[0])
    x = random_tensor(seed, t, d, device=device)
    assert inverted_dropout(x, p, training=False) is x
    # exact: booleans
    assert torch.equal(
        drop_scores(causal_mask(t, device=device), p, training=False), causal_mask(t, device=device)
    )


@given(seed=seeds, t=tokens, d=widths, p=rates)
def test_p_zero_changes_nothing_even_in_training(device, seed, t, d, p):
    q, k, v = _qkv(seed, t, d, device=device)
    for placement in PLACEMENTS:
        trained = dropout_attention(q, k, v, p=0.0, placement=placement, training=True)
        evaluated = dropout_attention(q, k, v, p=p, placement=placement, training=False)
        # exact: p = 0 returns the input untouched, so both run the same operations
        assert torch.equal(trained[0], evaluated[0])
        assert torch.equal(trained[1], evaluated[1])


@given(seed=seeds, t=tokens, d=widths, p=rates)
def test_weights_placement_keeps_zero_or_scaled_weights(device, seed, t, d, p):
    q, k, v = _qkv(seed, t, d, device=device)
    blocked = causal_mask(t, device=device)
    _, clean = dropout_attention(q, k, v, p=p, placement="weights", training=False, blocked=blocked)
    context, dropped = dropout_attention(
        q,
        k,
        v,
        p=p,
        placement="weights",
        training=True,
        blocked=blocked,
        generator=_gen(seed, device=device),
    )
    zero = dropped == 0  # exact: a dropped weight is 0 * w = 0
    # Relative: the survivors are scaled by up to 1 / (1 - 0.95) = 20.
    assert torch.allclose(dropped[~zero], clean[~zero] / (1 - p), rtol=1e-6, atol=0)
    assert torch.allclose(context, dropped @ v, atol=1e-6)


@given(seed=seeds, t=tokens, d=widths, p=rates)
def test_context_placement_keeps_zero_or_scaled_context(device, seed, t, d, p):
    q, k, v = _qkv(seed, t, d, device=device)
    clean, weights = dropout_attention(q, k, v, p=p, placement="context", training=False)
    dropped, same = dropout_attention(
        q, k, v, p=p, placement="context", training=True, generator=_gen(seed, device=device)
    )
    assert torch.equal(same, weights)  # exact: the weights are untouched, same operations
    zero = dropped == 0  # exact: a dropped entry is 0 * x = 0
    assert torch.allclose(dropped[~zero], clean[~zero] / (1 - p), rtol=1e-6, atol=0)


@given(seed=seeds, t=tokens, d=widths, p=st.floats(0.0, 0.99))
def test_scores_placement_keeps_rows_summing_to_one(device, seed, t, d, p):
    q, k, v = _qkv(seed, t, d, device=device)
    for blocked in (None, causal_mask(t, device=device)):
        context, weights = dropout_attention(
            q,
            k,
            v,
            p=p,
            placement="scores",
            training=True,
            blocked=blocked,
            generator=_gen(seed, device=device),
        )
        assert not weights.isnan().any()
        assert not context.isnan().any()
        assert torch.allclose(weights.sum(dim=-1), torch.ones(2, t, device=device), atol=1e-5)
        if blocked is not None:
            assert (weights.masked_select(blocked) == 0).all()  # exact: exp(-inf) = 0


def test_scores_placement_never_empties_a_row(device):
    """With p = 0.99 nearly every key is drawn for dropping: rows keep all their keys instead."""
    scores = random_tensor(0, 200, 6, 6, device=device)
    blocked = drop_scores(
        causal_mask(6, device=device).expand(200, 6, 6),
        0.99,
        training=True,
        generator=_gen(1, device=device),
    )
    weights = masked_softmax(scores, blocked)
    assert torch.allclose(weights.sum(dim=-1), torch.ones(200, 6, device=device), atol=1e-6, rtol=0)
    assert not blocked[:, 0, 0].any()  # the first token's only key is never dropped
    # exact: integer counts. The fallback is the causal row.
    assert torch.equal(blocked.sum(dim=-1).unique(), torch.arange(6, device=device))


def test_a_row_the_mask_blocks_entirely_stays_blocked(device):
    blocked = torch.tensor([[True, True], [False, True]], device=device)
    dropped = drop_scores(blocked, 0.5, training=True, generator=_gen(0, device=device))
    assert dropped[0].all()
    # exact: a fully blocked row is filled with 0
    assert torch.equal(
        masked_softmax(torch.zeros(2, 2, device=device), dropped)[0], torch.zeros(2, device=device)
    )


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_row_sums_average_one(device, p):
    """Many draws of one causal row: mean 1 within five standard errors."""
    weights = masked_softmax(
        toy_inputs(device=device) @ toy_inputs(device=device).T, causal_mask(6, device=device)
    )[5]  # (T,)
    draws = 20_000
    rows = inverted_dropout(
        weights.expand(draws, 6), p, training=True, generator=_gen(2024, device=device)
    )
    sums = rows.sum(dim=-1)  # (draws,)
    sd = math.sqrt(p / (1 - p)) * float(weights.norm())  # exact sd of one row sum
    assert abs(float(sums.mean()) - 1.0) < 5 * sd / math.sqrt(draws)
    assert abs(float(sums.std()) - sd) < 0.05 * sd


def test_a_single_weight_row_sums_to_zero_or_two(device):
    row = torch.tensor([1.0, 0.0, 0.0], device=device)
    sums = inverted_dropout(
        row.expand(100, 3), 0.5, training=True, generator=_gen(0, device=device)
    ).sum(dim=-1)
    assert set(sums.tolist()) == {0.0, 2.0}  # exact: 1 / (1 - 0.5) = 2, plus zeros


def test_keep_mask_rate_and_reproducibility(device):
    def draw(seed: int) -> torch.Tensor:
        return keep_mask((100_000,), 0.2, generator=_gen(seed, device), device=device)

    mask = draw(7)
    assert mask.dtype == torch.bool
    assert abs(mask.float().mean().item() - 0.8) < 0.01
    assert torch.equal(mask, draw(7))  # exact: bools
    assert not torch.equal(mask, draw(8))  # exact: bools


def test_generators_leave_the_global_random_state_alone():
    before = torch.get_rng_state()
    inverted_dropout(torch.ones(10), 0.5, training=True, generator=_gen(0))
    drop_scores(causal_mask(4), 0.5, training=True, generator=_gen(0))
    assert torch.equal(torch.get_rng_state(), before)  # exact: the generator's state bytes


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_placement_layer_in_eval_mode_is_the_books_layer(placement, batch):
    torch.manual_seed(123)
    book = CausalAttention(3, 2, 6, 0.5).eval()
    torch.manual_seed(123)
    layer = PlacementAttention(3, 2, 6, 0.5, placement=placement).eval()
    out = layer(batch)
    assert torch.allclose(out, book(batch), atol=1e-6)
    assert torch.allclose(out[0], torch.tensor(CAUSAL_SEED_123), atol=1e-4)


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_placement_layer_in_training_uses_its_generator(placement, device_batch):
    batch, device = device_batch, device_batch.device
    torch.manual_seed(123)
    layer = PlacementAttention(3, 2, 6, 0.5, placement=placement, generator=_gen(0, device))
    layer = layer.to(device).train()
    first, second = layer(batch), layer(batch)
    assert not torch.equal(first, second)  # exact: a fresh mask per call changes the numbers
    layer.generator = _gen(0, device)
    # exact: the same generator state draws the same mask; then the same operations
    assert torch.equal(layer(batch), first)
    _, weights = layer(batch, return_weights=True)
    if placement == "scores":
        assert torch.allclose(
            weights.sum(dim=-1), torch.ones(2, 6, device=device), atol=1e-6, rtol=0
        )


def test_bad_input():
    x = torch.ones(2, 3)
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
            inverted_dropout(x, bad, training=True)
    with pytest.raises(TypeError, match=r"p must be a float in \[0, 1\), got str '0.5'"):
        keep_mask((2,), "0.5")
    with pytest.raises(TypeError, match=r"p must be a float in \[0, 1\), got bool"):
        drop_scores(causal_mask(2), True, training=True)
    with pytest.raises(TypeError, match=r"training must be a bool, got int 1"):
        inverted_dropout(x, 0.5, training=1)
    with pytest.raises(TypeError, match=r"generator must be a torch.Generator or None, got int"):
        inverted_dropout(x, 0.5, training=True, generator=0)
    with pytest.raises(TypeError, match=r"blocked must have dtype torch.bool"):
        drop_scores(torch.zeros(2, 2), 0.5, training=True)
    with pytest.raises(ValueError, match=r"placement must be one of .*got 'keys'"):
        dropout_attention(x, x, x, p=0.1, placement="keys", training=True)
    with pytest.raises(ValueError, match=r"placement must be one of .*got 'keys'"):
        PlacementAttention(3, 2, 6, 0.1, placement="keys")
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.5"):
        PlacementAttention(3, 2, 6, 1.5)
    with pytest.raises(ValueError, match=r"keys must have last dimension queries' D=3, got 2"):
        dropout_attention(x, torch.ones(2, 2), x, p=0.1, placement="weights", training=True)
