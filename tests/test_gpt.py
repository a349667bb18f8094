"""Chapters 9 to 11: the GPT reproduces the book's numbers; the KV cache changes nothing."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given
from hypothesis import strategies as st
from torch import nn

from attention import MultiHeadAttention
from attention.gpt import (
    GELU,
    FeedForward,
    GPTConfig,
    GPTModel,
    LayerNorm,
    PostNormTransformerBlock,
    RMSNorm,
    TransformerBlock,
    as_config,
    generate_text_simple,
)
from attention.kv_cache import KVCache, LayerKV
from tests.conftest import C_COMPILER, INDUCTOR_WARNINGS, generator, random_tensor

BOOK = 1e-4
TINY = GPTConfig(vocab_size=50, context_length=12, emb_dim=16, n_heads=4, n_layers=2)
BOOK_DICT = {
    "vocab_size": 50257,
    "context_length": 1024,
    "emb_dim": 768,
    "n_heads": 12,
    "n_layers": 12,
    "drop_rate": 0.1,
    "qkv_bias": False,
}
HELLO_I_AM = [15496, 11, 314, 716]
# gpt.py main() of the book: seed 123, eval mode, 10 new tokens.
BOOK_14_IDS = [*HELLO_I_AM, 27018, 24086, 47843, 30961, 42348, 7267, 49706, 43231, 47062, 34657]
# ch04 In [6]: seed 123, randn(2, 5), then Linear(5, 6) + ReLU.
BOOK_RELU_OUT = [
    [0.2260, 0.3470, 0.0000, 0.2216, 0.0000, 0.0000],
    [0.2133, 0.2394, 0.0000, 0.5198, 0.3297, 0.0000],
]
BOOK_RELU_MEAN = [0.1324, 0.2170]
BOOK_RELU_VAR = [0.0231, 0.0398]  # torch.var's default: unbiased
BOOK_RELU_NORM = [
    [0.6159, 1.4126, -0.8719, 0.5872, -0.8719, -0.8719],
    [-0.0189, 0.1121, -1.0876, 1.5173, 0.5647, -1.0876],
]


def _close(actual, expected, atol=BOOK) -> bool:
    return torch.allclose(actual, torch.tensor(expected, device=actual.device), atol=atol, rtol=0)


@pytest.fixture(scope="module")
def gpt2_small() -> GPTModel:
    torch.manual_seed(123)
    return GPTModel(GPTConfig()).eval()


# -- The config ----------------------------------------------------------------


def test_config_defaults_are_gpt2_small():
    assert dataclasses.asdict(GPTConfig()) == {**BOOK_DICT, "attn_impl": "manual"}
    assert as_config(BOOK_DICT) == GPTConfig()  # the book's dict: attn_impl may be left out
    assert as_config({**BOOK_DICT, "attn_impl": "sdpa"}) == GPTConfig(attn_impl="sdpa")
    with pytest.raises(dataclasses.FrozenInstanceError):
        GPTConfig().emb_dim = 10  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"emb_dim": 10, "n_heads": 3}, ValueError, r"emb_dim must be divisible by n_heads"),
        ({"n_layers": 0}, ValueError, r"n_layers must be a positive int, got 0"),
        ({"vocab_size": 5.0}, TypeError, r"vocab_size must be a positive int, got float"),
        ({"drop_rate": 1.0}, ValueError, r"drop_rate must be in \[0, 1\), got 1.0"),
        ({"qkv_bias": 1}, TypeError, r"qkv_bias must be a bool"),
        ({"attn_impl": "flash"}, ValueError, r"attn_impl must be 'manual' or 'sdpa', got 'flash'"),
    ],
)
def test_bad_config_values(changes, error, message):
    with pytest.raises(error, match=message):
        GPTConfig(**changes)


def test_bad_config_dicts():
    with pytest.raises(ValueError, match=r"missing \['qkv_bias'\] and unknown \['ctx_len'\]"):
        as_config({**{k: v for k, v in BOOK_DICT.items() if k != "qkv_bias"}, "ctx_len": 4})
    with pytest.raises(TypeError, match=r"cfg must be a GPTConfig or a dict, got list"):
        GPTModel([1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize("options", [{}, {"n_kv_heads": 1}, {"rope": True}, {"window": 3}], ids=str)
def test_attn_impl_sdpa_gives_the_manual_logits(device, options):
    cfg = GPTConfig(vocab_size=50, context_length=16, emb_dim=16, n_heads=4, n_layers=2)
    torch.manual_seed(0)
    manual = GPTModel(cfg, **options).to(device).eval()
    torch.manual_seed(0)
    fused = GPTModel(dataclasses.replace(cfg, attn_impl="sdpa"), **options).to(device).eval()
    assert {block.att.impl for block in fused.trf_blocks} == {"sdpa"}
    assert {block.att.impl for block in manual.trf_blocks} == {"manual"}
    ids = torch.randint(0, 50, (2, 9), generator=generator(device, 1), device=device)
    padding = torch.zeros(2, 9, dtype=torch.bool, device=device)
    padding[0, :3] = True  # left padding in the first sequence
    with torch.no_grad():
        for mask in (None, padding):
            torch.testing.assert_close(
                fused(ids, padding_mask=mask), manual(ids, padding_mask=mask), atol=1e-5, rtol=1e-5
            )


# -- GPT-2 small, seeded: the book's published numbers ------------------------


def test_gpt2_small_parameter_counts(gpt2_small):
    total = sum(p.numel() for p in gpt2_small.parameters())
    head = sum(p.numel() for p in gpt2_small.out_head.parameters())
    assert total == 163_009_536
    assert total - head == 124_412_160
    assert gpt2_small.out_head.weight.shape == gpt2_small.tok_emb.weight.shape == (50257, 768)


def test_gpt2_small_greedy_generation_gives_the_books_14_ids(gpt2_small):
    out = generate_text_simple(gpt2_small, torch.tensor([HELLO_I_AM]), 10, 1024)
    assert out.tolist() == [BOOK_14_IDS]


def test_the_books_greedy_steps_are_far_from_ties(gpt2_small):
    """Chapter 11 compares the ids of cached and plain generation exactly.

    Ids are integers, but each is the argmax of logits that the two ways compute
    differently, so they agree only if no step is a near tie. Every step's best
    logit leads the runner-up by more than 1e-3 (8.6e-3 at the closest step when
    this was written), while the cache moves the logits by about 2e-6.
    """
    ids = torch.tensor([BOOK_14_IDS])
    prompt = len(HELLO_I_AM)
    with torch.no_grad():
        plain = gpt2_small(ids[:, :-1])[0, prompt - 1 :]  # (10, V): the logits of each step
        cache = KVCache()
        steps = [gpt2_small(ids[:, :prompt], cache=cache)[0, -1]]
        steps += [gpt2_small(ids[:, t : t + 1], cache=cache)[0, -1] for t in range(prompt, 13)]
    cached = torch.stack(steps)  # (10, V)
    # Logits of size ~3 from 12 layers of float32 sums of 768 to 3,072 terms.
    torch.testing.assert_close(cached, plain, rtol=0, atol=1e-4)
    top2 = plain.topk(2, dim=-1).values  # (10, 2)
    assert (top2[:, 0] - top2[:, 1]).min() > 1e-3


def test_parameters_are_created_in_the_books_order():
    model = GPTModel({**dataclasses.asdict(TINY), "n_layers": 1})
    assert [name for name, _ in model.named_parameters()] == [
        "tok_emb.weight",
        "pos_emb.weight",
        "trf_blocks.0.att.W_query.weight",
        "trf_blocks.0.att.W_key.weight",
        "trf_blocks.0.att.W_value.weight",
        "trf_blocks.0.att.out_proj.weight",
        "trf_blocks.0.att.out_proj.bias",
        "trf_blocks.0.ff.layers.0.weight",
        "trf_blocks.0.ff.layers.0.bias",
        "trf_blocks.0.ff.layers.2.weight",
        "trf_blocks.0.ff.layers.2.bias",
        "trf_blocks.0.norm1.scale",
        "trf_blocks.0.norm1.shift",
        "trf_blocks.0.norm2.scale",
        "trf_blocks.0.norm2.shift",
        "final_norm.scale",
        "final_norm.shift",
        "out_head.weight",
    ]
    assert isinstance(model.trf_blocks[0].att, MultiHeadAttention)
    assert isinstance(model.trf_blocks[0].drop_shortcut, nn.Dropout)


def test_a_dict_and_a_config_give_the_same_seeded_model():
    torch.manual_seed(5)
    a = GPTModel(TINY)
    torch.manual_seed(5)
    b = GPTModel(dataclasses.asdict(TINY))
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert na == nb
        assert torch.equal(pa, pb)  # exact: the same seed draws the same numbers


# -- Layer norm ---------------------------------------------------------------


def test_layer_norm_book_numbers():
    torch.manual_seed(123)
    batch_example = torch.randn(2, 5)
    out = nn.Sequential(nn.Linear(5, 6), nn.ReLU())(batch_example)
    assert _close(out, BOOK_RELU_OUT)
    mean, var = out.mean(dim=-1, keepdim=True), out.var(dim=-1, keepdim=True)
    assert _close(mean.squeeze(-1), BOOK_RELU_MEAN)
    assert _close(var.squeeze(-1), BOOK_RELU_VAR)
    assert _close((out - mean) / var.sqrt(), BOOK_RELU_NORM)

    out_ln = LayerNorm(emb_dim=5)(batch_example)
    assert out_ln.mean(dim=-1).abs().max() < 1e-6
    assert _close(out_ln.var(dim=-1, unbiased=False), [1.0, 1.0])


def test_layer_norm_matches_torch(device):
    x = random_tensor(0, 3, 4, 8, device=device) * 3 + 1
    ours = LayerNorm(8).to(device)
    with torch.no_grad():
        ours.scale.copy_(random_tensor(1, 8, device=device))
        ours.shift.copy_(random_tensor(2, 8, device=device))
    ref = nn.LayerNorm(8, eps=1e-5).to(device)
    with torch.no_grad():
        ref.weight.copy_(ours.scale)
        ref.bias.copy_(ours.shift)
    assert torch.allclose(ours(x), ref(x), atol=1e-6)


@given(
    seed=st.integers(0, 2**16),
    width=st.integers(2, 32),
    offset=st.floats(-100, 100),
    spread=st.floats(0.5, 50),
)
def test_layer_norm_gives_zero_mean_unit_variance(device, seed, width, offset, spread):
    x = random_tensor(seed, 3, width, device=device) * spread + offset
    v = x.var(dim=-1, unbiased=False)
    assume(bool((v > 1e-2).all()))  # eps matters only for near-constant vectors
    y = LayerNorm(width).to(device)(x)
    assert y.mean(dim=-1).abs().max() < 1e-4
    assert torch.allclose(y.var(dim=-1, unbiased=False), v / (v + 1e-5), atol=1e-4)
    # only the vector's shape matters, not its offset or size
    assert torch.allclose(LayerNorm(width).to(device)(x * 2 + 7), y, atol=1e-3)


def test_layer_norm_of_a_constant_vector_is_the_shift(device):
    ln = LayerNorm(4).to(device)
    with torch.no_grad():
        ln.shift.fill_(0.5)
    # exact: the mean of four 3.0s is 3.0, so (x - mean) is 0 and 0 * scale + 0.5 = 0.5
    assert torch.equal(
        ln(torch.full((1, 4), 3.0, device=device)), torch.full((1, 4), 0.5, device=device)
    )


# -- RMSNorm ------------------------------------------------------------------------


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).mean(dim=-1).sqrt()


def test_rms_norm_matches_torch(device):
    x = random_tensor(0, 3, 4, 8, device=device) * 3 + 1
    ours = RMSNorm(8).to(device)
    with torch.no_grad():
        ours.scale.copy_(random_tensor(1, 8, device=device))
    ref = nn.RMSNorm(8, eps=1e-5).to(device)
    with torch.no_grad():
        ref.weight.copy_(ours.scale)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-6, rtol=1e-6)
    assert [name for name, _ in ours.named_parameters()] == ["scale"]  # no shift


@given(
    seed=st.integers(0, 2**16),
    width=st.integers(2, 32),
    offset=st.floats(-100, 100),
    spread=st.floats(0.5, 50),
    factor=st.floats(0.01, 100),
)
def test_rms_norm_gives_rms_one_and_ignores_positive_scaling(
    device, seed, width, offset, spread, factor
):
    x = random_tensor(seed, 3, width, device=device) * spread + offset
    mean_square = x.pow(2).mean(dim=-1)
    assume(bool((factor**2 * mean_square > 1.0).all()))  # eps negligible for x and c * x
    y = RMSNorm(width).to(device)(x)
    # RMS 1 up to eps: exactly sqrt(ms / (ms + eps))
    expected = (mean_square / (mean_square + 1e-5)).sqrt()
    torch.testing.assert_close(_rms(y), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(RMSNorm(width).to(device)(factor * x), y, atol=1e-4, rtol=1e-4)


def test_rms_norm_keeps_the_mean_that_layer_norm_removes(device):
    x = random_tensor(0, 5, 16, device=device) * 2 + 3
    centred = x - x.mean(dim=-1, keepdim=True)
    # mean(x^2) = var + mean^2: with mean 0 the two normalisations coincide
    torch.testing.assert_close(
        RMSNorm(16).to(device)(centred), LayerNorm(16).to(device)(centred), atol=1e-5, rtol=1e-5
    )
    assert RMSNorm(16).to(device)(x).mean(dim=-1).min() > 0.5  # the offset of 3 survives
    assert (RMSNorm(16).to(device)(x) - LayerNorm(16).to(device)(x)).abs().max() > 0.5


def test_rms_norm_of_zero_is_zero_and_sign_flips(device):
    norm = RMSNorm(4).to(device)
    # exact: 0 * rsqrt(0 + eps) * 1 = 0
    assert torch.equal(norm(torch.zeros(2, 4, device=device)), torch.zeros(2, 4, device=device))
    x = random_tensor(3, 2, 4, device=device)
    # exact: negating x negates every product and leaves the mean of squares as it was
    assert torch.equal(norm(-x), -norm(x))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_rms_norm_in_half_types_equals_nn_rms_norm(device, dtype):
    """As for LayerNorm: in float16 the square of 400 overflows unless taken in float32."""
    x = torch.tensor([[400.0, -400.0, 100.0, -100.0]], dtype=dtype, device=device)
    ours = RMSNorm(4).to(dtype)(x)
    _same_as_pytorch(ours, nn.RMSNorm(4, eps=1e-5).to(dtype)(x))
    expected = torch.tensor([[1.372, -1.372, 0.343, -0.343]], device=device)
    torch.testing.assert_close(ours.float(), expected, atol=1e-2, rtol=0)

    wide = random_tensor(0, 3, 5, 64, device=device) * 300 + 50
    norm = RMSNorm(64).to(device)
    ref = nn.RMSNorm(64, eps=1e-5).to(device)
    with torch.no_grad():
        norm.scale.copy_(random_tensor(1, 64, device=device))
        ref.weight.copy_(norm.scale)
    norm, ref = norm.to(dtype), ref.to(dtype)
    _same_as_pytorch(norm(wide.to(dtype)), ref(wide.to(dtype)))


def test_rms_norm_in_half_with_float32_parameters_gives_float32(device):
    out = RMSNorm(8).to(device)(random_tensor(0, 2, 8, device=device).to(torch.bfloat16))
    assert out.dtype == torch.float32


# -- Post-norm block ------------------------------------------------------------------


def test_post_norm_block_normalises_after_each_shortcut(device):
    torch.manual_seed(0)
    block = PostNormTransformerBlock(TINY).to(device).eval()
    x = random_tensor(1, 2, 5, 16, device=device)
    h = block.norm1(x + block.att(x))
    torch.testing.assert_close(block(x), block.norm2(h + block.ff(h)), atol=1e-6, rtol=1e-6)
    # its output is the last norm's: every token has mean 0 with the initial shift
    assert block(x).mean(dim=-1).abs().max() < 1e-5


def test_post_norm_block_has_the_pre_norm_blocks_weights(device):
    torch.manual_seed(0)
    pre = TransformerBlock(TINY).to(device)
    torch.manual_seed(0)
    post = PostNormTransformerBlock(TINY).to(device)
    assert pre.state_dict().keys() == post.state_dict().keys()
    for key, value in pre.state_dict().items():
        assert torch.equal(value, post.state_dict()[key]), key  # exact: same seed, same draws
    post.load_state_dict(pre.state_dict())  # strict


def test_post_norm_block_with_a_cache_gives_the_full_pass(device):
    torch.manual_seed(0)
    block = PostNormTransformerBlock(TINY).to(device).eval()
    x = random_tensor(1, 2, 7, 16, device=device)
    kv = LayerKV()
    first = block(x[:, :4], kv=kv)
    rest = block(x[:, 4:], kv=kv)
    torch.testing.assert_close(torch.cat([first, rest], dim=1), block(x), atol=1e-5, rtol=1e-5)


# -- GELU, feed-forward, shortcuts ------------------------------------------


def test_gelu_is_pytorchs_tanh_gelu(device):
    x = torch.linspace(-6, 6, 101, device=device)
    gelu = GELU().to(device)
    assert torch.allclose(gelu(x), F.gelu(x, approximate="tanh"), atol=1e-6)
    assert gelu(torch.tensor(0.0, device=device)) == 0  # exact: 0.5 * 0 * (...) = 0
    assert gelu(torch.tensor(-0.5, device=device)) < 0  # small negative inputs get through


def test_feed_forward_expands_four_times(device):
    ff = FeedForward(TINY).to(device)
    assert [type(m) for m in ff.layers] == [nn.Linear, GELU, nn.Linear]
    assert ff.layers[0].weight.shape == (64, 16)
    assert ff.layers[2].weight.shape == (16, 64)
    assert ff(random_tensor(0, 2, 3, 16, device=device)).shape == (2, 3, 16)


def test_transformer_block_is_pre_norm_with_shortcuts(device):
    torch.manual_seed(0)
    block = TransformerBlock(TINY).to(device).eval()
    x = random_tensor(1, 2, 5, 16, device=device)
    h = x + block.att(block.norm1(x))
    assert torch.allclose(block(x), h + block.ff(block.norm2(h)), atol=1e-6)
    assert block(x).shape == (2, 5, 16)


def test_gpt_forward_is_the_books_composition(device):
    torch.manual_seed(0)
    model = GPTModel(TINY).to(device).eval()
    idx = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]], device=device)
    x = model.tok_emb(idx) + model.pos_emb(torch.arange(4, device=device))
    expected = model.out_head(model.final_norm(model.trf_blocks(x)))
    assert torch.allclose(model(idx), expected, atol=1e-6)


def test_generation_is_causal_so_appending_does_not_change_earlier_logits(device):
    torch.manual_seed(0)
    model = GPTModel(TINY).to(device).eval()
    short = model(torch.tensor([[3, 1, 4]], device=device))
    longer = model(torch.tensor([[3, 1, 4, 1, 5]], device=device))
    assert torch.allclose(short, longer[:, :3], atol=1e-5)


def test_a_checkpoint_holding_the_old_persistent_masks_loads(device):
    """GPTModel checkpoints saved while every block's mask was in the state_dict."""
    torch.manual_seed(0)
    model = GPTModel(TINY).to(device).eval()
    assert not [key for key in model.state_dict() if key.endswith("mask")]
    for block in model.trf_blocks:
        block.att.register_buffer("mask", block.att.mask, persistent=True)
    saved = model.state_dict()
    assert "trf_blocks.1.att.mask" in saved
    fresh = GPTModel(TINY).to(device).eval()
    fresh.load_state_dict(saved)  # strict
    idx = torch.tensor([[1, 2, 3, 4]], device=device)
    assert torch.equal(fresh(idx), model(idx))  # exact: the same weights and operations


# -- float16 and bfloat16, against PyTorch's own layers ---------------------------

HALF_TYPES = [torch.float16, torch.bfloat16]


def _same_as_pytorch(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    """Equal within one unit in the last place of the dtype at the largest output.

    Two computations of one function in float16 or bfloat16 may round their
    intermediates differently; a unit of the largest value allows for that and
    nothing more (a wrong or overflowed result misses by many units).
    """
    assert ours.dtype == theirs.dtype
    unit = torch.finfo(theirs.dtype).eps * theirs.abs().max().item()
    torch.testing.assert_close(ours, theirs, atol=unit, rtol=0)


def _pytorch_layer_norm(norm: LayerNorm, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, (norm.emb_dim,), norm.scale, norm.shift, norm.eps)


def _pytorch_feed_forward(ff: FeedForward, x: torch.Tensor) -> torch.Tensor:
    first, _, second = ff.layers
    hidden = F.gelu(F.linear(x, first.weight, first.bias), approximate="tanh")  # (B, T, 4C)
    return F.linear(hidden, second.weight, second.bias)  # (B, T, C)


def _pytorch_block(block: TransformerBlock, x: torch.Tensor) -> torch.Tensor:
    """The block's forward in eval mode from PyTorch's functions, on the block's weights."""
    att = block.att
    b, t, c = x.shape
    h = _pytorch_layer_norm(block.norm1, x)
    q, k, v = (
        F.linear(h, proj.weight, proj.bias).view(b, t, att.num_heads, att.head_dim).transpose(1, 2)
        for proj in (att.W_query, att.W_key, att.W_value)
    )  # 3 x (B, H, T, D)
    context = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, D)
    x = x + att.out_proj(context.transpose(1, 2).reshape(b, t, c))
    return x + _pytorch_feed_forward(block.ff, _pytorch_layer_norm(block.norm2, x))


@pytest.mark.parametrize("dtype", HALF_TYPES)
def test_layer_norm_in_half_types_equals_nn_layer_norm(device, dtype):
    """The issue's example: in float16 the variance of +-400 overflows unless taken in float32."""
    x = torch.tensor([[400.0, -400.0, 100.0, -100.0]], dtype=dtype, device=device)
    ours = LayerNorm(4).to(dtype)(x)
    _same_as_pytorch(ours, nn.LayerNorm(4).to(dtype)(x))
    assert torch.allclose(
        ours.float(), torch.tensor([[1.372, -1.372, 0.343, -0.343]], device=device), atol=1e-2
    )

    wide = random_tensor(0, 3, 5, 64, device=device) * 300 + 50
    norm = LayerNorm(64).to(device)
    with torch.no_grad():
        norm.scale.copy_(random_tensor(1, 64, device=device))
        norm.shift.copy_(random_tensor(2, 64, device=device))
    norm = norm.to(dtype)
    _same_as_pytorch(norm(wide.to(dtype)), _pytorch_layer_norm(norm, wide.to(dtype)))


@pytest.mark.parametrize("dtype", HALF_TYPES)
def test_gelu_in_half_types_equals_f_gelu(device, dtype):
    """Each value within a unit of its own size: no cancellation in 1 + tanh for x < 0."""
    # float16's x^3 overflows beyond 40
    x = torch.linspace(-60, 60, 2001, dtype=dtype, device=device)
    ours, theirs = GELU().to(device)(x), F.gelu(x, approximate="tanh")
    assert ours.dtype == dtype
    eps, tiny = torch.finfo(dtype).eps, torch.finfo(dtype).tiny
    torch.testing.assert_close(ours, theirs, rtol=eps, atol=tiny)


@pytest.mark.parametrize("dtype", HALF_TYPES)
def test_feed_forward_and_block_in_half_types_equal_pytorchs_layers(dtype):
    torch.manual_seed(0)
    block = TransformerBlock(TINY).eval().to(dtype)
    x = (random_tensor(1, 2, 12, 16) * 3).to(dtype)
    _same_as_pytorch(block.ff(x), _pytorch_feed_forward(block.ff, x))
    _same_as_pytorch(block(x), _pytorch_block(block, x))


@pytest.mark.parametrize("dtype", HALF_TYPES)
def test_gpt_in_half_types_equals_pytorchs_layers(dtype):
    torch.manual_seed(0)
    model = GPTModel(TINY).eval()
    with torch.no_grad():
        model.tok_emb.weight.mul_(300)  # token vectors whose float16 variance overflows
    model = model.to(dtype)
    idx = torch.randint(0, TINY.vocab_size, (2, TINY.context_length))
    x = model.tok_emb(idx) + model.pos_emb(torch.arange(TINY.context_length))
    for block in model.trf_blocks:
        x = _pytorch_block(block, x)
    expected = model.out_head(_pytorch_layer_norm(model.final_norm, x))
    logits = model(idx)
    assert torch.isfinite(logits).all()
    _same_as_pytorch(logits, expected)


# -- Errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("idx", "error", "message"),
    [
        (torch.tensor([[1.0, 2.0]]), TypeError, r"in_idx must hold integer token ids, got dtype"),
        (torch.tensor([[True]]), TypeError, r"in_idx must hold integer token ids"),
        (torch.tensor([1, 2]), ValueError, r"in_idx must have shape \(B, T\) .*got 1 dimensions"),
        (
            torch.tensor([[1, 50]]),
            ValueError,
            r"ids in \[0, vocab_size=50\), got values from 1 to 50",
        ),
        (torch.tensor([[-1, 2]]), ValueError, r"got values from -1 to 2"),
        (torch.zeros(1, 13, dtype=torch.long), ValueError, r"13 tokens .*context_length=12"),
        (torch.zeros(1, 0, dtype=torch.long), ValueError, r"at least one token"),
        ([[1, 2]], TypeError, r"in_idx must be a torch.Tensor, got list"),
    ],
)
def test_bad_token_ids(idx, error, message):
    with pytest.raises(error, match=message):
        GPTModel(TINY)(idx)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"max_new_tokens": -1}, ValueError, r"max_new_tokens must be an int >= 0, got -1"),
        ({"max_new_tokens": 2.0}, TypeError, r"max_new_tokens must be an int >= 0"),
        ({"context_size": 0}, ValueError, r"context_size must be a positive int, got 0"),
        ({"use_cache": "yes"}, TypeError, r"use_cache must be a bool"),
        ({"idx": torch.tensor([1, 2])}, ValueError, r"idx must have shape \(B, T\)"),
    ],
)
def test_bad_generation_arguments(kwargs, error, message):
    args = {"idx": torch.tensor([[1, 2]]), "max_new_tokens": 2, "context_size": 12, **kwargs}
    with pytest.raises(error, match=message):
        generate_text_simple(GPTModel(TINY), **args)


def test_bad_layer_inputs():
    with pytest.raises(ValueError, match=r"x must have last dimension emb_dim=8, got 5"):
        LayerNorm(8)(torch.rand(2, 5))
    with pytest.raises(TypeError, match=r"x must be a floating-point tensor"):
        GELU()(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"eps must be a positive number, got 0"):
        LayerNorm(8, eps=0)


# -- torch.compile ---------------------------------------------------------------


@C_COMPILER
@INDUCTOR_WARNINGS
def test_gpt_model_compiles_as_one_graph():
    """fullgraph=True: no graph break, so no host sync, in the id check or anywhere else.

    The range check of the ids then runs inside the graph (torch._assert_async)
    and still stops an id outside the vocabulary.
    """
    cfg = GPTConfig(vocab_size=16, context_length=8, emb_dim=8, n_heads=2, n_layers=1)
    model = GPTModel(cfg).eval()
    compiled = torch.compile(model, fullgraph=True)
    idx = torch.randint(0, 16, (2, 5))
    with torch.no_grad():
        assert torch.allclose(compiled(idx), model(idx), atol=1e-5, rtol=0)
        # torch 2.6's compiled graph can stop first at its own bounds check of
        # the embedding; both are RuntimeErrors that say what is out of range.
        stops = r"in_idx must hold ids in \[0, vocab_size=16\)|index out of bounds: 0 <= \w+ < 16"
        with pytest.raises(RuntimeError, match=stops):
            compiled(torch.full((2, 5), 16))
