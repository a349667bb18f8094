"""The preallocated KV cache and the static decode step (issue 23).

Cached equals uncached for every attention option; the buffers are written in
place; the step compiles as one graph; on CUDA it never synchronises.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

from attention.gpt import GPTConfig, GPTModel, generate
from attention.kv_cache import KVCache, LayerKV
from tests.conftest import C_COMPILER, INDUCTOR_WARNINGS, needs_cuda

CFG = GPTConfig(vocab_size=40, context_length=24, emb_dim=16, n_heads=4, n_layers=2, drop_rate=0.0)
OPTIONS = [
    {},
    {"n_kv_heads": 2},
    {"n_kv_heads": 1},
    {"rope": True},
    {"window": 4},
    {"n_kv_heads": 2, "rope": True, "window": 3},
]
IMPLS = ["manual", "sdpa"]


def _model(impl: str, options: dict[str, Any], device: str = "cpu") -> GPTModel:
    torch.manual_seed(7)
    return GPTModel(dataclasses.replace(CFG, attn_impl=impl), **options).eval().to(device)


def _prompts(device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Two prompts of 6 tokens; the second padded on the left by 2."""
    ids = torch.randint(0, CFG.vocab_size, (2, 6), generator=torch.Generator().manual_seed(3))
    padding = torch.zeros(2, 6, dtype=torch.bool)
    padding[1, :2] = True
    return ids.to(device), padding.to(device)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("options", OPTIONS, ids=str)
@pytest.mark.parametrize("padded", [False, True])
def test_decode_steps_give_the_full_forwards_logits(impl, options, padded):
    """Prefill, then one token per step: each step's logits are the full forward's."""
    model = _model(impl, options)
    ids, padding = _prompts()
    mask = padding if padded else None
    full_ids = torch.cat((ids, torch.randint(0, CFG.vocab_size, (2, 5))), dim=1)  # (2, 11)
    full_mask = None if mask is None else torch.cat((mask, torch.zeros(2, 5, dtype=torch.bool)), 1)
    cache = KVCache(max_length=12)
    with torch.no_grad():
        expected = model(full_ids, padding_mask=full_mask)  # (2, 11, V), no cache
        got = [model(ids, padding_mask=mask, cache=cache)]  # checked prefill
        for t in range(6, 11):
            got.append(model.decode_step(full_ids[:, t : t + 1], cache))
            cache.advance(1)
    logits = torch.cat(got, dim=1)
    real = ~full_mask if full_mask is not None else torch.ones(2, 11, dtype=torch.bool)
    torch.testing.assert_close(logits[real], expected[real], atol=1e-5, rtol=1e-5)
    assert cache.length == 11
    assert all(layer.length == 11 for layer in cache.layers)
    assert _position(cache) == 11  # the device counter agrees with the host one


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("options", OPTIONS, ids=str)
def test_generate_with_the_preallocated_cache_equals_without(impl, options):
    model = _model(impl, options)
    ids, padding = _prompts()
    for mask in (None, padding):
        cached = generate(model, ids, 10, padding_mask=mask)
        uncached = generate(model, ids, 10, padding_mask=mask, use_cache=False)
        assert cached.tolist() == uncached.tolist()


def test_sampling_with_the_preallocated_cache_equals_without():
    model = _model("manual", {})
    ids, _ = _prompts()
    kwargs = {"temperature": 1.0, "top_k": 10}
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    cached = generate(model, ids, 8, generator=g1, **kwargs)
    uncached = generate(model, ids, 8, generator=g2, use_cache=False, **kwargs)
    assert cached.tolist() == uncached.tolist()


@pytest.mark.parametrize("new_tokens", [1, 5, 17])
def test_an_end_id_cuts_where_the_step_by_step_loop_stops(new_tokens):
    """The host reads "all ended?" every few steps, yet the output is cut exactly."""
    model = _model("manual", {})
    ids, _ = _prompts()
    free = generate(model, ids, new_tokens)  # no end id
    for eos in {*free[:, 6:].flatten().tolist(), 39}:  # every id it produced, and one it did not
        cached = generate(model, ids, new_tokens, eos_id=eos)
        uncached = generate(model, ids, new_tokens, eos_id=eos, use_cache=False)
        assert cached.tolist() == uncached.tolist()


def test_the_buffers_are_written_in_place():
    """No step allocates a new cache: every layer's buffer stays at its address."""
    model = _model("manual", {"n_kv_heads": 2})
    ids, _ = _prompts()
    cache = KVCache(max_length=12)
    with torch.no_grad():
        model(ids, cache=cache)
        addresses = [(k.data_ptr(), v.data_ptr()) for k, v in _buffers(cache)]
        position = cache.position
        assert position is not None
        next_id = ids[:, -1:]
        for _ in range(5):
            next_id = model.decode_step(next_id, cache)[:, -1:].argmax(dim=-1)
            cache.advance(1)
    assert [(k.data_ptr(), v.data_ptr()) for k, v in _buffers(cache)] == addresses
    assert cache.position is position
    assert [tuple(k.shape) for k, _ in _buffers(cache)] == [(2, 2, 12, 4)] * 2
    assert _buffers(cache)[0][0][:, :, 11:].abs().sum() == 0  # exact: zeros never written to


def _buffers(cache: KVCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every layer's (keys, values) buffers."""
    pairs = []
    for kv in cache.layers:
        assert kv.keys is not None
        assert kv.values is not None
        pairs.append((kv.keys, kv.values))
    return pairs


def _position(cache: KVCache) -> int:
    """The device's position counter, read back."""
    assert cache.position is not None
    return int(cache.position)


def test_extend_on_a_preallocated_layer_writes_in_place():
    """The old extend() API works on a preallocated layer and returns views."""
    kv = LayerKV(max_length=5)
    first = torch.rand(1, 2, 3, 4)
    keys, _ = kv.extend(first, first + 1)
    buffer = kv.keys
    assert buffer is not None
    keys, values = kv.extend(torch.rand(1, 2, 2, 4), torch.rand(1, 2, 2, 4))
    assert kv.keys is buffer
    assert keys.data_ptr() == buffer.data_ptr()
    assert kv.length == 5
    assert keys.shape == (1, 2, 5, 4)
    torch.testing.assert_close(values[:, :, :3], first + 1, atol=0, rtol=0)
    with pytest.raises(
        ValueError, match=r"holds 5 tokens and keys adds 1, more than its max_length=5"
    ):
        kv.extend(torch.rand(1, 2, 1, 4), torch.rand(1, 2, 1, 4))


def test_bad_preallocated_caches_are_named():
    model = _model("manual", {})
    ids, _ = _prompts()
    with pytest.raises(ValueError, match=r"max_length must be a positive int, got 0"):
        KVCache(max_length=0)
    with pytest.raises(
        ValueError, match=r"max_length=25 is more than the model's context_length=24"
    ):
        model(ids, cache=KVCache(max_length=25))
    with pytest.raises(
        ValueError,
        match=r"in_idx has 6 tokens \(plus 0 cached\), more than the cache's max_length=4",
    ):
        model(ids, cache=KVCache(max_length=4))
    with pytest.raises(ValueError, match=r"decode_step needs a preallocated cache"):
        model.decode_step(ids, KVCache())
    with pytest.raises(ValueError, match=r"in_idx must hold ids in \[0, vocab_size=40\)"):
        model(torch.full((1, 2), 40), cache=KVCache(max_length=4))


@C_COMPILER
@INDUCTOR_WARNINGS
@pytest.mark.parametrize("impl", IMPLS)
def test_the_decode_step_compiles_as_one_graph(impl):
    """fullgraph=True: no graph break (so no host read) in the step; no recompiling per token."""
    model = _model(impl, {"rope": True})
    ids, _ = _prompts()
    eager_cache, compiled_cache = KVCache(max_length=12), KVCache(max_length=12)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()  # counts from earlier compiles in this process
    step = torch.compile(model.decode_step, fullgraph=True)
    with torch.no_grad():
        model(ids, cache=eager_cache)
        model(ids, cache=compiled_cache)
        next_id = ids[:, -1:].clone()  # (B, 1) with the strides of argmax's output
        for _ in range(4):
            expected = model.decode_step(next_id, eager_cache)
            eager_cache.advance(1)
            got = step(next_id, compiled_cache)
            compiled_cache.advance(1)
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
            next_id = expected[:, -1:].argmax(dim=-1)
    counters = torch._dynamo.utils.counters["stats"]
    assert counters["unique_graphs"] == 1  # one graph for every position


@needs_cuda
def test_a_cuda_decode_step_never_synchronises():
    """Under sync_debug_mode "error", any host synchronisation in the step raises."""
    model = _model("sdpa", {"n_kv_heads": 2, "rope": True, "window": 4}, device="cuda")
    ids, padding = _prompts("cuda")
    cache = KVCache(max_length=12)
    with torch.no_grad():
        model(ids, padding_mask=padding, cache=cache)  # the checked prefill reads the id range
        next_id = ids[:, -1:]
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for _ in range(4):
                next_id = model.decode_step(next_id, cache)[:, -1:].argmax(dim=-1)
                cache.advance(1)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert cache.length == 10
    assert _position(cache) == 10
