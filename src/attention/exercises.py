"""Checkers for the exercises in which you write a chapter's core code yourself.

Each ``check_*`` function takes the function or class you wrote, runs on it
the properties that the package's own tests check on the package's version,
and returns a :class:`Report` listing them. At the first property that does
not hold it raises :class:`ExerciseError`, whose message says in plain words
what went wrong and where to look; where a common mistake explains the
result (a missing scale, a softmax over the wrong dimension, an unbiased
variance), the message names it.

Your code gets the same weights as the package's layer, so the outputs can
be compared number for number, within float32's rounding (:data:`ATOL`).

Example:
    >>> import torch
    >>> from attention.exercises import check_causal_mask
    >>> def my_mask(num_tokens):
    ...     return torch.ones(num_tokens, num_tokens, dtype=torch.bool).triu(diagonal=1)
    >>> print(check_causal_mask(my_mask))
    ✓ returns a (T, T) tensor of booleans for every T from 1 to 8
    ✓ lets every token see itself and every token before it
    ✓ blocks every token after the query
    All 3 checks passed.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attention.causal import CausalAttention
from attention.functional import causal_mask
from attention.multihead import MultiHeadAttention
from attention.toy import toy_inputs

# Every chapter imports this module, so it loads only what ``import attention``
# loads anyway. The checkers for the later chapters' layers (the GPT block,
# the KV cache, the induction scores, the RNN's attention) import them when
# called: the book's build re-executes a chapter when a package file its
# kernel loaded changes (docs/_ext/package_deps.py), and a checker nobody
# calls should not tie every chapter to those files.
if TYPE_CHECKING:
    from attention.kv_cache import LayerKV

__all__ = [
    "ATOL",
    "ExerciseError",
    "Report",
    "check_additive_attention",
    "check_batched_scores",
    "check_causal_attention",
    "check_causal_mask",
    "check_delta_rule_step",
    "check_flash_update",
    "check_inverted_dropout",
    "check_kv_cache",
    "check_layer_norm",
    "check_multihead_attention",
    "check_next_token_probabilities",
    "check_previous_token_score",
    "check_self_attention",
    "check_simple_self_attention",
    "check_soft_lookup",
    "check_softmax",
    "check_transformer_block",
]

#: Largest difference allowed between your output and the package's: the
#: same sums in float32, perhaps added in another order, differ by a few
#: units in the last place of numbers of order 1, far below this.
ATOL = 1e-5


_Check = TypeVar("_Check", bound=Callable[..., "Report"])


class ExerciseError(AssertionError):
    """Your code broke a property the package's own version has; the message says which."""


@dataclass(repr=False)
class Report:
    """The properties your code was checked for, all of which held."""

    exercise: str
    passed: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"✓ {p}" for p in self.passed]
        n = len(self.passed)
        summary = "The check passed." if n == 1 else f"All {n} checks passed."
        return "\n".join([*lines, summary])

    __repr__ = __str__  # a notebook shows the list, not the dataclass


def _keeps_random_state(check: _Check) -> _Check:
    """Run ``check`` without disturbing the caller's random numbers.

    Building your layer draws its initial weights from the global generator;
    the checker restores the generator afterwards, so a notebook that checks
    its code draws the same numbers after the check as without it.
    """

    @functools.wraps(check)
    def run(*args: Any, **kwargs: Any) -> Report:
        with torch.random.fork_rng(devices=[]):
            return check(*args, **kwargs)

    return cast(_Check, run)


def _fail(message: str) -> ExerciseError:
    return ExerciseError(message)


def _close(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a, b, atol=ATOL, rtol=0.0))


def _call(what: str, fn: Callable[[], object]) -> object:
    """Run ``fn``; an exception from your code becomes a failure that says what was tried."""
    try:
        return fn()
    except ExerciseError:
        raise
    except Exception as exc:
        raise _fail(f"{what} raised {type(exc).__name__}: {exc}") from exc


def _output(what: str, fn: Callable[[], object], shape: tuple[int, ...]) -> Tensor:
    """Your code's output, which must be a float tensor of the given shape."""
    out = _call(what, fn)
    if not isinstance(out, Tensor):
        raise _fail(f"{what} returned {type(out).__name__}, not a tensor.")
    if tuple(out.shape) != shape:
        raise _fail(f"{what} returned shape {tuple(out.shape)}; expected {shape}.")
    return out


def _named_mistake(yours: Tensor, mistakes: dict[str, Tensor], what: str) -> str | None:
    """The message naming the common mistake that reproduces your output, if one does."""
    for explanation, output in mistakes.items():
        if _close(yours, output):
            return f"{what} differs from the package's, and equals what {explanation}."
    return None


def _diagnose(yours: Tensor, expected: Tensor, mistakes: dict[str, Tensor], what: str) -> str:
    """Name the common mistake that reproduces your output, or say how far off it is."""
    named = _named_mistake(yours, mistakes, what)
    if named is not None:
        return named
    gap = (yours - expected).abs().max().item()
    return f"{what} differs from the package's by up to {gap:.2e} (allowed: {ATOL:.0e})."


def _linear(layer: object, name: str, d_in: int, d_out: int, owner: str) -> nn.Linear:
    """Your layer's attribute ``name``, which must be an nn.Linear(d_in, d_out)."""
    if not isinstance(layer, nn.Linear):
        raise _fail(
            f"{owner} has no nn.Linear called {name} (found {type(layer).__name__}). "
            f"Name the projections as the book does (W_query, W_key, W_value), so the "
            f"checker can give them the package's weights."
        )
    if (layer.in_features, layer.out_features) != (d_in, d_out):
        raise _fail(
            f"{owner}.{name} maps {layer.in_features} features to {layer.out_features}; "
            f"expected nn.Linear({d_in}, {d_out})."
        )
    return layer


def _copy_linear(source: nn.Linear, target: nn.Linear) -> None:
    with torch.no_grad():
        target.weight.copy_(source.weight)
        if target.bias is not None and source.bias is not None:
            target.bias.copy_(source.bias)


def _attend(
    q: Tensor, k: Tensor, v: Tensor, *, scale: float, dim: int = -1, fill: float = -math.inf
) -> Tensor:
    """Causal attention with a chosen scale, softmax dimension and fill (for diagnoses)."""
    t = q.shape[-2]
    scores = (q @ k.transpose(-2, -1)).masked_fill(causal_mask(t), fill) * scale
    return torch.softmax(scores, dim=dim).nan_to_num(0.0) @ v


def _attend_zeroed_after_softmax(q: Tensor, k: Tensor, v: Tensor, *, scale: float) -> Tensor:
    """Softmax over all keys, then the future's weights set to 0 without renormalising."""
    t = q.shape[-2]
    weights = torch.softmax(q @ k.transpose(-2, -1) * scale, dim=-1)
    return weights.masked_fill(causal_mask(t), 0.0) @ v


def _check_causality(
    layer: Callable[[Tensor], object], x: Tensor, shape: tuple[int, ...], name: str
) -> None:
    """Changing the last token must leave every earlier token's output alone."""
    before = _output(f"{name}(x)", lambda: layer(x), shape)
    changed = x.clone()
    changed[:, -1] = changed[:, -1] * -3.0 + 1.0
    after = _output(f"{name}(x)", lambda: layer(changed), shape)
    moved = [i for i in range(x.shape[1] - 1) if not _close(before[:, i], after[:, i])]
    if moved:
        raise _fail(
            f"Changing only the last token changed the output of token {moved[0]}: that "
            f"token can see the future. Block every key after the query by filling its "
            f"score with -inf before the softmax (a 0 is not enough: exp(0) = 1)."
        )


def _check_against(
    out: Tensor,
    expected: Tensor,
    mistakes: dict[str, Tensor],
    what: str,
    layer: Callable[[Tensor], object],
    x: Tensor,
) -> None:
    """Your output must equal the package's; if not, say why as precisely as possible.

    A known mistake that reproduces your output is named first; failing that,
    a leak from the future is reported as one; failing that, the difference.
    """
    if not _close(out, expected):
        named = _named_mistake(out, mistakes, what)
        if named is not None:
            raise _fail(named)
    _check_causality(layer, x, tuple(out.shape), "your layer")
    if not _close(out, expected):
        raise _fail(_diagnose(out, expected, mistakes, what))


# --- Chapter 5: the causal mask and causal attention -------------------------


@_keeps_random_state
def check_causal_mask(make_mask: Callable[[int], Tensor]) -> Report:
    """Check a function ``make_mask(num_tokens)`` that builds a causal mask.

    The mask follows the package's convention (:func:`attention.causal_mask`):
    a (T, T) boolean tensor, row i for query i and column j for key j,
    ``True`` where query i may **not** look at key j.

    Raises:
        ExerciseError: with what is wrong, in plain words.
    """
    report = Report("Causal mask")
    for t in range(1, 9):
        mask = _output(f"make_mask({t})", partial(make_mask, t), (t, t))
        if mask.dtype != torch.bool:
            raise _fail(
                f"make_mask({t}) has dtype {mask.dtype}; the package's masks are boolean "
                f"(True where a query may not look), so that masked_fill can use them. "
                f"Build it with dtype=torch.bool or end with .bool()."
            )
    report.passed.append("returns a (T, T) tensor of booleans for every T from 1 to 8")
    for t in range(2, 9):
        if torch.equal(make_mask(t), ~causal_mask(t)):  # exact: booleans
            raise _fail(
                f"make_mask({t}) is True exactly where a query MAY look: the opposite "
                f"convention (F.scaled_dot_product_attention's). Here True means blocked; "
                f"invert it with ~ or build it with triu(..., diagonal=1)."
            )
    for t in range(1, 9):
        mask = make_mask(t)
        for i in range(t):
            if mask[i, i]:
                raise _fail(
                    f"make_mask({t}) blocks token {i} from itself. The diagonal must be "
                    f"False: a token always sees itself, or the first token would see nothing."
                )
            if mask[i, :i].any():
                j = int(mask[i, :i].nonzero()[0])
                raise _fail(
                    f"make_mask({t}) blocks query {i} from key {j}, which comes before it. "
                    f"Only keys after the query are blocked (above the diagonal)."
                )
    report.passed.append("lets every token see itself and every token before it")
    for t in range(2, 9):
        mask = make_mask(t)
        for i in range(t - 1):
            if not mask[i, i + 1 :].all():
                j = i + 1 + int((~mask[i, i + 1 :]).nonzero()[0])
                raise _fail(
                    f"make_mask({t}) lets query {i} see key {j}, which comes after it. "
                    f"Everything above the diagonal must be True."
                )
    report.passed.append("blocks every token after the query")
    return report


@_keeps_random_state
def check_causal_attention(layer_class: Callable[..., nn.Module]) -> Report:
    """Check a class written like :class:`attention.CausalAttention`.

    It is built as ``layer_class(d_in, d_out, context_length, dropout)``, must
    keep its projections as ``nn.Linear`` attributes ``W_query``, ``W_key``
    and ``W_value``, and map a batch (B, T, d_in) to context vectors
    (B, T, d_out). It gets the weights of a seeded ``CausalAttention`` and
    must then give its outputs.

    Raises:
        ExerciseError: with what is wrong, in plain words.
    """
    report = Report("Causal attention")
    d_in, d_out, context_length = 3, 2, 6
    args = f"({d_in}, {d_out}, context_length={context_length}, dropout=0.0)"
    built = _call(
        f"{_name(layer_class)}{args}", lambda: layer_class(d_in, d_out, context_length, 0.0)
    )
    if not isinstance(built, nn.Module):
        raise _fail(f"{_name(layer_class)}{args} is a {type(built).__name__}, not an nn.Module.")
    yours = built.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        reference = CausalAttention(d_in, d_out, context_length, 0.0).eval()
    for name in ("W_query", "W_key", "W_value"):
        mine = _linear(getattr(yours, name, None), name, d_in, d_out, "your layer")
        _copy_linear(getattr(reference, name), mine)
    report.passed.append("builds from CausalAttention's arguments, with W_query, W_key, W_value")

    x = torch.stack((toy_inputs(), toy_inputs().flip(0)))  # (B, T, d_in) = (2, 6, 3)
    with torch.no_grad():
        out = _output("your layer on a (2, 6, 3) batch", lambda: yours(x), (2, 6, d_out))
        report.passed.append("maps a (B, T, d_in) batch to (B, T, d_out)")
        expected = reference(x)
        q, k, v = reference.W_query(x), reference.W_key(x), reference.W_value(x)
        scale = 1 / math.sqrt(d_out)
        mistakes = {
            "attention gives without the 1/sqrt(d_k) scaling of the scores": _attend(
                q, k, v, scale=1.0
            ),
            "a softmax over the queries (dim=-2) gives: normalise each row, over the keys": _attend(
                q, k, v, scale=scale, dim=-2
            ),
            "a softmax over all keys followed by zeroing the future gives: the "
            "rows no longer sum to 1; mask with -inf before the softmax": (
                _attend_zeroed_after_softmax(q, k, v, scale=scale)
            ),
            "filling the blocked scores with 0 gives: exp(0) = 1, so the future "
            "still gets weight; fill them with -inf": _attend(q, k, v, scale=scale, fill=0.0),
        }
        _check_against(out, expected, mistakes, "Your layer's output", yours, x)
        report.passed.append("no token's output depends on a later token")
        report.passed.append("gives the package's context vectors, to float32 rounding")
        short = _output(
            "your layer on 3 tokens (fewer than context_length)",
            lambda: yours(x[:, :3]),
            (2, 3, d_out),
        )
        if not _close(short, expected[:, :3]):
            raise _fail(
                "On 3 tokens your layer's output differs from the first 3 outputs on 6: "
                "cut the mask to the tokens present, mask[:T, :T]."
            )
        report.passed.append("works on sequences shorter than context_length")
    return report


# --- Chapter 8: multi-head attention -----------------------------------------


@_keeps_random_state
def check_multihead_attention(layer_class: Callable[..., nn.Module]) -> Report:
    """Check a class written like :class:`attention.MultiHeadAttention`.

    It is built as ``layer_class(d_in, d_out, context_length, dropout,
    num_heads)``, must keep ``nn.Linear`` attributes ``W_query``, ``W_key``,
    ``W_value`` (d_in to d_out, all heads side by side) and ``out_proj``
    (d_out to d_out), and map (B, T, d_in) to (B, T, d_out).

    Raises:
        ExerciseError: with what is wrong, in plain words.
    """
    report = Report("Multi-head attention")
    d_in, d_out, context_length, heads = 3, 4, 6, 2
    args = f"({d_in}, {d_out}, context_length={context_length}, dropout=0.0, num_heads={heads})"
    built = _call(
        f"{_name(layer_class)}{args}", lambda: layer_class(d_in, d_out, context_length, 0.0, heads)
    )
    if not isinstance(built, nn.Module):
        raise _fail(f"{_name(layer_class)}{args} is a {type(built).__name__}, not an nn.Module.")
    yours = built.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        reference = MultiHeadAttention(d_in, d_out, context_length, 0.0, heads).eval()
    for name in ("W_query", "W_key", "W_value"):
        _copy_linear(
            getattr(reference, name),
            _linear(getattr(yours, name, None), name, d_in, d_out, "your layer"),
        )
    _copy_linear(
        reference.out_proj,
        _linear(getattr(yours, "out_proj", None), "out_proj", d_out, d_out, "your layer"),
    )
    report.passed.append("builds from MultiHeadAttention's arguments, with its four projections")

    x = torch.stack((toy_inputs(), toy_inputs().flip(0)))  # (B, T, d_in) = (2, 6, 3)
    with torch.no_grad():
        out = _output("your layer on a (2, 6, 3) batch", lambda: yours(x), (2, 6, d_out))
        report.passed.append("maps a (B, T, d_in) batch to (B, T, d_out)")
        expected = reference(x)
        mistakes = _multihead_mistakes(reference, x)
        _check_against(out, expected, mistakes, "Your layer's output", yours, x)
        report.passed.append("no token's output depends on a later token")
        report.passed.append("gives the package's outputs, to float32 rounding")
    return report


def _multihead_mistakes(ref: MultiHeadAttention, x: Tensor) -> dict[str, Tensor]:
    """What the usual slips in a multi-head forward produce, for :func:`_diagnose`."""
    b, t, _ = x.shape
    h, d = ref.num_heads, ref.head_dim

    def split(y: Tensor) -> Tensor:  # (B, T, C) -> (B, H, T, D)
        return y.view(b, t, h, d).transpose(1, 2)

    def split_wrong(y: Tensor) -> Tensor:  # a view straight to (B, H, T, D), no transpose
        return y.view(b, h, t, d)

    def merge(c: Tensor) -> Tensor:  # (B, H, T, D) -> (B, T, C)
        return c.transpose(1, 2).reshape(b, t, h * d)

    q, k, v = ref.W_query(x), ref.W_key(x), ref.W_value(x)
    right = _attend(split(q), split(k), split(v), scale=1 / math.sqrt(d))
    return {
        "dividing the scores by sqrt(d_out) instead of sqrt(head_dim) gives: each head "
        "scales by the width of one head": ref.out_proj(
            merge(_attend(split(q), split(k), split(v), scale=1 / math.sqrt(h * d)))
        ),
        "leaving out the output projection gives: pass the merged heads through out_proj": merge(
            right
        ),
        "viewing (B, T, C) straight as (B, H, T, D) gives: view as (B, T, H, D), then "
        "transpose(1, 2), so that each head gets its own slice of every token": ref.out_proj(
            split_wrong(
                _attend(split_wrong(q), split_wrong(k), split_wrong(v), scale=1 / math.sqrt(d))
            ).reshape(b, t, h * d)
        ),
        "merging the heads without transposing back gives: transpose(1, 2) before the "
        "view to (B, T, C)": ref.out_proj(right.reshape(b, t, h * d)),
    }


# --- Chapter 13: the KV cache and the flash update ---------------------------


@_keeps_random_state
def check_kv_cache(cache_class: Callable[[], object]) -> Report:
    """Check a class written like :class:`attention.kv_cache.LayerKV`.

    ``cache_class()`` makes an empty cache; ``cache.length`` is the number of
    tokens it holds; ``cache.extend(keys, values)`` appends new keys and
    values of shape (B, H, T, D) and returns all of them, (B, H, S + T, D).
    The checker runs :func:`attention.kv_cache.cached_attention` with your
    cache, a few tokens at a time, and compares with attention over the whole
    sequence at once.

    Raises:
        ExerciseError: with what is wrong, in plain words.
    """
    from attention.kv_cache import cached_attention

    report = Report("KV cache")
    cache = _call(f"{_name(cache_class)}()", cache_class)
    kv = cast("LayerKV", cache)  # your class, used where the package uses its LayerKV
    length = _call("the new cache's length", lambda: kv.length)
    if length != 0:
        raise _fail(f"A new cache has length {length!r}; it holds no tokens yet, so 0.")
    report.passed.append("a new cache holds 0 tokens")

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        att = MultiHeadAttention(4, 4, 8, 0.0, 2).eval()
        x = torch.randn(2, 7, 4)  # (B, T, C)
        old, new = torch.randn(2, 2, 3, 2), torch.randn(2, 2, 1, 2)  # (B, H, T, D)
    for step, (keys, so_far) in enumerate(((old, old), (new, torch.cat((old, new), dim=2)))):
        where = "an empty cache" if step == 0 else "a cache of 3 tokens"
        what = f"extend on {where}, adding {keys.shape[2]}"
        try:
            pair = _call(what, partial(kv.extend, keys, keys * 2.0))
        except ExerciseError as exc:
            hint = "Join the old and new along the token dimension, dim 2 of (B, H, T, D)."
            raise _fail(f"{exc} {hint}") from exc
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise _fail(f"{what} returned {type(pair).__name__}; expected (keys, values).")
        for name, got, want in (("keys", pair[0], so_far), ("values", pair[1], so_far * 2.0)):
            if not isinstance(got, Tensor) or tuple(got.shape) != tuple(want.shape):
                found = tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__
                raise _fail(
                    f"{what} returned {name} of shape {found}; expected {tuple(want.shape)}: "
                    f"every {name[:-1]} so far, old then new, joined along the token "
                    f"dimension (dim 2 of (B, H, T, D))."
                )
            if not torch.equal(got, want):  # exact: joining copies the tensors unchanged
                raise _fail(
                    f"{what} returned the wrong {name}: they must be the old ones followed "
                    f"by the new ones, unchanged."
                )
    report.passed.append("extend returns every key and value so far, old then new")
    cache = _call(f"{_name(cache_class)}()", cache_class)
    kv = cast("LayerKV", cache)
    steps = [(0, 3), (3, 4), (4, 5), (5, 7)]  # a prompt of 3, then 1, 1 and 2 new tokens
    with torch.no_grad():
        full = att(x)  # (B, T, C)
        for start, stop in steps:
            what = f"cached_attention with your cache after {start} tokens, adding {stop - start}"
            out = _output(
                what,
                partial(cached_attention, att, x[:, start:stop], kv),
                (2, stop - start, 4),
            )
            held = kv.length
            if held != stop:
                raise _fail(
                    f"After {stop} tokens your cache's length is {held!r}; it must count "
                    f"every token stored so far."
                )
            if not _close(out, full[:, start:stop]):
                raise _fail(
                    f"With your cache, the outputs for tokens {start} to {stop - 1} differ "
                    f"from attention over the whole sequence. extend must append the new "
                    f"keys and values after the old ones, along the token dimension (dim 2 "
                    f"of (B, H, T, D)), and return all of them, old and new."
                )
    report.passed.append("counts the tokens it holds as they arrive")
    report.passed.append("gives the same outputs as attention over the whole sequence")
    return report


@_keeps_random_state
def check_flash_update(
    update: Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor]],
) -> Report:
    """Check ``update(m, l, a, scores, values)``, one block of the online softmax.

    For each query (row) the running state is the largest score so far ``m``
    (T_q, 1), the sum ``l = sum exp(s_j - m)`` (T_q, 1) and the unnormalised
    output ``a = sum exp(s_j - m) v_j`` (T_q, D); they start at -inf, 0 and
    0. ``update`` takes a block of scores (T_q, b) and its values (b, D) and
    returns the new ``(m, l, a)``. After the last block, ``a / l`` must be
    ``softmax(scores) @ values``, whatever the block size, without the whole
    row of scores ever being in memory.

    Raises:
        ExerciseError: with what is wrong, in plain words.
    """
    report = Report("Online softmax, one block at a time")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        scores = torch.randn(4, 12)  # (T_q, T_k)
        values = torch.randn(12, 3)  # (T_k, D)
    scores[:, 8:] += 4.0  # the largest scores come last, so the maximum grows
    expected = torch.softmax(scores, dim=-1) @ values  # (T_q, D)

    def run(s: Tensor, block: int) -> Tensor:
        m = torch.full((s.shape[0], 1), -torch.inf)  # (T_q, 1)
        ell = torch.zeros(s.shape[0], 1)  # (T_q, 1)
        a = torch.zeros(s.shape[0], values.shape[1])  # (T_q, D)
        for j in range(0, s.shape[1], block):
            what = f"update on the block of keys {j} to {min(j + block, s.shape[1]) - 1}"
            step = partial(update, m, ell, a, s[:, j : j + block], values[j : j + block])
            state = _call(what, step)
            if not (isinstance(state, tuple) and len(state) == 3):
                raise _fail(
                    f"{what} returned {type(state).__name__}; expected the tuple (m, l, a)."
                )
            for name, got, shape in zip("mla", state, ((4, 1), (4, 1), (4, 3)), strict=True):
                if not isinstance(got, Tensor) or tuple(got.shape) != shape:
                    found = tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__
                    raise _fail(f"{what} returned {name} of shape {found}; expected {shape}.")
            m, ell, a = state
        out: Tensor = a / ell
        return out

    one = run(scores, 12)
    if not _close(one, expected):
        raise _fail(
            "With all 12 keys in one block, a / l is not softmax(scores) @ values. Start "
            "from the definitions: m is the row's largest score, l = sum(exp(s - m)), "
            "a = exp(s - m) @ values."
        )
    report.passed.append("one block: a / l is softmax(scores) @ values")
    for block in (4, 3, 1):
        got = run(scores, block)
        if not _close(got, expected):
            raise _fail(
                f"In blocks of {block} keys the result is wrong, though one block is right. "
                f"When a block raises the maximum from m to m', the old l and a were sums "
                f"of exp(s - m): multiply both by exp(m - m') before adding the new block's "
                f"terms, exp(s - m')."
            )
    report.passed.append("blocks of 4, 3 and 1 keys give the same result as one block")
    big = scores + 1000.0  # (T_q, T_k): the same weights, up to float32's rounding of s + 1000
    if not _close(run(big, 4), torch.softmax(big, dim=-1) @ values):
        raise _fail(
            "With scores near 1000 the result is wrong (exp(1000) overflows float32). "
            "Subtract the running maximum before every exp, as the stable softmax does."
        )
    report.passed.append("stays exact with scores near 1000: no exp overflows")
    return report


# --- Chapter 10: layer normalisation ------------------------------------------


@_keeps_random_state
def check_layer_norm(layer_class: Callable[..., nn.Module]) -> Report:
    """Check a class written like :class:`attention.gpt.LayerNorm`.

    Built as ``layer_class(emb_dim)``, it keeps learned parameters ``scale``
    and ``shift`` of shape (emb_dim,) and normalises each token's vector over
    the last dimension: ``scale * (x - mean) / sqrt(var + eps) + shift`` with
    eps = 1e-5 and the biased variance, as ``nn.LayerNorm`` does.

    Raises:
        ExerciseError: with what is wrong, in plain words.
    """
    report = Report("Layer normalisation")
    width = 5
    built = _call(f"{_name(layer_class)}({width})", lambda: layer_class(width))
    if not isinstance(built, nn.Module):
        raise _fail(f"{_name(layer_class)}({width}) is a {type(built).__name__}, not an nn.Module.")
    yours = built
    params = {}
    for name, start in (("scale", 1.0), ("shift", 0.0)):
        p = getattr(yours, name, None)
        if not isinstance(p, nn.Parameter) or tuple(p.shape) != (width,):
            raise _fail(
                f"Your layer needs a learned nn.Parameter called {name} of shape ({width},); "
                f"found {type(p).__name__}{'' if not isinstance(p, Tensor) else tuple(p.shape)}."
            )
        if not torch.all(p == start):  # exact: a parameter's initial value is set, not computed
            raise _fail(
                f"{name} must start at {start} for every feature, so a new layer changes nothing."
            )
        params[name] = p
    report.passed.append("has scale (starting at 1) and shift (starting at 0) of shape (emb_dim,)")

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        x = torch.randn(2, 3, width) * 3.0 + 1.0  # (B, T, C)
        x[0, 0] = 1e-3 * torch.randn(width)  # a nearly constant token: here eps matters
        gain, offset = torch.randn(width), torch.randn(width)
    with torch.no_grad():
        for step, (g, b) in enumerate(((torch.ones(width), torch.zeros(width)), (gain, offset))):
            params["scale"].copy_(g)
            params["shift"].copy_(b)
            out = _output(f"your layer on a (2, 3, {width}) batch", lambda: yours(x), (2, 3, width))
            expected = torch.nn.functional.layer_norm(x, (width,), g, b, eps=1e-5)
            if not _close(out, expected):
                what = (
                    "A new layer's output"
                    if step == 0
                    else "With learned scale and shift, your output"
                )
                raise _fail(_diagnose(out, expected, _layer_norm_mistakes(x, g, b), what))
            report.passed.append(
                "a new layer (scale 1, shift 0) normalises each token as nn.LayerNorm does"
                if step == 0
                else "equals nn.LayerNorm with the same scale and shift"
            )
    return report


def _layer_norm_mistakes(x: Tensor, gain: Tensor, offset: Tensor) -> dict[str, Tensor]:
    """What the usual slips in a layer norm produce, for :func:`_diagnose`."""
    mu = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, unbiased=False)
    over_tokens = (x - x.mean(dim=-2, keepdim=True)) / torch.sqrt(
        x.var(dim=-2, keepdim=True, unbiased=False) + 1e-5
    )
    return {
        "the unbiased variance gives (dividing by C - 1): use var(dim=-1, "
        "unbiased=False), which divides by C": gain
        * (x - mu)
        / torch.sqrt(x.var(dim=-1, keepdim=True) + 1e-5)
        + offset,
        "adding eps after the square root gives: add it to the variance, sqrt(var + eps)": gain
        * (x - mu)
        / (var.sqrt() + 1e-5)
        + offset,
        "normalising over the tokens (dim=-2) gives: take the mean and variance "
        "of each token's own features, over the last dimension": gain * over_tokens + offset,
        "forgetting scale and shift gives: return scale * normalised + shift": (x - mu)
        / torch.sqrt(var + 1e-5),
    }


def _name(obj: object) -> str:
    return getattr(obj, "__name__", type(obj).__name__)


# --- Chapter 3: softmax and self-attention without weights --------------------


@_keeps_random_state
def check_softmax(softmax: Callable[[Tensor], Tensor]) -> Report:
    """Check ``softmax(scores)``, which turns a 1-D tensor of scores into weights.

    The weights must be positive, sum to 1 and equal ``torch.softmax``; a
    score of ``-inf`` gets weight 0, and scores in the thousands must not
    overflow (the stable softmax of chapter 3).

    Raises:
        ExerciseError: with what is wrong, in plain words.
    """
    report = Report("Softmax")
    scores = torch.tensor([0.9544, 1.4950, 1.4754, 0.8434, 0.7070, 1.0865])  # chapter 3's
    out = _output("softmax on 6 scores", partial(softmax, scores), (6,))
    expected = torch.softmax(scores, dim=0)
    if not _close(out, expected):
        mistakes = {
            "dividing the scores by their sum gives: take exp of each score first": scores
            / scores.sum(),
        }
        raise _fail(_diagnose(out, expected, mistakes, "Your weights"))
    report.passed.append("equals torch.softmax on chapter 3's scores, and sums to 1")
    blocked = torch.tensor([2.0, -torch.inf, 1.0])
    out = _output("softmax on [2, -inf, 1]", partial(softmax, blocked), (3,))
    if not (_close(out, torch.softmax(blocked, dim=0)) and out[1] == 0):  # exact: exp(-inf) = 0
        raise _fail(
            f"softmax([2, -inf, 1]) gave {out.tolist()}; a score of -inf must get weight "
            f"exactly 0, and the other two share all of the weight."
        )
    report.passed.append("gives a score of -inf the weight 0")
    large = torch.tensor([1000.0, 999.0, 998.0])
    out = _output("softmax on [1000, 999, 998]", partial(softmax, large), (3,))
    if not _close(out, torch.softmax(large, dim=0)):
        raise _fail(
            f"softmax([1000, 999, 998]) gave {out.tolist()}: exp(1000) overflows float32 to "
            f"inf. Subtract the largest score from every score before exp; the weights do "
            f"not change, and no exponent is above 0."
        )
    report.passed.append("does not overflow on scores near 1000")
    return report


@_keeps_random_state
def check_simple_self_attention(attend: Callable[[Tensor], Tensor]) -> Report:
    """Check ``attend(inputs)``, chapter 3's self-attention without weights.

    ``inputs`` is (T, d); every token's scores are its dot products with every
    token, a softmax along each row turns them into weights, and the output
    (T, d) holds each token's weighted sum of all the inputs.

    Raises:
        ExerciseError: with what is wrong, in plain words.
    """
    report = Report("Self-attention without weights")
    x = toy_inputs()  # (T, d) = (6, 3)
    out = _output("attend on the six tokens (6, 3)", partial(attend, x), (6, 3))
    report.passed.append("maps (T, d) inputs to (T, d) context vectors")
    scores = x @ x.T  # (T, T)
    expected = torch.softmax(scores, dim=-1) @ x
    if not _close(out, expected):
        mistakes = {
            "a softmax down each column (dim=0) gives: each row of weights, one per "
            "query, must sum to 1, so use dim=-1": torch.softmax(scores, dim=0) @ x,
            "weights without a softmax give: turn the scores into weights first": scores @ x,
            "dividing the scores by their row sums gives: use the softmax": (
                scores / scores.sum(dim=-1, keepdim=True)
            )
            @ x,
        }
        raise _fail(_diagnose(out, expected, mistakes, "Your context vectors"))
    report.passed.append("equals softmax(inputs @ inputs.T) @ inputs")
    return report


# --- Chapter 4: trainable weights ---------------------------------------------


@_keeps_random_state
def check_self_attention(layer_class: Callable[..., nn.Module]) -> Report:
    """Check a class written like :class:`attention.SelfAttentionV2`.

    Built as ``layer_class(d_in, d_out)``, it keeps ``nn.Linear`` attributes
    ``W_query``, ``W_key`` and ``W_value`` and maps (T, d_in) to (T, d_out):
    scaled dot-product attention over all tokens, no mask.

    Raises:
        ExerciseError: with what is wrong, in plain words.
    """
    report = Report("Self-attention with trainable weights")
    d_in, d_out = 3, 2
    built = _call(f"{_name(layer_class)}({d_in}, {d_out})", partial(layer_class, d_in, d_out))
    if not isinstance(built, nn.Module):
        raise _fail(
            f"{_name(layer_class)}({d_in}, {d_out}) is a {type(built).__name__}, not an nn.Module."
        )
    yours = built
    torch.manual_seed(789)
    reference = {n: nn.Linear(d_in, d_out, bias=False) for n in ("W_query", "W_key", "W_value")}
    for name in ("W_query", "W_key", "W_value"):
        _copy_linear(
            reference[name], _linear(getattr(yours, name, None), name, d_in, d_out, "your layer")
        )
    report.passed.append("builds from (d_in, d_out), with W_query, W_key and W_value")
    x = toy_inputs()  # (T, d_in) = (6, 3)
    with torch.no_grad():
        out = _output("your layer on the six tokens (6, 3)", partial(yours, x), (6, d_out))
        report.passed.append("maps (T, d_in) to (T, d_out)")
        q, k, v = reference["W_query"](x), reference["W_key"](x), reference["W_value"](x)
        scores = q @ k.T  # (T, T)
        expected = torch.softmax(scores / math.sqrt(d_out), dim=-1) @ v
        if not _close(out, expected):
            mistakes = {
                "attention gives without the 1/sqrt(d_k) scaling of the scores": torch.softmax(
                    scores, dim=-1
                )
                @ v,
                "dividing by d_k instead of its square root gives": torch.softmax(
                    scores / d_out, dim=-1
                )
                @ v,
                "dividing by sqrt(d_in) instead of sqrt(d_k) gives: d_k is the width of "
                "the keys, d_out": torch.softmax(scores / math.sqrt(d_in), dim=-1) @ v,
                "a softmax down each column (dim=0) gives: normalise each query's row": (
                    torch.softmax(scores / math.sqrt(d_out), dim=0) @ v
                ),
                "weighting the inputs instead of the values gives: the output is the "
                "weighted sum of W_value(x)": torch.softmax(scores / math.sqrt(d_out), dim=-1) @ x,
            }
            raise _fail(_diagnose(out, expected, mistakes, "Your context vectors"))
        report.passed.append("gives softmax(Q K^T / sqrt(d_k)) V with the same weights")
    return report


# --- Chapter 6: dropout -------------------------------------------------------


@_keeps_random_state
def check_inverted_dropout(dropout: Callable[[Tensor, float], Tensor]) -> Report:
    """Check ``dropout(x, p)``, inverted dropout as applied in training.

    Each entry must be zeroed with probability ``p`` and every other entry
    divided by ``1 - p``, so that the expected value of each entry stays
    ``x``; ``p = 0`` returns ``x`` unchanged. The draws come from the global
    generator (seeded here), so the check gives the same verdict every time.

    Raises:
        ExerciseError: with what is wrong, in plain words.
    """
    report = Report("Inverted dropout")
    torch.manual_seed(0)
    x = torch.rand(400, 500) + 0.5  # (200,000 entries), none of them 0
    same = _output("dropout(x, 0.0)", partial(dropout, x, 0.0), tuple(x.shape))
    if not _close(same, x):
        hint = " It dropped every entry: keep an entry when rand >= p." if not same.any() else ""
        raise _fail(
            f"dropout(x, 0.0) changed x; with p = 0 nothing is dropped and nothing rescaled.{hint}"
        )
    report.passed.append("p = 0 leaves x as it is")
    for p in (0.1, 0.5):
        out = _output(f"dropout(x, {p})", partial(dropout, x, p), tuple(x.shape))
        dropped = (out == 0).float().mean().item()  # exact: a dropped entry is set to 0
        # 200,000 draws: the share dropped lies within 0.01 of p but for odds below 1e-9.
        if abs(dropped - p) > 0.01:
            hint = (
                " It drops with probability 1 - p: keep an entry when rand >= p."
                if abs(dropped - (1 - p)) < 0.01
                else ""
            )
            raise _fail(
                f"dropout(x, {p}) zeroed {dropped:.3f} of the entries; expected about {p}.{hint}"
            )
        kept = out != 0
        ratio = out[kept] / x[kept]
        if not torch.allclose(ratio, torch.full_like(ratio, 1 / (1 - p)), rtol=1e-5, atol=0.0):
            if torch.allclose(ratio, torch.ones_like(ratio), rtol=1e-5, atol=0.0):
                why = "they kept their value: divide them by 1 - p"
            elif torch.allclose(ratio, torch.full_like(ratio, 1 - p), rtol=1e-5, atol=0.0):
                why = "they were multiplied by 1 - p: divide by it instead"
            else:
                why = f"they were multiplied by {ratio.mean().item():.3f}"
            raise _fail(
                f"With p = {p}, the entries dropout kept should be x / (1 - p) = "
                f"{1 / (1 - p):.3f} x; {why}. Then every entry keeps its expected value."
            )
    report.passed.append("drops a share p of the entries, for p = 0.1 and 0.5")
    report.passed.append("divides every kept entry by 1 - p")
    return report


# --- Chapter 7: batches --------------------------------------------------------


@_keeps_random_state
def check_batched_scores(scores: Callable[[Tensor, Tensor], Tensor]) -> Report:
    """Check ``scores(queries, keys)`` for a batch: (B, T, D) and (B, T, D) to (B, T, T).

    Entry ``[b, i, j]`` is the dot product of query i and key j of sequence
    b, and no sequence's scores use another sequence's tokens.

    Raises:
        ExerciseError: with what is wrong, in plain words.
    """
    report = Report("Attention scores for a batch")
    torch.manual_seed(0)
    q, k = torch.randn(2, 5, 4), torch.randn(2, 5, 4)  # (B, T, D)
    out = _output("scores on (2, 5, 4) queries and keys", partial(scores, q, k), (2, 5, 5))
    report.passed.append("maps (B, T, D) queries and keys to (B, T, T) scores")
    expected = torch.stack([q[b] @ k[b].T for b in range(2)])  # one sequence at a time
    if not _close(out, expected):
        mistakes = {
            "keys @ queries gives: queries first, so that row i belongs to query i": (
                k @ q.transpose(1, 2)
            ),
        }
        raise _fail(_diagnose(out, expected, mistakes, "Your scores"))
    report.passed.append("equals queries[b] @ keys[b].T for every sequence b")
    return report


# --- Chapter 9: from context vectors to logits ---------------------------------


@_keeps_random_state
def check_next_token_probabilities(next_probs: Callable[[Tensor], Tensor]) -> Report:
    """Check ``next_probs(logits)``: (B, T, V) logits to (B, V) next-token probabilities.

    The prediction for the token after a sequence is the softmax of the
    logits at its last position.

    Raises:
        ExerciseError: with what is wrong, in plain words.
    """
    report = Report("Next-token probabilities")
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 7) * 3.0  # (B, T, V)
    out = _output("next_probs on (2, 4, 7) logits", partial(next_probs, logits), (2, 7))
    expected = torch.softmax(logits[:, -1], dim=-1)
    if not _close(out, expected):
        mistakes = {
            "the first position's logits give: the prediction after the whole "
            "sequence comes from the last position, logits[:, -1]": torch.softmax(
                logits[:, 0], dim=-1
            ),
            "the raw logits give: a softmax over the vocabulary turns them into "
            "probabilities": logits[:, -1],
            "averaging over the positions gives: use the last position only": torch.softmax(
                logits.mean(dim=1), dim=-1
            ),
        }
        raise _fail(_diagnose(out, expected, mistakes, "Your probabilities"))
    report.passed.append("is the softmax of the last position's logits, summing to 1 per sequence")
    return report


# --- Chapter 11: the transformer block -----------------------------------------


@_keeps_random_state
def check_transformer_block(block_class: Callable[..., nn.Module]) -> Report:
    """Check a class written like :class:`attention.gpt.TransformerBlock`.

    Built as ``block_class(cfg)`` from a small :class:`attention.gpt.GPTConfig`
    (dropout 0), it must hold the book's sub-layers under the book's names
    (``att``, ``ff``, ``norm1``, ``norm2``), so that it can load the weights
    of the package's block, and compute the pre-norm block
    ``x + att(norm1(x))``, then ``x + ff(norm2(x))``.

    Raises:
        ExerciseError: with what is wrong, in plain words.
    """
    from attention.gpt import GPTConfig, TransformerBlock

    report = Report("Transformer block")
    cfg = GPTConfig(
        vocab_size=16, context_length=6, emb_dim=8, n_heads=2, n_layers=1, drop_rate=0.0
    )
    torch.manual_seed(0)
    reference = TransformerBlock(cfg).eval()
    with torch.no_grad():  # learned-looking norms, so that a missing norm shows
        for norm in (reference.norm1, reference.norm2):
            norm.scale.uniform_(0.5, 1.5)
            norm.shift.uniform_(-0.5, 0.5)
    built = _call(f"{_name(block_class)}(cfg)", partial(block_class, cfg))
    if not isinstance(built, nn.Module):
        raise _fail(f"{_name(block_class)}(cfg) is a {type(built).__name__}, not an nn.Module.")
    yours = built.eval()
    try:
        yours.load_state_dict(reference.state_dict())
    except RuntimeError as exc:
        raise _fail(
            "Your block could not load the package's weights; name its parts as the "
            f"book does (att, ff, norm1, norm2). PyTorch says: {exc}"
        ) from exc
    report.passed.append("holds att, ff, norm1 and norm2, and loads the package's weights")
    x = torch.randn(2, 6, 8)  # (B, T, C)
    with torch.no_grad():
        out = _output("your block on a (2, 6, 8) batch", partial(yours, x), (2, 6, 8))
        expected = reference(x)
        if not _close(out, expected):
            r = reference
            after_att = x + r.att(r.norm1(x))
            post_norm_att = r.norm1(x + r.att(x))
            mistakes = {
                "a post-norm block gives (normalising after each shortcut, as the "
                "original transformer did): normalise the input of each sub-layer, "
                "x + att(norm1(x))": r.norm2(post_norm_att + r.ff(post_norm_att)),
                "a block without shortcuts gives: add each sub-layer's output to its input": r.ff(
                    r.norm2(r.att(r.norm1(x)))
                ),
                "a block whose shortcuts skip from the input of the block gives: the "
                "second shortcut starts from the output of the first": x + r.ff(r.norm2(after_att)),
                "using norm1 before both sub-layers gives: the feed-forward network has "
                "its own, norm2": after_att + r.ff(r.norm1(after_att)),
            }
            raise _fail(_diagnose(out, expected, mistakes, "Your block's output"))
        report.passed.append("computes x + att(norm1(x)), then x + ff(norm2(x))")
    return report


# --- Chapter 12: what a head does ------------------------------------------------


@_keeps_random_state
def check_previous_token_score(score: Callable[[Tensor], Tensor]) -> Report:
    """Check ``score(weights)``: (..., T, T) attention weights to (...) scores.

    The score is the average weight that each query from position 1 on puts
    on the token just before it, as
    :func:`attention.induction_scores.previous_token_score` computes it.

    Raises:
        ExerciseError: with what is wrong, in plain words.
    """
    from attention.induction_scores import previous_token_score

    report = Report("Previous-token score")
    back = torch.eye(5).roll(-1, dims=1).tril()  # (T, T): every query on the token before
    back[0, 0] = 1.0  # token 0 has no token before it: it looks at itself
    out = _output("score on a head that always looks one back", partial(score, back), ())
    if not _close(out, torch.tensor(1.0)):
        raise _fail(
            f"A head that always looks one token back should score 1; yours gives "
            f"{out.item():.3f}. Average w[t, t - 1] over the queries t = 1 .. T - 1 (the "
            f"diagonal just below the main one); token 0 has no previous token."
        )
    report.passed.append("scores 1 for a head that always looks one token back")
    torch.manual_seed(0)
    raw = torch.randn(2, 3, 5, 5).masked_fill(causal_mask(5), -torch.inf)
    weights = torch.softmax(raw, dim=-1)  # (N, H, T, T), causal
    out = _output("score on (2, 3, 5, 5) weights", partial(score, weights), (2, 3))
    expected = previous_token_score(weights)
    if not _close(out, expected):
        gap = (out - expected).abs().max().item()
        raise _fail(
            f"On a batch of 2 x 3 heads your scores differ from the package's by up to "
            f"{gap:.2e}; take the diagonal below the main one of the last two dimensions "
            f"(diagonal(offset=-1, dim1=-2, dim2=-1)) and average it, one score per matrix."
        )
    report.passed.append("equals the package's score on a batch of heads, one per matrix")
    return report


# --- Chapters 1 and 2: additive attention and the soft lookup ---------------------


@_keeps_random_state
def check_soft_lookup(lookup: Callable[[Tensor, Tensor, Tensor, float], Tensor]) -> Report:
    """Check ``lookup(query, keys, values, temperature)``, chapter 2's soft lookup.

    ``query`` is (d_k,), ``keys`` (N, d_k), ``values`` (N, d_v); the scores
    are minus the squared distances from the query to the keys, divided by the
    temperature, a softmax turns them into weights, and the result (d_v,) is
    the weighted sum of the values, as :func:`attention.lookup.soft_lookup`.

    Raises:
        ExerciseError: with what is wrong, in plain words.
    """
    report = Report("Soft lookup")
    torch.manual_seed(0)
    keys, values = torch.rand(8, 3), torch.rand(8, 2)  # (N, d_k), (N, d_v)
    query = torch.tensor([0.6, 0.2, 0.4])  # (d_k,)
    for temperature in (1.0, 0.1):
        what = f"lookup(query, keys, values, {temperature})"
        out = _output(what, partial(lookup, query, keys, values, temperature), (2,))
        distance = -((keys - query) ** 2).sum(dim=-1)  # (N,)
        expected = torch.softmax(distance / temperature, dim=-1) @ values
        if not _close(out, expected):
            mistakes = {
                "the dot product as the score gives: this lookup scores by minus the "
                "squared distance, largest for the key nearest the query": torch.softmax(
                    keys @ query / temperature, dim=-1
                )
                @ values,
                "plus the squared distance gives: a larger distance must mean a "
                "smaller score, so negate it": torch.softmax(-distance / temperature, dim=-1)
                @ values,
                "multiplying by the temperature gives: divide the scores by it": torch.softmax(
                    distance * temperature, dim=-1
                )
                @ values,
                "the value of the nearest key alone gives: that is the hard lookup; "
                "blend every value by its softmax weight": values[distance.argmax()],
            }
            raise _fail(
                _diagnose(out, expected, mistakes, f"At temperature {temperature} your value")
            )
    report.passed.append("blends the values by softmax(-distance / temperature), at 1 and 0.1")
    return report


@_keeps_random_state
def check_additive_attention(layer_class: Callable[..., nn.Module]) -> Report:
    """Check a class written like :class:`attention.rnn.AdditiveAttention`.

    Built as ``layer_class(query_size, key_size, attention_size)``, it keeps
    ``nn.Linear`` attributes ``W_s`` (query_size to A, with bias), ``W_h``
    (key_size to A, no bias) and ``v`` (A to 1, no bias); called on a query
    (B, query_size) and encoder states (B, S, key_size) it returns
    ``(context, weights)`` with ``e_j = v^T tanh(W_s s + W_h h_j)``, weights
    the softmax of the scores over the S positions, and the context their
    weighted sum of the states.

    Raises:
        ExerciseError: with what is wrong, in plain words.
    """
    from attention.rnn import AdditiveAttention

    report = Report("Additive attention")
    sizes = (4, 6, 5)  # query_size, key_size, attention_size
    torch.manual_seed(0)
    reference = AdditiveAttention(*sizes).eval()
    built = _call(f"{_name(layer_class)}(4, 6, 5)", partial(layer_class, *sizes))
    if not isinstance(built, nn.Module):
        raise _fail(f"{_name(layer_class)}(4, 6, 5) is a {type(built).__name__}, not an nn.Module.")
    yours = built.eval()
    for name, d_in, d_out in (("W_s", 4, 5), ("W_h", 6, 5), ("v", 5, 1)):
        mine = _linear(getattr(yours, name, None), name, d_in, d_out, "your layer")
        if (mine.bias is None) != (getattr(reference, name).bias is None):
            has = "has a" if name == "W_s" else "has no"
            raise _fail(
                f"In the book's formula {name} {has} bias: nn.Linear(..., bias={name == 'W_s'})."
            )
        _copy_linear(getattr(reference, name), mine)
    report.passed.append("builds from (query_size, key_size, attention_size), with W_s, W_h and v")
    query, keys = torch.randn(2, 4), torch.randn(2, 7, 6)  # (B, query_size), (B, S, key_size)
    with torch.no_grad():
        pair = _call(
            "your layer on a query (2, 4) and states (2, 7, 6)", partial(yours, query, keys)
        )
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise _fail(f"Your layer returned {type(pair).__name__}; expected (context, weights).")
        context, weights = pair
        for name, got, shape in (("context", context, (2, 6)), ("weights", weights, (2, 7))):
            if not isinstance(got, Tensor) or tuple(got.shape) != shape:
                found = tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__
                raise _fail(f"Your layer returned {name} of shape {found}; expected {shape}.")
        report.passed.append("returns a context (B, key_size) and weights (B, S)")
        want_context, want_weights = reference(query, keys)
        hidden = reference.W_s(query)[:, None, :] + reference.W_h(keys)  # (B, S, A)
        if not _close(weights, want_weights):
            mistakes = {
                "scores without the tanh give: e_j = v^T tanh(W_s s + W_h h_j)": torch.softmax(
                    reference.v(hidden).squeeze(-1), dim=-1
                ),
                "the scores without a softmax give: the weights must be positive and "
                "sum to 1 over the S positions": reference.v(torch.tanh(hidden)).squeeze(-1),
            }
            raise _fail(_diagnose(weights, want_weights, mistakes, "Your weights"))
        report.passed.append("weights: the softmax over the positions of v^T tanh(W_s s + W_h h_j)")
        if not _close(context, want_context):
            raise _fail(
                "Your weights are right but the context is not: it is the weighted sum of "
                "the encoder states themselves, sum_j a_j h_j, (B, 1, S) @ (B, S, key_size)."
            )
        report.passed.append("context: the weighted sum of the encoder states")
    return report


# --- Chapter 14: the delta rule -------------------------------------------------


@_keeps_random_state
def check_delta_rule_step(
    step: Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], Tensor],
) -> Report:
    """Check ``step(S, k, v, beta, alpha)``, one token of the gated delta rule.

    ``S`` is a head's state (D_v, D), values by keys; ``k`` (D,) and ``v``
    (D_v,) are the token's key and value; ``beta`` and ``alpha`` are 0-d
    tensors. ``step`` returns the new state
    ``alpha S (I - beta k k^T) + beta v k^T``: the memory fades by alpha, then
    what it returns for ``k`` moves towards ``v`` at rate beta. Run over a
    sequence, reading ``S q`` after each token, it must give what
    :func:`attention.linear_attention.delta_rule_recurrent` gives.

    Raises:
        ExerciseError: with what is wrong, in plain words.
    """
    from attention.linear_attention import delta_rule_recurrent

    report = Report("The gated delta rule, one token at a time")
    torch.manual_seed(0)
    tokens, d, d_v = 6, 4, 3
    q, k = torch.randn(tokens, d), F.normalize(torch.randn(tokens, d), dim=-1)  # (T, D) each
    v = torch.randn(tokens, d_v)  # (T, D_v)
    beta, alpha = torch.rand(tokens) * 0.8 + 0.1, torch.rand(tokens) * 0.4 + 0.5  # (T,) each
    state = torch.randn(d_v, d)  # (D_v, D): a memory that already holds something
    kt, vt, bt, at = k[0], v[0], beta[0], alpha[0]
    eye = torch.eye(d)
    expected = at * state @ (eye - bt * torch.outer(kt, kt)) + bt * torch.outer(vt, kt)
    what = "step on a state that already holds something"
    yours = _output(what, partial(step, state, kt, vt, bt, at), (d_v, d))
    if not _close(yours, expected):
        mistakes = {
            "a write that only adds, alpha S + beta v k^T, gives: read what S returns for k "
            "first, and write only the difference v - (alpha S) k": at * state
            + bt * torch.outer(vt, kt),
            "reading the old state before it fades gives: the read is (alpha S) k, the "
            "memory after the decay": at * state + bt * torch.outer(vt - state @ kt, kt),
            "leaving out beta gives: the correction is scaled by beta, the writing strength": at
            * state
            @ (eye - torch.outer(kt, kt))
            + torch.outer(vt, kt),
            "leaving out alpha gives: the whole state first fades by alpha": state
            @ (eye - bt * torch.outer(kt, kt))
            + bt * torch.outer(vt, kt),
        }
        raise _fail(_diagnose(yours, expected, mistakes, what))
    report.passed.append("one step from a full state: alpha S (I - beta k k^T) + beta v k^T")

    memory = torch.zeros(d_v, d)  # (D_v, D)
    outputs = []
    for t in range(tokens):
        memory = _output(
            f"step on token {t}",
            partial(step, memory, k[t], v[t], beta[t], alpha[t]),
            (d_v, d),
        )
        outputs.append(memory @ q[t])  # (D_v, D) @ (D,) -> (D_v,)
    package = delta_rule_recurrent(
        q[None, None], k[None, None], v[None, None], beta[None, None], alpha[None, None]
    )[0, 0]  # (T, D_v)
    if not _close(torch.stack(outputs), package):
        raise _fail(
            "Over a sequence of 6 tokens, starting from a zero state, S q after each step "
            "differs from attention.linear_attention.delta_rule_recurrent's outputs. Return "
            "the new state after each token."
        )
    report.passed.append("six tokens from a zero state: S q equals delta_rule_recurrent's output")
    k_unit, v_new = k[1], v[1]
    written = _output(
        "step with beta = 1 and alpha = 1",
        partial(step, state, k_unit, v_new, torch.tensor(1.0), torch.tensor(1.0)),
        (d_v, d),
    )
    if not _close(written @ k_unit, v_new):
        raise _fail(
            "With beta = 1 and alpha = 1, the new state must return exactly v for the unit "
            "key k: S k = v. The delta rule overwrites what the key held."
        )
    report.passed.append("beta = 1 overwrites: the new state returns v for k")
    return report
