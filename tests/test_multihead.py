"""Chapter 8: multi-head attention reproduces the book's numbers."""

from __future__ import annotations

import pytest
import torch

from attention import CausalAttention, MultiHeadAttention, MultiHeadAttentionWrapper
from tests.conftest import C_COMPILER, INDUCTOR_WARNINGS
from tests.test_causal import _saved_with_the_mask

BOOK = 1e-4

# MultiHeadAttentionWrapper(3, 2, 6, 0.0, num_heads=2), seed 123.
WRAPPER_SEED_123 = [
    [-0.4519, 0.2216, 0.4772, 0.1063],
    [-0.5874, 0.0058, 0.5891, 0.3257],
    [-0.6300, -0.0632, 0.6202, 0.3860],
    [-0.5675, -0.0843, 0.5478, 0.3589],
    [-0.5526, -0.0981, 0.5321, 0.3428],
    [-0.5299, -0.1081, 0.5077, 0.3493],
]
# MultiHeadAttention(3, 2, 6, 0.0, num_heads=2), seed 123.
MHA_SEED_123 = [
    [0.3190, 0.4858],
    [0.2943, 0.3897],
    [0.2856, 0.3593],
    [0.2693, 0.3873],
    [0.2639, 0.3928],
    [0.2575, 0.4028],
]


def _close(actual, expected) -> bool:
    """The book's printed numbers, compared on the device ``actual`` lives on."""
    return torch.allclose(actual, torch.tensor(expected, device=actual.device), atol=BOOK, rtol=0)


# The seeded layers are built on the CPU, where the book drew their weights, and
# then moved: the same weights on every device, so CUDA must give the goldens too.
def test_wrapper_seed_123(device_batch):
    torch.manual_seed(123)
    layer = MultiHeadAttentionWrapper(3, 2, 6, 0.0, num_heads=2).to(device_batch.device)
    out = layer(device_batch)
    assert out.shape == (2, 6, 4)
    assert _close(out[0], WRAPPER_SEED_123)
    assert _close(out[1], WRAPPER_SEED_123)


@pytest.mark.parametrize("impl", ["manual", "sdpa"])
def test_multihead_seed_123(device_batch, impl):
    torch.manual_seed(123)
    layer = MultiHeadAttention(3, 2, 6, 0.0, num_heads=2, impl=impl).to(device_batch.device)
    out = layer(device_batch)
    assert out.shape == (2, 6, 2)
    assert _close(out[0], MHA_SEED_123)
    assert _close(out[1], MHA_SEED_123)


def test_gpt2_sized_layer_has_2_360_064_parameters():
    layer = MultiHeadAttention(768, 768, 1024, 0.0, num_heads=12)
    assert sum(p.numel() for p in layer.parameters()) == 2_360_064
    assert layer.head_dim == 64


def test_modules_created_in_the_books_order():
    layer = MultiHeadAttention(6, 6, 4, 0.1, num_heads=3)
    assert [name for name, _ in layer.named_children()] == [
        "W_query",
        "W_key",
        "W_value",
        "out_proj",
        "dropout",
    ]
    assert layer.out_proj.bias is not None
    assert layer.W_query.bias is None


def test_wrapper_returns_every_heads_weights(device_batch):
    batch = device_batch
    torch.manual_seed(123)
    wrapper = MultiHeadAttentionWrapper(3, 2, 6, 0.0, num_heads=3).to(batch.device)
    context, weights = wrapper(batch, return_weights=True)
    assert weights.shape == (2, 3, 6, 6)
    for h, head in enumerate(wrapper.heads):
        assert isinstance(head, CausalAttention)
        head_context, head_weights = head(batch, return_weights=True)
        # exact: the wrapper ran this head on the same batch, and stack and cat only copy
        assert torch.equal(weights[:, h], head_weights)
        assert torch.equal(context[..., 2 * h : 2 * h + 2], head_context)


def test_multihead_weights_are_causal_per_head(device_batch):
    torch.manual_seed(0)
    layer = MultiHeadAttention(3, 4, 6, 0.0, num_heads=2).to(device_batch.device)
    _, weights = layer(device_batch, return_weights=True)
    assert weights.shape == (2, 2, 6, 6)
    assert (weights.triu(diagonal=1) == 0).all()  # exact: exp(-inf) = 0


def test_sdpa_impl_follows_in_place_weight_updates(device_batch):
    """The stacked Q, K, V weight is rebuilt on each call, never a stale copy."""
    batch = device_batch
    torch.manual_seed(3)
    manual = MultiHeadAttention(3, 4, 6, 0.0, num_heads=2, qkv_bias=True).to(batch.device)
    fast = MultiHeadAttention(3, 4, 6, 0.0, num_heads=2, qkv_bias=True, impl="sdpa")
    fast.to(batch.device)
    fast.load_state_dict(manual.state_dict())
    with torch.no_grad():
        before = fast(batch)
    with torch.no_grad():
        for p in fast.parameters():
            p.add_(torch.randn_like(p))  # in place, as an optimizer step updates weights
    manual.load_state_dict(fast.state_dict())
    with torch.no_grad():
        after = fast(batch)
        assert not torch.allclose(after, before, atol=1e-3)
        assert torch.allclose(after, manual(batch), atol=1e-6)


def test_the_sdpa_impl_keeps_no_mask():
    """The issue's layer held 256 MiB of mask for 64 KiB of weights; SDPA never read it."""
    layer = MultiHeadAttention(64, 64, 8192, 0.0, 4, impl="sdpa")
    assert layer.mask is None
    assert list(layer.buffers()) == []
    manual = MultiHeadAttention(64, 64, 16, 0.0, 4)
    assert manual.mask is not None
    assert manual.mask.shape == (16, 16)
    assert "mask" not in manual.state_dict()


def test_old_checkpoints_load_into_either_impl_at_any_context_length(device_batch):
    batch = device_batch
    torch.manual_seed(123)
    layer = MultiHeadAttention(3, 4, 6, 0.0, num_heads=2).to(batch.device)
    saved = _saved_with_the_mask(layer)
    assert "mask" in saved
    for impl in ("manual", "sdpa"):
        for context_length in (6, 10):
            target = MultiHeadAttention(3, 4, context_length, 0.0, num_heads=2, impl=impl)
            target.to(batch.device)
            target.load_state_dict(saved)  # strict: the stale "mask" entry is dropped
            assert torch.allclose(target(batch), layer(batch), atol=1e-6)


def test_an_sdpa_layer_builds_the_causal_mask_where_one_is_read(device_batch):
    """With a padding mask, or switched to the manual path, it gives the manual layer's output."""
    batch = device_batch
    torch.manual_seed(4)
    manual = MultiHeadAttention(3, 4, 6, 0.0, num_heads=2).to(batch.device)
    fast = MultiHeadAttention(3, 4, 6, 0.0, num_heads=2, impl="sdpa").to(batch.device)
    fast.load_state_dict(manual.state_dict())
    padding = torch.zeros(2, 6, dtype=torch.bool, device=batch.device)
    padding[1, :2] = True
    expected = manual(batch, padding_mask=padding)
    assert torch.allclose(fast(batch, padding_mask=padding), expected, atol=1e-6)
    fast.impl = "manual"
    assert fast.mask is None
    assert torch.allclose(fast(batch, padding_mask=padding), expected, atol=1e-6)
    assert torch.allclose(fast(batch), manual(batch), atol=1e-6)


@C_COMPILER
@INDUCTOR_WARNINGS
@pytest.mark.parametrize("impl", ["manual", "sdpa"])
def test_multi_head_attention_compiles_as_one_graph(batch, impl):
    """The argument checks read only shapes and dtypes: fullgraph=True compiles."""
    layer = MultiHeadAttention(3, 4, 6, 0.0, num_heads=2, impl=impl).eval()
    with torch.no_grad():
        compiled = torch.compile(layer, fullgraph=True)(batch)
        assert torch.allclose(compiled, layer(batch), atol=1e-5, rtol=0)
