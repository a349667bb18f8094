"""The exercise checkers pass a reader's correct code and explain each usual mistake.

Each checker is run on an implementation written as a reader would write it
(not the package's own class), and on broken copies of it, one mistake each;
the failure must name that mistake.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from attention import (
    CausalAttention,
    MultiHeadAttention,
    SelfAttentionV2,
    simple_self_attention,
    softmax_naive,
    softmax_stable,
)
from attention.dropout import inverted_dropout
from attention.exercises import (
    ExerciseError,
    Report,
    check_additive_attention,
    check_batched_scores,
    check_causal_attention,
    check_causal_mask,
    check_delta_rule_step,
    check_flash_update,
    check_inverted_dropout,
    check_kv_cache,
    check_layer_norm,
    check_multihead_attention,
    check_next_token_probabilities,
    check_previous_token_score,
    check_self_attention,
    check_simple_self_attention,
    check_soft_lookup,
    check_softmax,
    check_transformer_block,
)
from attention.gpt import FeedForward, LayerNorm, TransformerBlock
from attention.induction_scores import previous_token_score
from attention.kv_cache import LayerKV
from attention.lookup import soft_lookup
from attention.rnn import AdditiveAttention

# --- masks ---------------------------------------------------------------------


def good_mask(t: int) -> Tensor:
    return torch.ones(t, t, dtype=torch.bool).triu(diagonal=1)


@pytest.mark.parametrize(
    ("make_mask", "message"),
    [
        (lambda t: torch.ones(t, t).triu(diagonal=1), "dtype torch.float32"),
        (lambda t: ~good_mask(t), "opposite convention"),
        (lambda t: torch.ones(t, t, dtype=torch.bool).triu(), "from itself"),
        (lambda t: good_mask(t).T, "comes before it"),
        (lambda t: torch.ones(t, t, dtype=torch.bool).triu(diagonal=2), "which comes after it"),
        (lambda t: good_mask(t)[:, :-1], r"shape \(1, 0\); expected \(1, 1\)"),
        (lambda t: good_mask(t).tolist(), "returned list, not a tensor"),
    ],
)
def test_mask_mistakes_are_named(make_mask, message) -> None:
    with pytest.raises(ExerciseError, match=message):
        check_causal_mask(make_mask)


def test_a_correct_mask_passes_every_check() -> None:
    report = check_causal_mask(good_mask)
    assert isinstance(report, Report)
    assert len(report.passed) == 3
    assert str(report).endswith("All 3 checks passed.")


def test_a_report_of_one_check_says_so_in_the_singular() -> None:
    assert str(Report("shape", ["the shape"])) == "✓ the shape\nThe check passed."


# --- causal attention ----------------------------------------------------------


class ReaderCausal(nn.Module):
    """Causal attention as a reader writes it; ``mistake`` breaks one thing."""

    def __init__(self, d_in, d_out, context_length, dropout, mistake=None) -> None:
        super().__init__()
        self.W_query = nn.Linear(d_in, d_out, bias=False)
        self.W_key = nn.Linear(d_in, d_out, bias=False)
        self.W_value = nn.Linear(d_in, d_out, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("mask", torch.triu(torch.ones(context_length, context_length), 1))
        self.mistake = mistake

    def forward(self, x: Tensor) -> Tensor:
        t = x.shape[1]
        q, k, v = self.W_query(x), self.W_key(x), self.W_value(x)
        scores = q @ k.transpose(1, 2)
        mask = self.mask if self.mistake == "unsliced" else self.mask[:t, :t]
        fill = 0.0 if self.mistake == "zero-fill" else -torch.inf
        scale = 1.0 if self.mistake == "unscaled" else k.shape[-1] ** 0.5
        if self.mistake == "zero-after":
            w = torch.softmax(scores / scale, dim=-1).masked_fill(mask.bool(), 0.0)
        else:
            dim = -2 if self.mistake == "columns" else -1
            w = torch.softmax(scores.masked_fill(mask.bool(), fill) / scale, dim=dim)
        return self.dropout(w) @ v


def reader_causal(mistake):
    def build(d_in, d_out, context_length, dropout):
        return ReaderCausal(d_in, d_out, context_length, dropout, mistake)

    return build


def test_reader_causal_attention_passes() -> None:
    assert len(check_causal_attention(ReaderCausal).passed) == 5


def test_the_package_passes_its_own_checks() -> None:
    assert len(check_causal_attention(CausalAttention).passed) == 5
    assert len(check_multihead_attention(MultiHeadAttention).passed) == 4
    assert len(check_kv_cache(LayerKV).passed) == 4
    assert len(check_layer_norm(LayerNorm).passed) == 3


@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        ("zero-fill", "filling the blocked scores with 0"),
        ("unscaled", "without the 1/sqrt\\(d_k\\) scaling"),
        ("columns", r"softmax over the queries \(dim=-2\)"),
        ("zero-after", "rows no longer sum to 1"),
        ("unsliced", "on 3 tokens.*raised RuntimeError"),
    ],
)
def test_causal_attention_mistakes_are_named(mistake, message) -> None:
    with pytest.raises(ExerciseError, match=message):
        check_causal_attention(reader_causal(mistake))


def test_causal_attention_needs_the_book_names() -> None:
    class Renamed(ReaderCausal):
        def __init__(self, *args) -> None:
            super().__init__(*args)
            self.query = self.W_query
            del self.W_query

    with pytest.raises(ExerciseError, match=r"no nn\.Linear called W_query"):
        check_causal_attention(Renamed)


# --- multi-head attention ------------------------------------------------------


class ReaderMHA(nn.Module):
    """Multi-head attention as a reader writes it; ``mistake`` breaks one thing."""

    def __init__(self, d_in, d_out, context_length, dropout, num_heads, mistake=None) -> None:
        super().__init__()
        self.h, self.d = num_heads, d_out // num_heads
        self.W_query = nn.Linear(d_in, d_out, bias=False)
        self.W_key = nn.Linear(d_in, d_out, bias=False)
        self.W_value = nn.Linear(d_in, d_out, bias=False)
        self.out_proj = nn.Linear(d_out, d_out)
        self.register_buffer("mask", torch.triu(torch.ones(context_length, context_length), 1))
        self.mistake = mistake

    def forward(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        c = self.h * self.d

        def split(y):
            if self.mistake == "no-transpose":
                return y.view(b, self.h, t, self.d)
            return y.view(b, t, self.h, self.d).transpose(1, 2)

        q, k, v = split(self.W_query(x)), split(self.W_key(x)), split(self.W_value(x))
        scale = math.sqrt(c if self.mistake == "wide-scale" else self.d)
        scores = (q @ k.transpose(2, 3)).masked_fill(self.mask.bool()[:t, :t], -torch.inf)
        context = torch.softmax(scores / scale, dim=-1) @ v  # (B, H, T, D)
        if self.mistake == "merge-untransposed":
            merged = context.reshape(b, t, c)
        else:
            merged = context.transpose(1, 2).reshape(b, t, c)
        return merged if self.mistake == "no-projection" else self.out_proj(merged)


def reader_mha(mistake):
    def build(d_in, d_out, context_length, dropout, num_heads):
        return ReaderMHA(d_in, d_out, context_length, dropout, num_heads, mistake)

    return build


def test_reader_multihead_attention_passes() -> None:
    assert len(check_multihead_attention(ReaderMHA).passed) == 4


@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        ("wide-scale", r"sqrt\(d_out\) instead of sqrt\(head_dim\)"),
        ("no-projection", "leaving out the output projection"),
        ("merge-untransposed", "merging the heads without transposing back"),
        # Viewing (B, T, C) as (B, H, T, D) mixes the tokens, so a token sees the future.
        ("no-transpose", "can see the future"),
    ],
)
def test_multihead_mistakes_are_named(mistake, message) -> None:
    with pytest.raises(ExerciseError, match=message):
        check_multihead_attention(reader_mha(mistake))


# --- KV cache ------------------------------------------------------------------


class ReaderCache:
    def __init__(self, dim: int = 2, keep_old: bool = True, count: bool = True) -> None:
        self.k = self.v = None
        self.dim, self.keep_old, self.count, self.n = dim, keep_old, count, 0

    @property
    def length(self) -> int:
        return self.n

    def extend(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        if self.k is None or not self.keep_old:
            self.k, self.v = keys, values
        else:
            self.k = torch.cat((self.k, keys), dim=self.dim)
            self.v = torch.cat((self.v, values), dim=self.dim)
        self.n = self.n + keys.shape[2] if self.count else 0
        return self.k, self.v


def test_reader_kv_cache_passes() -> None:
    assert len(check_kv_cache(ReaderCache).passed) == 4


@pytest.mark.parametrize(
    ("cache", "message"),
    [
        (
            lambda: ReaderCache(keep_old=False),
            r"returned keys of shape \(2, 2, 1, 2\); expected \(2, 2, 4, 2\)",
        ),
        (lambda: ReaderCache(count=False), "length is 0; it must count"),
        (lambda: ReaderCache(dim=3), "raised RuntimeError.*token dimension, dim 2"),
    ],
)
def test_kv_cache_mistakes_are_named(cache, message) -> None:
    with pytest.raises(ExerciseError, match=message):
        check_kv_cache(cache)


# --- the flash update ----------------------------------------------------------


def good_update(m, ell, a, s, v):
    new_m = torch.maximum(m, s.amax(dim=-1, keepdim=True))
    p = torch.exp(s - new_m)
    rescale = torch.exp(m - new_m)
    return new_m, ell * rescale + p.sum(dim=-1, keepdim=True), a * rescale + p @ v


def no_rescale(m, ell, a, s, v):
    new_m = torch.maximum(m, s.amax(dim=-1, keepdim=True))
    p = torch.exp(s - new_m)
    return new_m, ell + p.sum(dim=-1, keepdim=True), a + p @ v


def no_max(m, ell, a, s, v):
    p = torch.exp(s)
    return m, ell + p.sum(dim=-1, keepdim=True), a + p @ v


def test_a_correct_flash_update_passes() -> None:
    assert len(check_flash_update(good_update).passed) == 3


@pytest.mark.parametrize(
    ("update", "message"),
    [
        (no_rescale, "multiply both by exp\\(m - m'\\)"),
        (no_max, "exp\\(1000\\) overflows"),
        (lambda m, ell, a, s, v: (m, ell), "expected the tuple \\(m, l, a\\)"),
        (lambda m, ell, a, s, v: (m, ell.squeeze(-1), a), r"l of shape \(4,\)"),
    ],
)
def test_flash_update_mistakes_are_named(update, message) -> None:
    with pytest.raises(ExerciseError, match=message):
        check_flash_update(update)


# --- layer norm ----------------------------------------------------------------


class ReaderLayerNorm(nn.Module):
    def __init__(self, emb_dim: int, mistake=None) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(emb_dim))
        self.shift = nn.Parameter(torch.zeros(emb_dim))
        self.mistake = mistake

    def forward(self, x: Tensor) -> Tensor:
        dim = -2 if self.mistake == "tokens" else -1
        mean = x.mean(dim=dim, keepdim=True)
        var = x.var(dim=dim, keepdim=True, unbiased=self.mistake == "unbiased")
        if self.mistake == "eps-outside":
            normed = (x - mean) / (var.sqrt() + 1e-5)
        else:
            normed = (x - mean) / torch.sqrt(var + 1e-5)
        return normed if self.mistake == "no-affine" else self.scale * normed + self.shift


def test_reader_layer_norm_passes() -> None:
    assert len(check_layer_norm(ReaderLayerNorm).passed) == 3


@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        ("unbiased", "unbiased variance"),
        ("eps-outside", "adding eps after the square root"),
        ("tokens", r"normalising over the tokens \(dim=-2\)"),
        ("no-affine", "forgetting scale and shift"),
    ],
)
def test_layer_norm_mistakes_are_named(mistake, message) -> None:
    with pytest.raises(ExerciseError, match=message):
        check_layer_norm(lambda emb_dim: ReaderLayerNorm(emb_dim, mistake))


def test_layer_norm_needs_scale_and_shift() -> None:
    with pytest.raises(ExerciseError, match=r"nn\.Parameter called scale"):
        check_layer_norm(lambda emb_dim: nn.LayerNorm(emb_dim))


def test_checking_leaves_the_global_random_state_alone() -> None:
    before = torch.random.get_rng_state()
    check_causal_attention(ReaderCausal)
    check_flash_update(good_update)
    assert torch.equal(torch.random.get_rng_state(), before)  # exact: bytes of the generator state


# --- chapters 3 and 4 ----------------------------------------------------------


def test_softmax_checker() -> None:
    assert len(check_softmax(softmax_stable).passed) == 3
    assert (
        len(check_softmax(lambda s: torch.exp(s - s.max()) / torch.exp(s - s.max()).sum()).passed)
        == 3
    )
    with pytest.raises(ExerciseError, match="exp\\(1000\\) overflows"):
        check_softmax(softmax_naive)
    with pytest.raises(ExerciseError, match="take exp of each score first"):
        check_softmax(lambda s: s / s.sum())


def test_simple_self_attention_checker() -> None:
    assert len(check_simple_self_attention(simple_self_attention).passed) == 2
    with pytest.raises(ExerciseError, match="down each column"):
        check_simple_self_attention(lambda x: torch.softmax(x @ x.T, dim=0) @ x)
    with pytest.raises(ExerciseError, match="without a softmax"):
        check_simple_self_attention(lambda x: (x @ x.T) @ x)


class ReaderV2(nn.Module):
    def __init__(self, d_in, d_out, scale="sqrt") -> None:
        super().__init__()
        self.W_query = nn.Linear(d_in, d_out, bias=False)
        self.W_key = nn.Linear(d_in, d_out, bias=False)
        self.W_value = nn.Linear(d_in, d_out, bias=False)
        self.scale = scale

    def forward(self, x):
        q, k, v = self.W_query(x), self.W_key(x), self.W_value(x)
        d = k.shape[-1]
        divide = {"sqrt": d**0.5, "none": 1.0, "linear": d, "d_in": x.shape[-1] ** 0.5}[self.scale]
        return torch.softmax(q @ k.T / divide, dim=-1) @ v


@pytest.mark.parametrize(
    ("scale", "message"),
    [
        ("none", "without the 1/sqrt\\(d_k\\)"),
        ("linear", "dividing by d_k instead of its square root"),
        ("d_in", "sqrt\\(d_in\\) instead of sqrt\\(d_k\\)"),
    ],
)
def test_self_attention_checker(scale, message) -> None:
    assert len(check_self_attention(SelfAttentionV2).passed) == 3
    assert len(check_self_attention(ReaderV2).passed) == 3
    with pytest.raises(ExerciseError, match=message):
        check_self_attention(lambda d_in, d_out: ReaderV2(d_in, d_out, scale))


# --- chapters 6, 7 and 9 -------------------------------------------------------


def reader_dropout(x, p):
    keep = (torch.rand_like(x) >= p).float()
    return x * keep / (1 - p)


def test_dropout_checker() -> None:
    assert len(check_inverted_dropout(reader_dropout).passed) == 3
    assert (
        len(check_inverted_dropout(lambda x, p: inverted_dropout(x, p, training=True)).passed) == 3
    )
    assert len(check_inverted_dropout(lambda x, p: nn.functional.dropout(x, p)).passed) == 3


@pytest.mark.parametrize(
    ("dropout", "message"),
    [
        (lambda x, p: x * (torch.rand_like(x) >= p), "kept their value: divide them by 1 - p"),
        (lambda x, p: x * (torch.rand_like(x) >= p) * (1 - p), "multiplied by 1 - p"),
        (
            lambda x, p: x * (torch.rand_like(x) < p) / (1 - p),
            "dropped every entry: keep an entry when rand >= p",
        ),
        (lambda x, p: x * 0.5, r"dropout\(x, 0\.0\) changed x"),
    ],
)
def test_dropout_mistakes_are_named(dropout, message) -> None:
    with pytest.raises(ExerciseError, match=message):
        check_inverted_dropout(dropout)


def test_batched_scores_checker() -> None:
    assert len(check_batched_scores(lambda q, k: q @ k.transpose(1, 2)).passed) == 2
    assert len(check_batched_scores(lambda q, k: torch.bmm(q, k.transpose(-2, -1))).passed) == 2
    with pytest.raises(ExerciseError, match="keys @ queries"):
        check_batched_scores(lambda q, k: k @ q.transpose(1, 2))
    with pytest.raises(ExerciseError, match=r"shape \(2, 4, 4\)"):
        check_batched_scores(lambda q, k: q.transpose(1, 2) @ k)


def test_next_token_probabilities_checker() -> None:
    assert (
        len(check_next_token_probabilities(lambda lg: torch.softmax(lg[:, -1, :], dim=-1)).passed)
        == 1
    )
    with pytest.raises(ExerciseError, match="first position"):
        check_next_token_probabilities(lambda lg: torch.softmax(lg[:, 0], dim=-1))
    with pytest.raises(ExerciseError, match="raw logits"):
        check_next_token_probabilities(lambda lg: lg[:, -1])


# --- chapters 11 and 12 --------------------------------------------------------


class ReaderBlock(nn.Module):
    def __init__(self, cfg, mistake=None) -> None:
        super().__init__()
        self.att = MultiHeadAttention(
            cfg.emb_dim, cfg.emb_dim, cfg.context_length, 0.0, cfg.n_heads
        )
        self.ff = FeedForward(cfg)
        self.norm1, self.norm2 = LayerNorm(cfg.emb_dim), LayerNorm(cfg.emb_dim)
        self.mistake = mistake

    def forward(self, x):
        if self.mistake == "post-norm":
            x = self.norm1(x + self.att(x))
            return self.norm2(x + self.ff(x))
        if self.mistake == "no-shortcut":
            return self.ff(self.norm2(self.att(self.norm1(x))))
        if self.mistake == "one-norm":
            x = x + self.att(self.norm1(x))
            return x + self.ff(self.norm1(x))
        x = x + self.att(self.norm1(x))
        return x + self.ff(self.norm2(x))


@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        ("post-norm", "post-norm block"),
        ("no-shortcut", "without shortcuts"),
        ("one-norm", "its own, norm2"),
    ],
)
def test_transformer_block_checker(mistake, message) -> None:
    assert len(check_transformer_block(TransformerBlock).passed) == 2
    assert len(check_transformer_block(ReaderBlock).passed) == 2
    with pytest.raises(ExerciseError, match=message):
        check_transformer_block(lambda cfg: ReaderBlock(cfg, mistake))


def test_transformer_block_needs_the_book_names() -> None:
    class Renamed(ReaderBlock):
        def __init__(self, cfg) -> None:
            super().__init__(cfg)
            self.attention = self.att
            del self.att

    with pytest.raises(ExerciseError, match="name its parts as the book does"):
        check_transformer_block(Renamed)


def test_previous_token_score_checker() -> None:
    assert len(check_previous_token_score(previous_token_score).passed) == 2
    with pytest.raises(ExerciseError, match=r"should score 1.*token 0 has no previous token"):
        check_previous_token_score(lambda w: w.diagonal(-1, -2, -1).sum(-1) / w.shape[-1])
    with pytest.raises(ExerciseError, match="should score 1"):
        check_previous_token_score(lambda w: w.diagonal(0, -2, -1).mean(-1))
    with pytest.raises(ExerciseError, match="average it, one score per matrix"):
        check_previous_token_score(lambda w: w.diagonal(-1, -2, -1)[..., 0])  # query 1 only


# --- chapters 1 and 2 ----------------------------------------------------------


def reader_lookup(query, keys, values, temperature):
    scores = -((keys - query) ** 2).sum(dim=-1)
    return torch.softmax(scores / temperature, dim=-1) @ values


@pytest.mark.parametrize(
    ("lookup", "message"),
    [
        (lambda q, k, v, t: torch.softmax(k @ q / t, dim=-1) @ v, "the dot product as the score"),
        (lambda q, k, v, t: reader_lookup(q, k, v, 1 / t), "multiplying by the temperature"),
        (lambda q, k, v, t: v[((k - q) ** 2).sum(-1).argmin()], "that is the hard lookup"),
    ],
)
def test_soft_lookup_checker(lookup, message) -> None:
    assert len(check_soft_lookup(reader_lookup).passed) == 1
    assert (
        len(check_soft_lookup(lambda q, k, v, t: soft_lookup(q, k, v, temperature=t).value).passed)
        == 1
    )
    with pytest.raises(ExerciseError, match=message):
        check_soft_lookup(lookup)


class ReaderAdditive(nn.Module):
    def __init__(self, query_size, key_size, attention_size, mistake=None) -> None:
        super().__init__()
        self.W_s = nn.Linear(query_size, attention_size)
        self.W_h = nn.Linear(key_size, attention_size, bias=mistake == "bias")
        self.v = nn.Linear(attention_size, 1, bias=False)
        self.mistake = mistake

    def forward(self, query, keys):
        hidden = self.W_s(query)[:, None, :] + self.W_h(keys)
        if self.mistake != "no-tanh":
            hidden = torch.tanh(hidden)
        weights = torch.softmax(self.v(hidden).squeeze(-1), dim=-1)
        values = self.W_h(keys) if self.mistake == "projected" else keys
        return (weights[:, None, :] @ values).squeeze(1), weights


@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        ("no-tanh", "scores without the tanh"),
        ("bias", r"W_h has no bias"),
        ("projected", r"shape \(2, 5\); expected \(2, 6\)"),
    ],
)
def test_additive_attention_checker(mistake, message) -> None:
    assert len(check_additive_attention(AdditiveAttention).passed) == 4
    assert len(check_additive_attention(ReaderAdditive).passed) == 4
    with pytest.raises(ExerciseError, match=message):
        check_additive_attention(lambda *sizes: ReaderAdditive(*sizes, mistake=mistake))


def test_a_report_reads_as_a_list() -> None:
    report = check_causal_mask(good_mask)
    assert repr(report) == str(report)
    assert (
        str(report).splitlines()[0]
        == "✓ returns a (T, T) tensor of booleans for every T from 1 to 8"
    )


# --- chapter 14: the delta rule --------------------------------------------------


def good_delta_step(S, k, v, beta, alpha):
    decayed = alpha * S  # (D_v, D)
    return decayed + beta * torch.outer(v - decayed @ k, k)


def test_a_correct_delta_step_passes() -> None:
    assert len(check_delta_rule_step(good_delta_step).passed) == 3


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (lambda S, k, v, b, a: a * S + b * torch.outer(v, k), r"a write that only adds"),
        (lambda S, k, v, b, a: a * S + b * torch.outer(v - S @ k, k), r"before it fades"),
        (lambda S, k, v, b, a: a * S + torch.outer(v - a * S @ k, k), r"leaving out beta"),
        (lambda S, k, v, b, a: S + b * torch.outer(v - S @ k, k), r"leaving out alpha"),
        (
            lambda S, k, v, b, a: good_delta_step(S, k, v, b, a).T,
            r"shape \(4, 3\); expected \(3, 4\)",
        ),
        (lambda S, k, v, b, a: a * S + b * torch.outer(k, v), r"raised RuntimeError"),
        (lambda S, k, v, b, a: 2 * good_delta_step(S, k, v, b, a), r"differs .* by up to"),
    ],
)
def test_delta_step_mistakes_are_named(step, message) -> None:
    with pytest.raises(ExerciseError, match=message):
        check_delta_rule_step(step)
