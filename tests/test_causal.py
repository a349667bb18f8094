"""Chapter 5: causal masking reproduces the book's numbers, both ways."""

from __future__ import annotations

import copy
import io

import pytest
import torch

from attention import CausalAttention, SelfAttentionV2, causal_mask, masked_softmax, toy_inputs

BOOK = 1e-4

# SelfAttentionV2 weights with seed 789, before masking.
UNMASKED = [
    [0.1921, 0.1646, 0.1652, 0.1550, 0.1721, 0.1510],
    [0.2041, 0.1659, 0.1662, 0.1496, 0.1665, 0.1477],
    [0.2036, 0.1659, 0.1662, 0.1498, 0.1664, 0.1480],
    [0.1869, 0.1667, 0.1668, 0.1571, 0.1661, 0.1564],
    [0.1830, 0.1669, 0.1670, 0.1588, 0.1658, 0.1585],
    [0.1935, 0.1663, 0.1666, 0.1542, 0.1666, 0.1529],
]
# Their scores with the future filled with -inf (the finite entries).
MASKED_SCORES = [
    [0.2899],
    [0.4656, 0.1723],
    [0.4594, 0.1703, 0.1731],
    [0.2642, 0.1024, 0.1036, 0.0186],
    [0.2183, 0.0874, 0.0882, 0.0177, 0.0786],
    [0.3408, 0.1270, 0.1290, 0.0198, 0.1290, 0.0078],
]
# Zeroed and renormalised, and equally -inf before the softmax.
MASKED = [
    [1.0000, 0.0000, 0.0000, 0.0000, 0.0000, 0.0000],
    [0.5517, 0.4483, 0.0000, 0.0000, 0.0000, 0.0000],
    [0.3800, 0.3097, 0.3103, 0.0000, 0.0000, 0.0000],
    [0.2758, 0.2460, 0.2462, 0.2319, 0.0000, 0.0000],
    [0.2175, 0.1983, 0.1984, 0.1888, 0.1971, 0.0000],
    [0.1935, 0.1663, 0.1666, 0.1542, 0.1666, 0.1529],
]
# CausalAttention(3, 2, 6, 0.0) with seed 123 on the batch of two copies.
CAUSAL_SEED_123 = [
    [-0.4519, 0.2216],
    [-0.5874, 0.0058],
    [-0.6300, -0.0632],
    [-0.5675, -0.0843],
    [-0.5526, -0.0981],
    [-0.5299, -0.1081],
]


def _close(actual, expected) -> bool:
    """The book's printed numbers, compared on the device ``actual`` lives on."""
    return torch.allclose(actual, torch.tensor(expected, device=actual.device), atol=BOOK, rtol=0)


# The seeded layers are built on the CPU, where the book drew their weights, and
# then moved: the same weights on every device, so CUDA must give the goldens too.
def test_masking_the_v2_weights_both_ways(device):
    inputs = toy_inputs(device=device)
    torch.manual_seed(789)
    sa_v2 = SelfAttentionV2(3, 2).to(device)
    _, weights = sa_v2(inputs, return_weights=True)
    assert _close(weights, UNMASKED)

    keep = torch.tril(torch.ones(6, 6, device=device))
    zeroed = weights * keep
    renormalised = zeroed / zeroed.sum(dim=-1, keepdim=True)
    assert _close(renormalised, MASKED)

    scores = sa_v2.W_query(inputs) @ sa_v2.W_key(inputs).T
    masked = scores.masked_fill(causal_mask(6, device=device), -torch.inf)
    for i, row in enumerate(MASKED_SCORES):
        assert _close(masked[i, : i + 1], row)
        assert masked[i, i + 1 :].eq(-torch.inf).all()
    via_inf = masked_softmax(scores / 2**0.5, causal_mask(6, device=device))
    assert _close(via_inf, MASKED)
    assert torch.allclose(via_inf, renormalised, atol=1e-6)


def test_causal_attention_seed_123(device_batch):
    torch.manual_seed(123)
    out = CausalAttention(3, 2, 6, 0.0).to(device_batch.device)(device_batch)
    assert out.shape == (2, 6, 2)
    assert _close(out[0], CAUSAL_SEED_123)
    assert _close(out[1], CAUSAL_SEED_123)


def test_modules_created_in_the_books_order():
    layer = CausalAttention(3, 2, 6, 0.1)
    assert [name for name, _ in layer.named_children()] == [
        "W_query",
        "W_key",
        "W_value",
        "dropout",
    ]
    assert [name for name, _ in layer.named_buffers()] == ["mask"]
    assert torch.equal(layer.mask, torch.triu(torch.ones(6, 6), diagonal=1))  # exact: 0s and 1s


def test_shorter_sequences_use_a_slice_of_the_mask(device_batch):
    """The mask buffer moves with the layer; a slice of it serves shorter inputs."""
    batch = device_batch
    torch.manual_seed(123)
    layer = CausalAttention(3, 2, 6, 0.0).to(batch.device)
    assert layer.mask.device == batch.device
    full = layer(batch)
    assert torch.allclose(layer(batch[:, :4]), full[:, :4], atol=1e-6)


def _saved_with_the_mask(layer: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A checkpoint of ``layer`` as saved while its mask buffer was persistent."""
    old = copy.deepcopy(layer)
    old.register_buffer("mask", old.mask, persistent=True)
    buffer = io.BytesIO()
    torch.save(old.state_dict(), buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_the_mask_is_not_saved_but_old_checkpoints_load_at_any_context_length(device_batch):
    batch = device_batch
    torch.manual_seed(123)
    layer = CausalAttention(3, 2, 6, 0.0).to(batch.device)
    assert list(layer.state_dict()) == ["W_query.weight", "W_key.weight", "W_value.weight"]
    saved = _saved_with_the_mask(layer)
    assert saved["mask"].shape == (6, 6)
    for context_length in (6, 4, 12):  # the saved (6, 6) mask fits none but the first
        target = CausalAttention(3, 2, context_length, 0.0).to(batch.device)
        target.load_state_dict(saved)  # strict: the stale "mask" entry is dropped
        ones = torch.ones(context_length, context_length, device=batch.device)
        expected = torch.triu(ones, diagonal=1)
        assert torch.equal(target.mask, expected)  # exact: zeros and ones
        tokens = min(context_length, 6)
        # exact: the same weights and the same operations on the same tokens
        assert torch.equal(target(batch[:, :tokens]), layer(batch[:, :tokens]))
    assert "mask" in saved  # the caller's dict is left as it was
    with pytest.raises(RuntimeError, match=r'Unexpected key\(s\) in state_dict: "other"'):
        target.load_state_dict({**saved, "other": torch.zeros(1)})


def test_why_not_zero(device):
    """Filling blocked scores with 0 instead of -inf still gives them weight."""
    inputs = toy_inputs(device=device)
    scores = inputs @ inputs.T
    mask = causal_mask(6, device=device)
    with_zero = torch.softmax(scores.masked_fill(mask, 0.0), dim=-1)
    assert (with_zero.masked_select(mask) > 0).all()
    assert (masked_softmax(scores, mask).masked_select(mask) == 0).all()  # exact: exp(-inf) = 0


def test_fully_masked_row_is_zero_not_nan(device):
    scores = torch.rand(3, 3).to(device)
    blocked = torch.tensor(
        [[True, True, True], [False, True, True], [False, False, False]], device=device
    )
    weights = masked_softmax(scores, blocked)
    zeros = torch.zeros(3, device=device)
    assert torch.equal(weights[0], zeros)  # exact: a fully blocked row is filled with 0
    assert not weights.isnan().any()
    plain = torch.softmax(scores.masked_fill(blocked, -torch.inf), dim=-1)
    assert plain[0].isnan().all()  # what the masked softmax protects against


def test_causal_mask_polarity(device):
    mask = causal_mask(4, device=device)
    assert mask.dtype == torch.bool
    assert mask.device.type == device.type
    assert not mask.diagonal().any()  # a token sees itself
    assert mask[0, 3]  # True = blocked: token 0 may not see token 3
    assert not mask[3, 0]  # but token 3 may see token 0
    assert causal_mask(0).shape == (0, 0)
