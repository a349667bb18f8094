"""Chapter 12: the logit lens, on the attention-only model and on a GPT."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from attention.gpt import GPTConfig, GPTModel
from attention.induction import AttentionOnlyTransformer, InductionConfig, repeated_tokens
from attention.induction_scores import train_induction
from attention.lens import logit_lens, residual_stream, target_rank
from tests.test_induction import TINY, _model, _tokens

# Tiny models train several times faster on one thread than on two.
pytestmark = pytest.mark.usefixtures("one_thread")

SMALL_GPT = GPTConfig(
    vocab_size=11, context_length=8, emb_dim=8, n_heads=2, n_layers=3, drop_rate=0.1
)


def _gpt(seed: int = 0) -> GPTModel:
    torch.manual_seed(seed)
    return GPTModel(SMALL_GPT).eval()


# -- shapes and the last layer -------------------------------------------------


def test_shapes_for_the_attention_only_model():
    x = _tokens(0, 3, 4)  # (3, 8)
    c = TINY.emb_dim
    assert residual_stream(_model(), x).shape == (TINY.n_layers + 1, 3, 8, c)
    assert logit_lens(_model(), x).shape == (TINY.n_layers + 1, 3, 8, TINY.vocab_size)


def test_shapes_for_a_gpt():
    x = torch.tensor([[1, 2, 3, 4, 5]])
    cfg = SMALL_GPT
    assert residual_stream(_gpt(), x).shape == (cfg.n_layers + 1, 1, 5, cfg.emb_dim)
    assert logit_lens(_gpt(), x).shape == (cfg.n_layers + 1, 1, 5, cfg.vocab_size)


# The lens of the last layer runs the same operations on the same stream as the
# model's forward; 1e-6 allows for a different kernel choice on a batched call.
@given(seed=st.integers(0, 2**31 - 1), b=st.integers(1, 3), t=st.integers(1, 8))
def test_the_last_layer_of_the_lens_is_the_attention_only_models_output(seed, b, t):
    model = _model(seed=seed % 1000)
    x = torch.randint(0, TINY.vocab_size, (b, t), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(logit_lens(model, x)[-1], expected, atol=1e-6, rtol=1e-6)


@given(seed=st.integers(0, 2**31 - 1), t=st.integers(1, 8))
def test_the_last_layer_of_the_lens_is_the_gpts_output(seed, t):
    model = _gpt(seed % 1000)
    x = torch.randint(
        0, SMALL_GPT.vocab_size, (2, t), generator=torch.Generator().manual_seed(seed)
    )
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(logit_lens(model, x)[-1], expected, atol=1e-5, rtol=1e-5)


def test_the_streams_are_the_embedding_and_each_layers_sum():
    model, x = _model(seed=1), _tokens(2, 2, 4)
    streams = residual_stream(model, x)
    with torch.no_grad():
        h = model.tok_emb(x) + model.pos_emb(torch.arange(x.shape[1]))
        expected = [h]
        for layer in model.layers:
            h = h + layer(h)
            expected.append(h)
    torch.testing.assert_close(streams, torch.stack(expected), atol=1e-6, rtol=1e-6)
    # Every layer of the lens is the unembedding of its stream, with no norm.
    with torch.no_grad():
        unembedded = model.out_head(torch.stack(expected))
    torch.testing.assert_close(logit_lens(model, x), unembedded, atol=1e-6, rtol=1e-6)


def test_a_gpts_lens_applies_the_final_norm_to_every_layer():
    model, x = _gpt(3), torch.tensor([[4, 0, 7, 7, 2, 10]])
    with torch.no_grad():
        h = model.tok_emb(x) + model.pos_emb(torch.arange(x.shape[1]))
        streams = [h]
        for block in model.trf_blocks:
            h = block(h)
            streams.append(h)
        expected = model.out_head(model.final_norm(torch.stack(streams)))
    torch.testing.assert_close(residual_stream(model, x), torch.stack(streams), atol=1e-6, rtol=0)
    torch.testing.assert_close(logit_lens(model, x), expected, atol=1e-5, rtol=1e-5)
    # Without the norm the earlier layers would read differently: the norm matters.
    with torch.no_grad():
        bare = model.out_head(torch.stack(streams[:-1]))
    assert not torch.allclose(bare, expected[:-1], atol=1e-2)


def test_the_lens_leaves_no_hooks_behind_even_when_the_model_raises():
    model = _model()
    with pytest.raises(ValueError, match="tokens"):
        logit_lens(model, torch.full((1, 4), TINY.vocab_size))  # an id out of range
    logit_lens(model, _tokens(0, 1, 4))
    hooked = [m for m in model.modules() if m._forward_pre_hooks]
    assert hooked == []


# -- target_rank ---------------------------------------------------------------


def test_target_rank_golden_values():
    logits = torch.tensor([[0.5, 2.0, -1.0, 2.0], [3.0, 1.0, 1.0, 0.0]])
    assert target_rank(logits, torch.tensor([0, 0])).tolist() == [2, 0]
    assert target_rank(logits, torch.tensor([1, 2])).tolist() == [0, 1]  # ties: the better rank
    assert target_rank(logits, torch.tensor([2, 3])).tolist() == [3, 3]


@given(seed=st.integers(0, 2**31 - 1), v=st.integers(1, 20))
def test_the_rank_of_the_argmax_is_zero_and_ranks_sort_the_logits(seed, v):
    logits = torch.randn(5, v, generator=torch.Generator().manual_seed(seed))
    assert target_rank(logits, logits.argmax(dim=-1)).tolist() == [0] * 5
    ranks = target_rank(logits[:, None, :].expand(5, v, v), torch.arange(v).expand(5, v))
    # Distinct random logits: the ranks of all V tokens are 0 .. V-1 in the sorted order.
    order = logits.argsort(dim=-1, descending=True)
    assert ranks.gather(-1, order).tolist() == [list(range(v))] * 5


# -- the trained model ---------------------------------------------------------


@pytest.fixture(scope="module")
def trained() -> AttentionOnlyTransformer:
    # The configuration of tests/test_induction_scores.py, seed 0: 800 steps.
    threads = torch.get_num_threads()  # module fixtures start before `one_thread`
    torch.set_num_threads(1)
    try:
        run = train_induction(
            InductionConfig(context_length=16), steps=800, batch_size=32, test_size=100
        )
    finally:
        torch.set_num_threads(threads)
    assert run.scores.second_accuracy > 0.9
    return run.model


def test_the_induction_prediction_appears_only_after_layer_1(trained):
    """Over 100 fresh strings of 8 tokens written twice (V = 64, chance 1/64 ~ 0.016).

    After the embedding and after layer 0, the right next token of the second copy
    gets no more than chance: mean probability < 2/64 and a mean rank above 20 (chance
    is 31.5). After layer 1, whose induction head copies it, probability > 0.7 and
    mean rank < 2. The first copy, which cannot be predicted, stays at chance after
    every layer.
    """
    length, v = 8, trained.config.vocab_size
    x = repeated_tokens(100, length, vocab_size=v, generator=torch.Generator().manual_seed(5))
    lens = logit_lens(trained, x)[:, :, :-1]  # (3, B, 2L-1, V): position t predicts t+1
    targets = x[None, :, 1:].expand(lens.shape[:-1])  # (3, B, 2L-1)
    p = lens.softmax(dim=-1).gather(-1, targets[..., None])[..., 0]  # (3, B, 2L-1)
    rank = target_rank(lens, targets).float()
    first, second = slice(0, length - 1), slice(length, 2 * length - 1)
    for n in (0, 1):  # the embedding, and after layer 0
        assert p[n, :, second].mean() < 2 / v
        assert rank[n, :, second].mean() > 20
    assert p[2, :, second].mean() > 0.7
    assert rank[2, :, second].mean() < 2
    for n in range(3):
        assert p[n, :, first].mean() < 2 / v


# -- errors --------------------------------------------------------------------


def test_bad_inputs_raise_named_errors():
    with pytest.raises(TypeError, match="model must be an AttentionOnlyTransformer or a GPTModel"):
        logit_lens(torch.nn.Linear(2, 2), torch.zeros(1, 2, dtype=torch.long))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="model must be"):
        residual_stream("gpt", torch.zeros(1, 2, dtype=torch.long))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tokens must be an int64"):
        logit_lens(_model(), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="more than context_length"):
        logit_lens(_model(), torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="in_idx"):
        logit_lens(_gpt(), torch.full((1, 3), SMALL_GPT.vocab_size))
    with pytest.raises(TypeError, match="logits must be a floating-point tensor"):
        target_rank(torch.tensor([1, 2]), torch.tensor(0))
    with pytest.raises(TypeError, match="targets must be an int64 tensor"):
        target_rank(torch.rand(2, 3), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"targets must have shape \(2,\)"):
        target_rank(torch.rand(2, 3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="targets must hold ids 0 to 2, got values 0 to 3"):
        target_rank(torch.rand(2, 3), torch.tensor([0, 3]))
