"""Multi-head latent attention: shapes, causality, cache, absorbed form, goldens, errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from attention.latent import (
    LatentCache,
    LatentConfig,
    MultiHeadLatentAttention,
    cache_numbers_per_token,
)
from tests.conftest import random_tensor

TINY = LatentConfig(d_model=8, n_heads=2, head_dim=4, rope_dim=2, kv_latent_dim=6, context_length=8)
CONFIGS = [LatentConfig(), LatentConfig(q_latent_dim=12)]
# float32 on 5-8 tokens: the forms differ only in the order of sums (~1e-7 seen).
ATOL, RTOL = 1e-5, 1e-5
# TINY, seed 0 (built on the CPU), x = random_tensor(1, 1, 4, 8): out[0, :, :3].
GOLDEN = [
    [0.1255, -0.1563, -0.0961],
    [0.0362, -0.0597, -0.0043],
    [-0.0303, 0.0021, 0.0132],
    [0.0853, -0.0737, -0.0549],
]


def _layer(config: LatentConfig, device: torch.device) -> MultiHeadLatentAttention:
    torch.manual_seed(0)
    return MultiHeadLatentAttention(config).to(device)


@pytest.mark.parametrize("config", CONFIGS)
def test_shapes(device, config):
    layer = _layer(config, device)
    out, weights = layer(random_tensor(1, 2, 5, 32, device=device), return_weights=True)
    assert out.shape == (2, 5, 32)
    assert weights.shape == (2, 4, 5, 5)
    assert layer(random_tensor(1, 2, 5, 32, device=device)).shape == (2, 5, 32)


@pytest.mark.parametrize("absorbed", [False, True])
def test_weights_are_causal_rows_that_sum_to_one(device, absorbed):
    layer = _layer(LatentConfig(), device)
    _, weights = layer(
        random_tensor(1, 2, 6, 32, device=device), absorbed=absorbed, return_weights=True
    )
    torch.testing.assert_close(
        weights.sum(-1), torch.ones(2, 4, 6, device=device), atol=ATOL, rtol=RTOL
    )
    future = torch.triu(torch.ones(6, 6, dtype=torch.bool, device=device), diagonal=1)
    assert bool((weights[..., future] == 0).all())  # exact: exp(-inf) is exactly 0


@given(changed=st.integers(min_value=1, max_value=5))
def test_a_future_token_does_not_change_earlier_outputs(device, changed):
    layer = _layer(LatentConfig(), device)
    x = random_tensor(1, 1, 6, 32, device=device)
    y = x.clone()
    y[:, changed] += 1.0
    torch.testing.assert_close(layer(x)[:, :changed], layer(y)[:, :changed], atol=ATOL, rtol=RTOL)
    assert not torch.allclose(layer(x)[:, changed], layer(y)[:, changed], atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("config", CONFIGS)
def test_absorbed_equals_readable(device, config):
    layer = _layer(config, device)
    x = random_tensor(2, 3, 7, 32, device=device)
    out, weights = layer(x, return_weights=True)
    fast, fast_weights = layer(x, absorbed=True, return_weights=True)
    torch.testing.assert_close(fast, out, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(fast_weights, weights, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("absorbed", [False, True])
def test_token_by_token_with_cache_equals_full_forward(device, config, absorbed):
    layer = _layer(config, device)
    x = random_tensor(3, 2, 7, 32, device=device)
    full = layer(x)
    cache = LatentCache()
    steps = [layer(x[:, :3], cache=cache, absorbed=absorbed)]  # a prompt, then one at a time
    steps += [layer(x[:, i : i + 1], cache=cache, absorbed=absorbed) for i in range(3, 7)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=ATOL, rtol=RTOL)
    assert cache.length == 7


def test_cache_holds_only_the_latent_and_the_rotary_key(device):
    layer = _layer(LatentConfig(), device)
    cache = LatentCache()
    assert cache.nbytes == 0
    assert cache.length == 0
    layer(random_tensor(4, 2, 5, 32, device=device), cache=cache)
    assert cache.latents is not None
    assert cache.rope_keys is not None
    assert cache.latents.shape == (2, 5, 16)
    assert cache.rope_keys.shape == (2, 5, 4)
    assert cache.nbytes == 2 * 5 * (16 + 4) * 4  # B * S * (d_c + d_R) * float32's 4 bytes
    mha_nbytes = 2 * 5 * 2 * 4 * 8 * 4  # B * S * 2 * H * D * 4 bytes
    assert cache.nbytes / mha_nbytes == 20 / 64


def test_cache_numbers_per_token():
    assert cache_numbers_per_token(LatentConfig()) == (20, 64)
    # DeepSeek-V3's attention (DeepSeek-AI 2024, V3 report, section 4.2).
    v3 = LatentConfig(
        d_model=7168, n_heads=128, head_dim=128, rope_dim=64, kv_latent_dim=512, q_latent_dim=1536
    )
    assert cache_numbers_per_token(v3) == (576, 32768)


def test_golden_values_seed_0(device):
    layer = _layer(TINY, device)
    out = layer(random_tensor(1, 1, 4, 8).to(device))  # cpu: the golden input is drawn there
    expected = torch.tensor(GOLDEN, device=device)
    torch.testing.assert_close(out[0, :, :3], expected, atol=1e-4, rtol=0)


def test_gradient_reaches_every_parameter_and_the_input(device):
    layer = _layer(LatentConfig(q_latent_dim=12), device)
    x = random_tensor(5, 2, 5, 32, device=device).requires_grad_()
    layer(x).square().sum().backward()
    assert x.grad is not None
    assert bool(x.grad.abs().sum() > 0)
    for name, parameter in layer.named_parameters():
        assert parameter.grad is not None, name
        assert bool(parameter.grad.abs().sum() > 0), name


@pytest.mark.parametrize(
    ("field", "value", "error", "words"),
    [
        ("d_model", 0, ValueError, "d_model must be a positive int"),
        ("n_heads", 2.0, TypeError, "n_heads must be a positive int"),
        ("rope_dim", 3, ValueError, "rope_dim must be even"),
        ("kv_latent_dim", -1, ValueError, "kv_latent_dim must be a positive int"),
        ("q_latent_dim", 0, ValueError, "q_latent_dim must be a positive int"),
        ("context_length", None, TypeError, "context_length must be a positive int"),
    ],
)
def test_bad_config_names_the_field(field, value, error, words):
    config = LatentConfig(**{field: value})
    with pytest.raises(error, match=words):
        MultiHeadLatentAttention(config)


def test_bad_inputs_name_the_argument(device):
    layer = _layer(LatentConfig(), device)
    x = random_tensor(1, 2, 3, 32, device=device)
    with pytest.raises(TypeError, match="config must be a LatentConfig"):
        MultiHeadLatentAttention({"d_model": 32})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"x must have shape \(B, T, C\)"):
        layer(x[0])
    with pytest.raises(ValueError, match="x must have last dimension d_in=32, got 31"):
        layer(x[..., :31])
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        layer(x.long())
    with pytest.raises(ValueError, match=r"x must hold at least one token, got shape \(2, 0, 32\)"):
        layer(x[:, :0])
    with pytest.raises(ValueError, match="more than context_length=16"):
        layer(random_tensor(1, 1, 17, 32, device=device))
    cache = LatentCache()
    layer(random_tensor(1, 1, 15, 32, device=device), cache=cache)
    with pytest.raises(ValueError, match="x has 2 tokens after 15 cached, more than"):
        layer(x[:1, :2], cache=cache)
    with pytest.raises(ValueError, match=r"x must have the same batch size as the cache \(1\)"):
        layer(x[:, :1], cache=cache)
    with pytest.raises(TypeError, match="cache must be a LatentCache or None, got dict"):
        layer(x, cache={})  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="absorbed must be a bool"):
        layer(x, absorbed=1)  # type: ignore[call-overload]
