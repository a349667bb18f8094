"""Chapter 12: the attention-only transformer, its task and its attention patterns."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from attention.induction import (
    AttentionOnlyTransformer,
    InductionConfig,
    attention_patterns,
    repeated_tokens,
)
from tests.conftest import generator

TINY = InductionConfig(vocab_size=8, context_length=8, emb_dim=8, n_heads=2)


def _model(
    config: InductionConfig = TINY, seed: int = 0, device: torch.device | str = "cpu"
) -> AttentionOnlyTransformer:
    """The seeded model, drawn on the CPU (the same weights everywhere), then moved."""
    torch.manual_seed(seed)
    return AttentionOnlyTransformer(config).to(device)


def _tokens(
    seed: int, batch: int, length: int, vocab: int = 8, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Repeated tokens drawn on ``device`` (repeated_tokens draws on its generator's)."""
    g = generator(device, seed)
    return repeated_tokens(batch, length, vocab_size=vocab, generator=g)


# -- the task ------------------------------------------------------------------


def test_repeated_tokens_golden_values():
    g = torch.Generator().manual_seed(0)  # cpu: the golden ids are the CPU generator's draws
    x = repeated_tokens(2, 3, vocab_size=10, generator=g, tokens=7)
    assert x.tolist() == [[4, 9, 3, 4, 9, 3, 4], [0, 3, 9, 0, 3, 9, 0]]


@given(
    seed=st.integers(0, 2**31 - 1),
    b=st.integers(1, 4),
    n=st.integers(1, 9),
    extra=st.integers(0, 20),
)
def test_repeated_tokens_are_periodic(device, seed, b, n, extra):
    x = repeated_tokens(b, n, vocab_size=5, generator=generator(device, seed), tokens=n + extra)
    assert x.device.type == device.type
    assert x.shape == (b, n + extra)
    assert x.dtype == torch.int64
    assert x.min() >= 0
    assert x.max() < 5
    for t in range(n, n + extra):
        assert torch.equal(x[:, t], x[:, t - n])  # exact: integer ids


def test_repeated_tokens_default_to_two_copies_and_leave_the_global_state_alone():
    state = torch.random.get_rng_state()
    x = _tokens(3, 4, 6)
    assert torch.equal(torch.random.get_rng_state(), state)  # exact: the state's bytes
    assert x.shape == (4, 12)
    # exact: integer ids
    assert torch.equal(x[:, :6], x[:, 6:])
    assert torch.equal(x, _tokens(3, 4, 6))
    assert not torch.equal(x, _tokens(4, 4, 6))


# -- the model -----------------------------------------------------------------


def test_model_shapes_and_weights(device):
    model = _model(device=device)
    x = _tokens(0, 3, 4, device=device)  # (3, 8)
    logits, weights = model(x, return_weights=True)
    assert logits.shape == (3, 8, 8)
    assert weights.shape == (3, 2, 2, 8, 8)  # (B, N, H, T, T)
    assert torch.allclose(
        weights.sum(dim=-1), torch.ones(3, 2, 2, 8, device=device), atol=1e-6, rtol=0
    )
    assert torch.equal(model(x), logits)  # exact: the same model on the same ids again


def test_model_has_no_mlp_and_no_norm():
    kinds = {type(m).__name__ for m in _model().modules()}
    assert kinds == {
        "AttentionOnlyTransformer",
        "Embedding",
        "ModuleList",
        "MultiHeadAttention",
        "Linear",
        "Dropout",
    }


def test_model_is_causal(device):
    model = _model(device=device)
    x = _tokens(1, 2, 4, device=device)
    weights = model(x, return_weights=True)[1]
    above = torch.ones(8, 8, dtype=torch.bool, device=device).triu(diagonal=1)
    assert (weights[..., above] == 0).all()  # exact: exp(-inf) = 0
    changed = x.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % 8  # change only the future of position 4
    # Logits of size ~1: float32 rounding of one forward pass stays far below 1e-5.
    assert torch.allclose(model(changed)[:, :5], model(x)[:, :5], atol=1e-5, rtol=0)
    assert not torch.allclose(model(changed)[:, 5:], model(x)[:, 5:], atol=1e-5, rtol=0)


def test_attention_patterns_are_one_sequences_weights(device):
    model = _model(device=device)
    x = _tokens(2, 1, 3, device=device)[0]  # (6,)
    patterns = attention_patterns(model, x)
    assert patterns.shape == (2, 2, 6, 6)  # (N, H, T, T)
    # exact: attention_patterns runs the same forward pass on the same ids
    assert torch.equal(patterns, model(x[None], return_weights=True)[1][0])
    assert not patterns.requires_grad


def test_same_seed_same_model(device):
    x = _tokens(0, 2, 4, device=device)
    # exact: the same seed draws the same weights; then the same operations
    assert torch.equal(_model(seed=5, device=device)(x), _model(seed=5, device=device)(x))
    assert not torch.equal(_model(seed=5, device=device)(x), _model(seed=6, device=device)(x))


# -- errors --------------------------------------------------------------------


def test_bad_inputs_raise_named_errors():
    g = torch.Generator()  # cpu: about the arguments, not the draws
    with pytest.raises(TypeError, match="generator"):
        repeated_tokens(2, 3, vocab_size=5, generator=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tokens must be >= length=3"):
        repeated_tokens(2, 3, vocab_size=5, generator=g, tokens=2)
    with pytest.raises(ValueError, match="vocab_size"):
        repeated_tokens(2, 3, vocab_size=0, generator=g)
    with pytest.raises(TypeError, match="config must be an InductionConfig"):
        AttentionOnlyTransformer({"vocab_size": 8})  # type: ignore[arg-type]
    model = _model()
    with pytest.raises(TypeError, match=r"tokens must be an int64 tensor .*torch.float32"):
        model(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"tokens must be a non-empty int64 tensor"):
        model(torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="context_length=8"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="ids 0 to 7"):
        model(torch.full((1, 4), 8))
    with pytest.raises(ValueError, match=r"shape \(T,\)"):
        attention_patterns(model, torch.zeros(1, 4, dtype=torch.long))
