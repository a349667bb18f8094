"""The fast path of GPTModel (attn_impl="sdpa") equals the readable one up to rounding.

attn_impl="sdpa" also hands layer norm and GELU to PyTorch's fused
functions, and its attention runs three projections without autograd; the
readable path (attn_impl="manual", the book's) is untouched.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from attention import MultiHeadAttention
from attention.gpt import GELU, GPTConfig, GPTModel, LayerNorm, generate, generate_text_simple
from tests.conftest import generator, random_tensor

CFG = GPTConfig(vocab_size=64, context_length=24, emb_dim=32, n_heads=4, n_layers=2, qkv_bias=True)
# float32: the fused kernels differ from the readable arithmetic in the last bits.
# bfloat16: both work in float32 and round once, so at most one bfloat16 step apart.
TOLERANCE = {torch.float32: (1e-5, 1e-5), torch.bfloat16: (1e-2, 8e-3)}  # (atol, rtol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_fused_layer_norm_and_gelu_equal_the_readable_ones(device, dtype):
    x = (random_tensor(0, 2, 5, 32, device=device) * 3 + 1).to(dtype)
    readable, fused = LayerNorm(32), LayerNorm(32, fused=True)
    with torch.no_grad():
        readable.scale.copy_(random_tensor(1, 32))
        readable.shift.copy_(random_tensor(2, 32))
    fused.load_state_dict(readable.state_dict())  # the same parameters: no new state
    readable, fused = readable.to(device, dtype), fused.to(device, dtype)
    atol, rtol = TOLERANCE[dtype]
    with torch.no_grad():
        assert fused(x).dtype == readable(x).dtype == dtype
        torch.testing.assert_close(fused(x), readable(x), atol=atol, rtol=rtol)
        h = (random_tensor(3, 2, 5, 32, device=device) * 4).to(dtype)
        torch.testing.assert_close(GELU(fused=True)(h), GELU()(h), atol=atol, rtol=rtol)


def test_fused_must_be_a_bool():
    with pytest.raises(TypeError, match=r"fused must be a bool, got int 1"):
        LayerNorm(4, fused=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"fused must be a bool, got str 'yes'"):
        GELU(fused="yes")  # type: ignore[arg-type]


def test_only_the_fast_path_is_fused():
    def fused_flags(model: nn.Module) -> set[bool]:
        return {m.fused for m in model.modules() if isinstance(m, LayerNorm | GELU)}

    assert fused_flags(GPTModel(CFG)) == {False}  # the book's readable default
    assert fused_flags(GPTModel(dataclasses.replace(CFG, attn_impl="sdpa"))) == {True}


def _pair(device: torch.device) -> tuple[GPTModel, GPTModel]:
    torch.manual_seed(0)
    manual = GPTModel(CFG).to(device).eval()
    fast = GPTModel(dataclasses.replace(CFG, attn_impl="sdpa")).to(device).eval()
    fast.load_state_dict(manual.state_dict())
    return manual, fast


def test_the_fast_path_gives_the_manual_logits_and_ids(device):
    manual, fast = _pair(device)
    ids = torch.randint(0, CFG.vocab_size, (2, 7), generator=generator(device, 1), device=device)
    with torch.no_grad():
        torch.testing.assert_close(fast(ids), manual(ids), atol=1e-5, rtol=1e-5)
    expected = generate_text_simple(manual, ids, 10, CFG.context_length)
    assert generate(fast, ids, 10).tolist() == expected.tolist()
    assert generate(manual, ids, 10).tolist() == expected.tolist()


def test_sdpa_inference_projections_equal_the_stacked_training_ones(device):
    torch.manual_seed(0)
    layer = MultiHeadAttention(16, 16, 8, 0.0, num_heads=4, qkv_bias=True, impl="sdpa").to(device)
    x = random_tensor(4, 2, 8, 16, device=device)
    stacked = layer(x)  # autograd on: one product with the stacked weights
    assert stacked.requires_grad
    with torch.no_grad():
        separate = layer(x)  # inference: three projections
    torch.testing.assert_close(separate, stacked.detach(), atol=1e-6, rtol=1e-6)
