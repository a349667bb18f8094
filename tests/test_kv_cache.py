"""Chapter 11: the KV cache gives exactly the tokens of generation without it."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

from attention.gpt import GPTConfig, GPTModel, generate_text_simple
from attention.kv_cache import KVCache
from tests.conftest import generator

TINY = GPTConfig(vocab_size=50, context_length=12, emb_dim=16, n_heads=4, n_layers=2)
# The cache changes the logits by float32 rounding only (~1e-6 on these models; see
# test_cached_forward_in_pieces_equals_the_full_forward). Greedy ids from the two
# ways are compared exactly only where every step's best logit leads the runner-up
# by far more than that: otherwise a near tie could go either way on another CPU.
SAFE_MARGIN = 1e-4


def _smallest_margin(model: GPTModel, ids: torch.Tensor, prompt: int, context_size: int) -> float:
    """The smallest lead of the best logit over the runner-up among the steps that made ids."""
    gaps = []
    with torch.no_grad():
        for t in range(prompt, ids.shape[1]):
            logits = model(ids[:, max(0, t - context_size) : t])[:, -1]  # (B, V)
            top2 = logits.topk(2, dim=-1).values  # (B, 2)
            gaps.append((top2[:, 0] - top2[:, 1]).min())
    return float(torch.stack(gaps).min())


@settings(max_examples=10)
@given(
    seed=st.integers(0, 2**16),
    heads=st.sampled_from([1, 2, 4]),
    layers=st.integers(1, 2),
    prompt=st.integers(1, 5),
    batch=st.integers(1, 3),
    qkv_bias=st.booleans(),
)
def test_kv_cache_gives_the_same_tokens(device, seed, heads, layers, prompt, batch, qkv_bias):
    cfg = dataclasses.replace(TINY, n_heads=heads, n_layers=layers, qkv_bias=qkv_bias)
    torch.manual_seed(seed)
    model = GPTModel(cfg).to(device).eval()
    g = generator(device, seed)
    idx = torch.randint(0, cfg.vocab_size, (batch, prompt), generator=g, device=device)
    plain = generate_text_simple(model, idx, 6, cfg.context_length)
    cached = generate_text_simple(model, idx, 6, cfg.context_length, use_cache=True)
    assume(_smallest_margin(model, plain, prompt, cfg.context_length) > SAFE_MARGIN)
    assert torch.equal(plain, cached)  # exact: integer ids, no step near a tie
    assert torch.equal(plain[:, :prompt], idx)  # exact: integer ids


@pytest.mark.parametrize("context_size", [4, 7, 12])
def test_kv_cache_when_the_window_slides(device, context_size):
    """Past context_size tokens, the cache is rebuilt from the window at each step."""
    torch.manual_seed(1)
    model = GPTModel(TINY).to(device).eval()
    idx = torch.tensor([[7, 3, 9]], device=device)
    plain = generate_text_simple(model, idx, 15, context_size)
    cached = generate_text_simple(model, idx, 15, context_size, use_cache=True)
    assert plain.shape == (1, 18)
    assert _smallest_margin(model, plain, 3, context_size) > SAFE_MARGIN
    assert torch.equal(plain, cached)  # exact: integer ids, no step near a tie


def test_cached_forward_in_pieces_equals_the_full_forward(device):
    torch.manual_seed(2)
    model = GPTModel(TINY).to(device).eval()
    idx = torch.tensor([[1, 2, 3, 4, 5, 6, 7], [7, 6, 5, 4, 3, 2, 1]], device=device)
    full = model(idx)
    cache = KVCache()
    pieces = [model(idx[:, :3], cache=cache), model(idx[:, 3:4], cache=cache)]
    pieces.append(model(idx[:, 4:], cache=cache))
    assert cache.length == 7
    assert all(layer.length == 7 for layer in cache.layers)
    assert torch.allclose(torch.cat(pieces, dim=1), full, atol=1e-5)


def test_generating_zero_tokens_returns_the_input(device):
    model = GPTModel(TINY).to(device).eval()
    idx = torch.tensor([[1, 2]], device=device)
    # exact: integer ids, returned as they came
    assert torch.equal(generate_text_simple(model, idx, 0, 12, use_cache=True), idx)


# -- Errors -----------------------------------------------------------------------


def test_cache_overflow_and_batch_mismatch(device):
    model = GPTModel(TINY).to(device).eval()
    cache = KVCache()
    model(torch.zeros(2, 10, dtype=torch.long, device=device), cache=cache)
    with pytest.raises(
        ValueError, match=r"3 tokens \(plus 10 cached\), more than context_length=12"
    ):
        model(torch.zeros(2, 3, dtype=torch.long, device=device), cache=cache)
    with pytest.raises(ValueError, match=r"batch size 1, but the cache holds batch size 2"):
        model(torch.zeros(1, 1, dtype=torch.long, device=device), cache=cache)


def test_cache_needs_a_gpt_model():
    with pytest.raises(TypeError, match=r"use_cache=True needs a GPTModel, got Linear"):
        generate_text_simple(nn.Linear(2, 2), torch.tensor([[1]]), 1, 4, use_cache=True)
