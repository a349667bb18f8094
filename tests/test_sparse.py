"""DeepSeek sparse attention: the lightning indexer, the top-k mask and the layer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from attention.functional import causal_mask
from attention.sparse import (
    SparseAttention,
    lightning_index_scores,
    sparse_attention_cost,
    topk_causal_mask,
)
from tests.conftest import random_tensor

ATOL = RTOL = 1e-5  # float32: the same sums in another order


def _layer(seed: int, device, *, top_k: int, **options) -> SparseAttention:
    """A seeded layer, drawn on the CPU and moved: the same weights on every device."""
    torch.manual_seed(seed)
    return SparseAttention(8, 8, 16, 2, top_k=top_k, index_heads=3, index_dim=4, **options).to(
        device
    )


def _index_by_loops(q, k, w):
    """The formula term by term: I[b, t, s] = sum_j w[b, t, j] relu(q[b, t, j] . k[b, s])."""
    b, t, h, _ = q.shape
    out = torch.zeros(b, t, k.shape[1], device=q.device)
    for n in range(b):
        for i in range(t):
            for s in range(k.shape[1]):
                out[n, i, s] = sum(w[n, i, j] * torch.relu(q[n, i, j] @ k[n, s]) for j in range(h))
    return out


def _attend_to_selection(layer: SparseAttention, x):
    """The readable form: for each query, gather its selected keys and values, softmax over them."""
    att = layer.attn
    keep = topk_causal_mask(layer.index_scores(x), layer.top_k)  # (B, T, T), True = may attend
    q, k, v = (att._split_heads(p(x)) for p in (att.W_query, att.W_key, att.W_value))
    out = torch.zeros_like(q)  # (B, H, T, D)
    for n in range(x.shape[0]):
        for t in range(x.shape[1]):
            chosen = keep[n, t].nonzero().flatten()  # the selected key positions
            scores = q[n, :, t : t + 1] @ k[n, :, chosen].transpose(-1, -2)  # (H, 1, k)
            weights = torch.softmax(scores / att.head_dim**0.5, dim=-1)
            out[n, :, t] = (weights @ v[n, :, chosen])[:, 0]  # (H, D)
    return att.out_proj(out.transpose(1, 2).reshape(x.shape))


# -- the lightning indexer --------------------------------------------------------------


def test_index_scores_equal_the_formula_term_by_term(device) -> None:
    q = random_tensor(0, 2, 3, 3, 4, device=device)  # (B, T, H_I, D_I)
    k = random_tensor(1, 2, 4, 4, device=device)  # (B, S, D_I)
    w = random_tensor(2, 2, 3, 3, device=device)  # (B, T, H_I)
    scores = lightning_index_scores(q, k, w)
    assert scores.shape == (2, 3, 4)
    torch.testing.assert_close(scores, _index_by_loops(q, k, w), atol=ATOL, rtol=RTOL)


def test_negative_dot_products_contribute_nothing(device) -> None:
    """ReLU: a key every head scores below zero gets index 0, whatever the weights."""
    q = torch.ones(1, 1, 2, 3, device=device)  # (B, T, H_I, D_I)
    k = torch.tensor([[[-1.0, -1.0, -1.0], [1.0, 0.0, 0.0]]], device=device)  # (B, S, D_I)
    w = torch.tensor([[[2.0, -0.5]]], device=device)
    scores = lightning_index_scores(q, k, w)
    assert scores.tolist() == [[[0.0, 1.5]]]  # exact: small integers and halves


# -- the top-k mask ---------------------------------------------------------------------


def test_mask_polarity_true_means_may_attend(device) -> None:
    """The best-scored causal keys are True; the future is False even when it scores best."""
    scores = torch.tensor(
        [[0.0, 9.0, 9.0, 9.0], [1.0, 2.0, 9.0, 9.0], [3.0, 1.0, 2.0, 9.0], [0.0, 5.0, 4.0, 6.0]],
        device=device,
    )
    keep = topk_causal_mask(scores, 2)
    assert keep.dtype == torch.bool
    assert keep.int().tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 1]]


def test_k_at_least_t_keeps_every_causal_key(device) -> None:
    scores = random_tensor(3, 2, 5, 5, device=device)
    for k in (5, 9):
        # exact: boolean masks
        assert torch.equal(
            topk_causal_mask(scores, k), ~causal_mask(5, device=device).expand(2, 5, 5)
        )


@settings(max_examples=30)
@given(seed=st.integers(0, 2**16), t=st.integers(1, 12), k=st.integers(1, 14))
def test_rows_hold_min_k_t_causal_keys_with_the_best_scores(device, seed, t, k) -> None:
    scores = random_tensor(seed, 3, t, t, device=device)  # (B, T, T)
    keep = topk_causal_mask(scores, k)
    counts = keep.sum(dim=-1)  # (B, T)
    expected = torch.clamp(torch.arange(1, t + 1, device=device), max=k)
    assert torch.equal(counts, expected.expand(3, t))  # exact: integer counts
    assert not (keep & causal_mask(t, device=device)).any()  # nothing after the diagonal
    past = ~causal_mask(t, device=device)
    worst_kept = scores.masked_fill(~keep, torch.inf).amin(dim=-1)  # (B, T)
    best_dropped = scores.masked_fill(keep | ~past, -torch.inf).amax(dim=-1)  # (B, T)
    assert (worst_kept >= best_dropped).all()


# -- the layer ---------------------------------------------------------------------------


def test_shapes(device) -> None:
    layer = _layer(0, device, top_k=3)
    out, weights = layer(random_tensor(0, 2, 7, 8, device=device), return_weights=True)
    assert out.shape == (2, 7, 8)
    assert weights.shape == (2, 2, 7, 7)  # (B, H, T, T)


@pytest.mark.parametrize("impl", ["manual", "sdpa"])
def test_k_at_least_t_equals_full_causal_attention(device, impl) -> None:
    layer = _layer(1, device, top_k=6, impl=impl)
    x = random_tensor(1, 2, 6, 8, device=device)
    torch.testing.assert_close(layer(x), layer.attn(x), atol=ATOL, rtol=RTOL)


def test_masked_layer_equals_gathering_the_selected_keys(device) -> None:
    layer = _layer(2, device, top_k=3)
    x = random_tensor(2, 2, 8, 8, device=device)
    torch.testing.assert_close(layer(x), _attend_to_selection(layer, x), atol=ATOL, rtol=RTOL)


def test_sdpa_path_equals_manual(device) -> None:
    manual, fast = _layer(3, device, top_k=2), _layer(3, device, top_k=2, impl="sdpa")
    x = random_tensor(3, 2, 9, 8, device=device)
    torch.testing.assert_close(fast(x), manual(x), atol=ATOL, rtol=RTOL)


@settings(max_examples=20)
@given(seed=st.integers(0, 2**16), t=st.integers(1, 10), k=st.integers(1, 12))
def test_each_query_attends_to_min_k_t_keys_never_the_future(device, seed, t, k) -> None:
    layer = _layer(seed, device, top_k=k)
    x = random_tensor(seed, 2, t, 8, device=device)
    _, weights = layer(x, return_weights=True)  # (B, H, T, T)
    assert not (weights > 0).logical_and(causal_mask(t, device=device)).any()
    counts = (weights > 0).sum(dim=-1)  # (B, H, T)
    # exact: integer counts
    assert torch.equal(
        counts, torch.clamp(torch.arange(1, t + 1, device=device), max=k).expand(2, 2, t)
    )
    # changing the future changes no earlier output: the selection is causal too
    cut = t // 2
    changed = torch.cat((x[:, : cut + 1], -x[:, cut + 1 :]), dim=1)
    torch.testing.assert_close(
        layer(changed)[:, : cut + 1], layer(x)[:, : cut + 1], atol=ATOL, rtol=RTOL
    )


def test_golden_seed_0(device) -> None:
    layer = _layer(0, device, top_k=2)
    x = random_tensor(0, 1, 5, 8).to(device)  # drawn on the CPU: the same tokens everywhere
    keep = topk_causal_mask(layer.index_scores(x), 2)  # (B, T, T), no ties among these scores
    # the last query picks keys 0 and 1, not itself: nothing forces a token to see itself
    selected = [[0], [0, 1], [0, 2], [1, 3], [0, 1]]
    assert [row.nonzero().flatten().tolist() for row in keep[0]] == selected
    expected = torch.tensor([-0.6469, -0.4262, -0.6209, -0.4030, -0.5349], device=device)
    torch.testing.assert_close(layer(x)[0, :, 0], expected, atol=1e-4, rtol=0)


def test_indexer_loss_equals_kl_div_row_by_row(device) -> None:
    layer = _layer(4, device, top_k=2)
    x = random_tensor(4, 2, 6, 8, device=device)
    _, dense = layer.attn(x, return_weights=True)  # (B, H, T, T)
    target = dense.sum(dim=1) / dense.shape[1]  # (B, T, T): each row already sums to 1
    scores = layer.index_scores(x)  # (B, T, T)
    rows = [
        F.kl_div(scores[b, t, : t + 1].log_softmax(-1), target[b, t, : t + 1], reduction="sum")
        for b in range(2)
        for t in range(6)
    ]
    torch.testing.assert_close(
        layer.indexer_loss(x), torch.stack(rows).mean(), atol=ATOL, rtol=RTOL
    )


def test_indexer_loss_trains_the_indexer_only(device) -> None:
    layer = _layer(5, device, top_k=2)
    x = random_tensor(5, 2, 8, 8, device=device)
    loss = layer.indexer_loss(x)
    loss.backward()
    assert loss.item() >= 0.0
    assert all(p.grad is None for p in layer.attn.parameters())
    assert layer.index_query.weight.grad is not None
    assert layer.index_query.weight.grad.abs().sum() > 0
    optimizer = torch.optim.Adam(
        [
            *layer.index_query.parameters(),
            *layer.index_key.parameters(),
            *layer.index_weight.parameters(),
        ],
        lr=0.05,
    )
    for _ in range(30):
        optimizer.zero_grad()
        layer.indexer_loss(x).backward()
        optimizer.step()
    assert layer.indexer_loss(x).item() < 0.5 * loss.item()


# -- the cost ----------------------------------------------------------------------------


def test_cost_formulas() -> None:
    c = sparse_attention_cost(10, top_k=4, d_model=8, index_heads=2, index_dim=3)
    assert (c.dense_pairs, c.sparse_pairs, c.indexer_pairs) == (55, 10 + 6 * 4, 55)
    assert (c.dense_macs, c.sparse_macs, c.indexer_macs) == (2 * 8 * 55, 2 * 8 * 34, 4 * 2 * 55)


@pytest.mark.parametrize(("t", "k"), [(1, 1), (7, 3), (9, 9), (6, 20)])
def test_cost_counts_the_masks_true_entries(device, t, k) -> None:
    cost = sparse_attention_cost(t, top_k=k, d_model=4, index_heads=1, index_dim=1)
    scores = random_tensor(t, t, t, device=device)
    assert int(topk_causal_mask(scores, k).sum()) == cost.sparse_pairs
    assert int((~causal_mask(t, device=device)).sum()) == cost.dense_pairs == cost.indexer_pairs


# -- bad inputs -------------------------------------------------------------------------


def test_bad_indexer_inputs_are_named(device) -> None:
    q = random_tensor(0, 1, 3, 2, 4, device=device)
    k = random_tensor(0, 1, 3, 4, device=device)
    w = random_tensor(0, 1, 3, 2, device=device)
    with pytest.raises(ValueError, match=r"queries must have shape \(B, T, H_I, D_I\)"):
        lightning_index_scores(q[0], k, w)
    with pytest.raises(ValueError, match=r"keys must have last dimension D_I"):
        lightning_index_scores(q, k[..., :3], w)
    with pytest.raises(ValueError, match=r"keys must have the same batch size B as queries"):
        lightning_index_scores(q, k.expand(2, 3, 4), w)
    with pytest.raises(ValueError, match=r"weights must have shape \(B, T, H_I\) = \(1, 3, 2\)"):
        lightning_index_scores(q, k, w[..., :1])
    with pytest.raises(TypeError, match=r"weights must be a floating-point tensor"):
        lightning_index_scores(q, k, w.long())


def test_bad_mask_and_layer_inputs_are_named(device) -> None:
    scores = random_tensor(0, 4, 4, device=device)
    with pytest.raises(ValueError, match=r"k must be a positive int, got 0"):
        topk_causal_mask(scores, 0)
    with pytest.raises(TypeError, match=r"k must be a positive int, got float"):
        topk_causal_mask(scores, 2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"scores must be square in its last two dims"):
        topk_causal_mask(scores[:3], 2)
    with pytest.raises(ValueError, match=r"top_k must be a positive int, got 0"):
        SparseAttention(8, 8, 16, 2, top_k=0)
    with pytest.raises(ValueError, match=r"index_heads must be a positive int"):
        SparseAttention(8, 8, 16, 2, index_heads=0)
    layer = _layer(0, device, top_k=2)
    with pytest.raises(ValueError, match=r"x must have last dimension d_in=8"):
        layer(random_tensor(0, 1, 3, 5, device=device))
    with pytest.raises(ValueError, match=r"more than context_length=16"):
        layer(random_tensor(0, 1, 17, 8, device=device))
    with pytest.raises(ValueError, match=r"top_k must be a positive int"):
        sparse_attention_cost(8, top_k=-1, d_model=4, index_heads=1, index_dim=1)
