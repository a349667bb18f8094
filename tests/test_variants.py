"""The attention choices of attention.variants inside chapter 12's model."""

from __future__ import annotations

import math

import pytest
import torch

from attention import variants
from attention.induction import AttentionOnlyTransformer, InductionConfig
from attention.induction_scores import train_induction
from tests.conftest import generator

SMALL = InductionConfig(vocab_size=10, context_length=12, emb_dim=16, n_heads=2, n_layers=2)
# top_k and the window are smaller than the 12 positions, so they do restrict.
CHOICES = (
    variants.GQA(n_kv_heads=1),
    variants.MLA(kv_latent_dim=6, rope_dim=4),
    variants.SlidingWindow(window=3),
    variants.Sparse(top_k=3),
    variants.Sinks(),
    variants.QKNorm(),
    variants.Linear(chunk_size=4),
    variants.DeltaNet(chunk_size=4),
    variants.Linear(chunk_size=4, short_conv=3),
    variants.DeltaNet(chunk_size=4, short_conv=2, alpha_bias=-4.0),
)
# float32 through two layers of width 16.
ATOL = 1e-5


def _model(choice: object, device: torch.device, seed: int = 0) -> AttentionOnlyTransformer:
    """The seeded model of SMALL's sizes with every layer of kind ``choice``."""
    torch.manual_seed(seed)
    config = InductionConfig(**{**SMALL.__dict__, "attention": choice})
    return AttentionOnlyTransformer(config).to(device)


def _ids(device: torch.device, batch: int = 3, tokens: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 10, (batch, tokens), generator=generator(device, seed), device=device)


@pytest.mark.parametrize("choice", CHOICES, ids=lambda c: type(c).__name__)
def test_every_choice_gives_logits_that_ignore_the_future(choice, device):
    model = _model(choice, device)
    ids = _ids(device)
    logits = model(ids)
    assert logits.shape == (3, 12, 10)
    assert torch.isfinite(logits).all()
    changed = ids.clone()
    changed[:, 7:] = (changed[:, 7:] + 1) % 10  # every token from position 7 on
    torch.testing.assert_close(model(changed)[:, :7], logits[:, :7], atol=ATOL, rtol=0)
    assert not torch.allclose(model(changed)[:, 7:], logits[:, 7:], atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    "choice", [c for c in CHOICES if c.gives_weights], ids=lambda c: type(c).__name__
)
def test_choices_with_weights_return_causal_rows(choice, device):
    model = _model(choice, device)
    logits, weights = model(_ids(device), return_weights=True)
    assert weights.shape == (3, 2, 2, 12, 12)  # (B, N, H, T, T)
    torch.testing.assert_close(logits, model(_ids(device)), atol=ATOL, rtol=0)
    future = torch.ones(12, 12, dtype=torch.bool, device=device).triu(1)
    assert (weights[..., future] == 0).all()  # exact: masked positions get exactly 0
    sums = weights.sum(dim=-1)  # (B, N, H, T)
    # A sink takes a share of each row; the others spread all of it over the keys.
    high = 1 + ATOL
    low = 0.0 if isinstance(choice, variants.Sinks) else 1 - ATOL
    assert ((sums >= low) & (sums <= high)).all()


@pytest.mark.parametrize(
    "choice", [c for c in CHOICES if not c.gives_weights], ids=lambda c: type(c).__name__
)
def test_recurrent_choices_refuse_to_return_weights(choice, device):
    model = _model(choice, device)
    assert not model.gives_weights
    with pytest.raises(ValueError, match=f"return_weights=True .* {type(choice).__name__}"):
        model(_ids(device), return_weights=True)


@pytest.mark.parametrize(
    "choice",
    [variants.GQA(n_kv_heads=2), variants.SlidingWindow(window=12), variants.Sparse(top_k=12)],
    ids=lambda c: type(c).__name__,
)
def test_choices_that_restrict_nothing_equal_the_books_layer(choice, device):
    """H_kv = H, a window of T, top-k of T: full causal attention with the same weights."""
    book = _model(None, device)
    variant = _model(choice, device, seed=1)
    # Sparse wraps a MultiHeadAttention as .attn: the same weights under another name.
    prefix = "attn." if isinstance(choice, variants.Sparse) else ""
    renamed = {
        k.replace("layers.0.", f"layers.0.{prefix}").replace("layers.1.", f"layers.1.{prefix}"): v
        for k, v in book.state_dict().items()
    }
    missing, unexpected = variant.load_state_dict(renamed, strict=False)
    assert not unexpected
    assert all("index" in name for name in missing)
    ids = _ids(device)
    torch.testing.assert_close(variant(ids), book(ids), atol=ATOL, rtol=0)


def test_the_default_is_the_books_multi_head_attention():
    from attention.multihead import MultiHeadAttention

    model = AttentionOnlyTransformer(SMALL)
    assert SMALL.attention is None
    assert all(type(layer) is MultiHeadAttention for layer in model.layers)
    assert model.gives_weights


def test_a_recurrent_choice_trains_and_reports_no_head_scores():
    config = InductionConfig(context_length=8, attention=variants.DeltaNet(chunk_size=4))
    run = train_induction(config, steps=3, batch_size=4, test_size=4)
    assert run.induction.shape == run.previous_token.shape == (2, 2)
    assert run.induction.isnan().all()
    assert run.previous_token.isnan().all()
    assert len(run.losses) == 3
    assert all(math.isfinite(loss) for loss in run.losses)
    assert 0.0 <= run.scores.second_accuracy <= 1.0


def test_the_new_recurrent_options_default_to_the_earlier_layers():
    assert variants.Linear() == variants.Linear(short_conv=0)
    assert variants.DeltaNet() == variants.DeltaNet(short_conv=0, alpha_bias=None)
    torch.manual_seed(0)
    before = AttentionOnlyTransformer(
        InductionConfig(**{**SMALL.__dict__, "attention": variants.DeltaNet()})
    )
    assert all(layer.short_convs is None for layer in before.layers)
    assert repr(variants.DeltaNet(short_conv=3, alpha_bias=-4.0)) == (
        "DeltaNet(chunk_size=16, short_conv=3, alpha_bias=-4.0)"  # the model cache keys on it
    )


def test_choices_are_frozen_and_print_their_settings():
    choice = variants.MLA(kv_latent_dim=6, rope_dim=2)
    assert repr(choice) == "MLA(kv_latent_dim=6, rope_dim=2)"  # the model cache keys on it
    with pytest.raises(AttributeError):
        choice.rope_dim = 4  # type: ignore[misc]


@pytest.mark.parametrize(
    ("config", "error", "message"),
    [
        (InductionConfig(attention="gqa"), TypeError, "attention must be a choice"),  # type: ignore[arg-type]
        (InductionConfig(attention=variants.GQA(n_kv_heads=0)), ValueError, "n_kv_heads"),
        (InductionConfig(attention=variants.GQA(n_kv_heads=3)), ValueError, "num_kv_heads"),
        (InductionConfig(attention=variants.SlidingWindow(window=0)), ValueError, "window"),
        (InductionConfig(emb_dim=30, n_heads=4, attention=variants.MLA()), ValueError, "d_model"),
        (InductionConfig(attention=variants.Sparse(top_k=0)), ValueError, "top_k"),
        (InductionConfig(attention=variants.Linear(chunk_size=0)), ValueError, "chunk_size"),
        (
            InductionConfig(attention=variants.Linear(short_conv=-1)),
            ValueError,
            "short_conv must be an int >= 0, got -1",
        ),
        (
            InductionConfig(attention=variants.DeltaNet(alpha_bias=float("inf"))),
            ValueError,
            "alpha_bias must be finite, got inf",
        ),
    ],
)
def test_bad_choices_name_the_argument(config, error, message):
    with pytest.raises(error, match=message):
        AttentionOnlyTransformer(config)
