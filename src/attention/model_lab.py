"""Chapter 12's trained model, exported for a forward pass in the browser.

:func:`export_weights` turns an :class:`attention.induction.AttentionOnlyTransformer`
into compact JSON: its sizes and every parameter as the base64 of its float32
bytes (little-endian), so the page reads exactly the numbers the package
holds; :func:`import_weights` builds the model back from that JSON.
:func:`lab_reference` is what the page computes for one sequence (logits,
every head's scores and weights, the previous-token and induction scores),
computed here by the package, and :func:`ov_circuit` is what one head moves:
the logits a source token adds through the head's value and output
projections. :func:`model_lab` puts it all in a widget of kind
``"model-lab"`` (drawn by ``attention/static/attention-model.js``), with
reference cases the browser tests hold the page to.

The page computes in float64 from the float32 weights; the package in
float32. The two agree to :data:`TOLERANCE` on logits, scores and weights.

Shape letters are those of :mod:`attention.induction`, with ``D`` the width
of one head (C / H).
"""

from __future__ import annotations

import base64
import html
import math
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from attention import _checks
from attention.induction import AttentionOnlyTransformer, InductionConfig, _tokens
from attention.induction_scores import induction_score, previous_token_score
from attention.multihead import MultiHeadAttention
from attention.widgets import JSON_DECIMALS, Widget

#: One symbol per token id: the reader types these. Letters first, then
#: digits, then two marks, 64 in all (the vocabulary of ``InductionConfig()``).
ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!?"

#: How closely the page's forward pass (float64 arithmetic on the exported
#: float32 weights) matches the package's (float32): absolute, on logits,
#: scores and weights.
TOLERANCE = 1e-4

#: The format tag of :func:`export_weights`.
FORMAT = "float32-le-base64"

_CONFIG_FIELDS = ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers")
_LAYER_TENSORS = ("W_query", "W_key", "W_value", "out_proj.weight", "out_proj.bias")


def _model(name: str, model: object) -> AttentionOnlyTransformer:
    if not isinstance(model, AttentionOnlyTransformer):
        raise TypeError(f"{name} must be an AttentionOnlyTransformer, got {type(model).__name__}")
    return model


def _layers(model: AttentionOnlyTransformer) -> list[MultiHeadAttention]:
    layers = [layer for layer in model.layers if isinstance(layer, MultiHeadAttention)]
    if len(layers) != len(model.layers):
        raise TypeError("model.layers must hold MultiHeadAttention layers only")
    return layers


def _named_tensors(model: AttentionOnlyTransformer) -> dict[str, Tensor]:
    """Every parameter the forward pass reads, by its export name."""
    out = {"tok_emb": model.tok_emb.weight, "pos_emb": model.pos_emb.weight}
    for n, layer in enumerate(_layers(model)):
        for proj in ("W_query", "W_key", "W_value"):
            linear = getattr(layer, proj)
            if linear.bias is not None:
                raise ValueError(f"model.layers[{n}].{proj} has a bias; the export has none")
            out[f"layers.{n}.{proj}"] = linear.weight  # (C, C): nn.Linear's (out, in)
        out[f"layers.{n}.out_proj.weight"] = layer.out_proj.weight  # (C, C)
        out[f"layers.{n}.out_proj.bias"] = layer.out_proj.bias  # (C,)
    out["out_head"] = model.out_head.weight  # (V, C)
    return out


def export_weights(model: AttentionOnlyTransformer) -> dict[str, Any]:
    """A trained model's sizes and parameters as compact JSON-ready data.

    Each tensor is stored as its shape and the base64 of its float32 values,
    little-endian, row-major: exact, and about 5.4 bytes per parameter.
    ``nn.Linear`` weights keep PyTorch's (out, in) layout.

    Args:
        model: An :class:`attention.induction.AttentionOnlyTransformer`
            (without Q, K, V biases, as it is built).

    Returns:
        ``{"format": FORMAT, "config": {...}, "tensors": {name: {"shape": [...],
        "data": "..."}}}``.

    Example:
        >>> m = AttentionOnlyTransformer(InductionConfig(vocab_size=8, context_length=6))
        >>> sorted(export_weights(m)["tensors"])[:3]
        ['layers.0.W_key', 'layers.0.W_query', 'layers.0.W_value']
    """
    m = _model("model", model)
    tensors = {}
    for name, t in _named_tensors(m).items():
        values = t.detach().to("cpu", torch.float32).contiguous()
        raw = struct.pack(f"<{values.numel()}f", *values.flatten().tolist())  # little-endian
        tensors[name] = {"shape": list(values.shape), "data": base64.b64encode(raw).decode()}
    config = {f: getattr(m.config, f) for f in _CONFIG_FIELDS}
    return {"format": FORMAT, "config": config, "tensors": tensors}


def import_weights(data: Mapping[str, Any]) -> AttentionOnlyTransformer:
    """Build the model back from :func:`export_weights`' data (in eval mode).

    Args:
        data: The exported mapping.

    Returns:
        An :class:`attention.induction.AttentionOnlyTransformer` holding the
        exported float32 values exactly.

    Raises:
        ValueError: If ``data`` is not such an export (wrong format, missing
            or misshapen tensors), naming what is wrong.
    """
    if not isinstance(data, Mapping):
        raise TypeError(f"data must be a mapping from export_weights, got {type(data).__name__}")
    if data.get("format") != FORMAT:
        raise ValueError(f"data['format'] must be {FORMAT!r}, got {data.get('format')!r}")
    config_data = data.get("config")
    if not isinstance(config_data, Mapping) or set(config_data) != set(_CONFIG_FIELDS):
        raise ValueError(f"data['config'] must have the keys {list(_CONFIG_FIELDS)}")
    model = AttentionOnlyTransformer(InductionConfig(**dict(config_data))).eval()
    expected = _named_tensors(model)
    tensors = data.get("tensors")
    if not isinstance(tensors, Mapping) or set(tensors) != set(expected):
        given = sorted(tensors) if isinstance(tensors, Mapping) else type(tensors).__name__
        raise ValueError(f"data['tensors'] must have the keys {sorted(expected)}, got {given}")
    with torch.no_grad():
        for name, target in expected.items():
            entry = tensors[name]
            raw = base64.b64decode(entry["data"], validate=True)
            if list(entry["shape"]) != list(target.shape) or len(raw) != 4 * target.numel():
                raise ValueError(
                    f"data['tensors'][{name!r}] must hold shape {list(target.shape)} "
                    f"({4 * target.numel()} bytes), got shape {entry['shape']} and {len(raw)} bytes"
                )
            values = torch.tensor(struct.unpack(f"<{target.numel()}f", raw), dtype=torch.float32)
            target.copy_(values.reshape(target.shape))
    return model


def encode(text: str, *, symbols: str = ALPHABET, vocab_size: int | None = None) -> list[int]:
    """Token ids of ``text``, one per character; whitespace is skipped.

    Args:
        text: What the reader typed.
        symbols: The symbol of each token id. Default: :data:`ALPHABET`.
        vocab_size: Only the first V symbols are tokens. Default: all.

    Returns:
        The ids.

    Raises:
        ValueError: For a character that is no token, naming it and its place.

    Example:
        >>> encode("ab ba")
        [0, 1, 1, 0]
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    usable = (
        symbols if vocab_size is None else symbols[: _checks.positive_int("vocab_size", vocab_size)]
    )
    ids = []
    for place, ch in enumerate(text):
        if ch.isspace():
            continue
        if ch not in usable:
            raise ValueError(f"text has {ch!r} at character {place + 1}, which is not a token")
        ids.append(usable.index(ch))
    return ids


def period(tokens: Sequence[int]) -> int | None:
    """The smallest L >= 2, L < T, with ``tokens[t] == tokens[t - L]`` for every t >= L.

    The period the induction score is measured at; ``None`` when the
    sequence does not repeat itself so.

    Example:
        >>> period([3, 1, 4, 3, 1, 4, 3]), period([1, 2, 3])
        (3, None)
    """
    ids = list(tokens)
    for n in range(2, len(ids)):
        if ids[n:] == ids[:-n]:
            return n
    return None


def _rounded(values: Tensor, decimals: int = JSON_DECIMALS) -> Any:
    rounded = values.detach().to("cpu", torch.float64).round(decimals=decimals).tolist()
    return _none_for_inf(rounded)


def _none_for_inf(value: Any) -> Any:
    if isinstance(value, list):
        return [_none_for_inf(v) for v in value]
    return value if math.isfinite(value) else None


def lab_reference(
    model: AttentionOnlyTransformer, tokens: Sequence[int], *, decimals: int = JSON_DECIMALS
) -> dict[str, Any]:
    """What the page computes for one sequence, computed by the package.

    Args:
        model: An :class:`attention.induction.AttentionOnlyTransformer`.
        tokens: One sequence of token ids, 1 to context_length of them.
        decimals: Decimals kept. Default: :data:`attention.widgets.JSON_DECIMALS`.

    Returns:
        A JSON-ready dict: ``tokens``; ``logits`` (T, V); ``scores``
        (N, H, T, T), each head's ``q·k / sqrt(D)`` with ``None`` above the
        diagonal (masked); ``weights`` (N, H, T, T); ``previous`` (N, H),
        :func:`attention.induction_scores.previous_token_score` (``None`` for
        T < 2); ``period`` (:func:`period`) and ``induction`` (N, H),
        :func:`attention.induction_scores.induction_score` at that period
        (``None`` without one).
    """
    m = _model("model", model)
    places = _checks.non_negative_int("decimals", decimals)
    if isinstance(tokens, Tensor):
        tokens = tokens.tolist()
    if not isinstance(tokens, Sequence) or not all(
        isinstance(t, int) and not isinstance(t, bool) for t in tokens
    ):
        raise TypeError(f"tokens must be a sequence of int token ids, got {tokens!r}")
    x = _tokens("tokens", torch.tensor([list(tokens)], dtype=torch.int64), m.config)
    n_t = x.shape[1]
    with torch.no_grad():
        logits, weights = m(x, return_weights=True)  # (1, T, V), (1, N, H, T, T)
        h = m.tok_emb(x) + m.pos_emb(torch.arange(n_t))  # (1, T, C)
        scores = []
        for layer in _layers(m):
            q = layer.W_query(h).view(1, n_t, m.config.n_heads, -1).transpose(1, 2)  # (1, H, T, D)
            k = layer.W_key(h).view(1, n_t, m.config.n_heads, -1).transpose(1, 2)  # (1, H, T, D)
            s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (1, H, T, T)
            blocked = torch.ones(n_t, n_t, dtype=torch.bool).triu(diagonal=1)
            scores.append(s.masked_fill(blocked, -torch.inf)[0])  # (H, T, T)
            h = h + layer(h)
    w = weights[0]  # (N, H, T, T)
    length = period(tokens)
    return {
        "tokens": list(tokens),
        "logits": _rounded(logits[0], places),
        "scores": _rounded(torch.stack(scores), places),
        "weights": _rounded(w, places),
        "previous": _rounded(previous_token_score(w), places) if n_t >= 2 else None,
        "period": length,
        "induction": _rounded(induction_score(w, length), places) if length is not None else None,
    }


def ov_circuit(model: AttentionOnlyTransformer, layer: int, head: int) -> Tensor:
    """What one head moves: the logits each source token adds through the head.

    ``tok_emb @ W_V_h^T @ W_O_h^T @ out_head^T``: a token's embedding, read
    by the head's value projection, written back by its slice of
    ``out_proj`` and read by the unembedding, as if the head put all its
    weight on that token (the direct path; ``out_proj``'s bias, which no
    source token changes, is left out). An induction head copies: the
    largest entry of row s is mostly s itself.

    Args:
        model: An :class:`attention.induction.AttentionOnlyTransformer`.
        layer: n, in [0, N).
        head: h, in [0, H).

    Returns:
        (V, V): ``[s, o]`` is the logit of output token o added by source token s.

    Example:
        >>> m = AttentionOnlyTransformer(InductionConfig(vocab_size=8, context_length=6))
        >>> ov_circuit(m, 1, 0).shape
        torch.Size([8, 8])
    """
    m = _model("model", model)
    n = _checks.non_negative_int("layer", layer)
    h = _checks.non_negative_int("head", head)
    if n >= m.config.n_layers:
        raise ValueError(f"layer must be in [0, {m.config.n_layers}), got {n}")
    if h >= m.config.n_heads:
        raise ValueError(f"head must be in [0, {m.config.n_heads}), got {h}")
    d = m.config.emb_dim // m.config.n_heads
    block = _layers(m)[n]
    cols = slice(h * d, (h + 1) * d)
    with torch.no_grad():
        w_v = block.W_value.weight[cols]  # (D, C)
        w_o = block.out_proj.weight[:, cols]  # (C, D)
        moved = m.tok_emb.weight @ w_v.T @ w_o.T  # (V, C) @ (C, D) @ (D, C) -> (V, C)
        out: Tensor = moved @ m.out_head.weight.T  # (V, C) @ (C, V) -> (V, V)
    return out


#: The reference cases :func:`model_lab` embeds by default: a repeated
#: random string (what the page opens on), a short one, and a typed word
#: that never repeats. Short, to keep the page light: the browser tests
#: check longer sequences against the package too.
DEFAULT_CASES = ("Kq7x!bTeKq7x!bTe", "cabbdcabbd", "hello")

#: Decimals of the references :func:`model_lab` embeds: ten times finer
#: than :data:`TOLERANCE`, and a lighter page than the package's six.
REFERENCE_DECIMALS = 5


def model_lab(
    model: AttentionOnlyTransformer,
    *,
    symbols: str = ALPHABET,
    cases: Sequence[str] = DEFAULT_CASES,
    title: str = "The trained model of chapter 12, on a sequence you type",
) -> Widget:
    """A widget that runs ``model`` in the page on the reader's sequence.

    The page shows every head's attention pattern with its previous-token
    and induction scores, the next-token predictions, and for a chosen head
    its scores (where it looks) and its OV circuit (what it moves).

    Args:
        model: A trained :class:`attention.induction.AttentionOnlyTransformer`.
        symbols: The symbol of each token id, at least V distinct characters,
            none of them whitespace. Default: :data:`ALPHABET`.
        cases: Reference sequences (typed text); the first is what the page
            opens on. The package's :func:`lab_reference` for each is
            embedded (less its scores, to :data:`REFERENCE_DECIMALS`
            decimals), and the browser tests hold the page to it.
        title: The widget's accessible name.

    Returns:
        A :class:`attention.widgets.Widget` of kind ``"model-lab"``.
    """
    m = _model("model", model)
    v = m.config.vocab_size
    if (
        not isinstance(symbols, str)
        or len(set(symbols[:v])) < v
        or any(c.isspace() for c in symbols[:v])
    ):
        raise ValueError(
            f"symbols must be a str of at least {v} distinct non-space characters, got {symbols!r}"
        )
    if isinstance(cases, str) or not cases:
        raise ValueError(f"cases must be a non-empty sequence of str, got {cases!r}")
    references = []
    for text in cases:
        ids = encode(text, symbols=symbols, vocab_size=v)
        reference = lab_reference(m, ids, decimals=REFERENCE_DECIMALS)
        del reference["scores"]  # softmax'd into the weights; the tests check them
        references.append({"text": text, **reference})
    n_layers, n_heads = m.config.n_layers, m.config.n_heads
    copying = [
        [
            (ov_circuit(m, n, h).argmax(dim=-1) == torch.arange(v)).double().mean().item()
            for h in range(n_heads)
        ]
        for n in range(n_layers)
    ]
    data = {
        "model": export_weights(m),
        "symbols": symbols[:v],
        "cases": references,
        "copying": copying,
        "tolerance": TOLERANCE,
    }
    return Widget("model-lab", data, label=title, fallback=_fallback(references[0]))


def _fallback(case: dict[str, Any]) -> str:
    """Where scripts do not run: the opening sequence's scores as a sentence."""
    prev = case["previous"]
    ind = case["induction"]
    parts = [f"<p>The interactive model needs JavaScript. On “{html.escape(case['text'])}”:"]
    for n, row in enumerate(prev or []):
        for h, p in enumerate(row):
            extra = f", induction score {ind[n][h]:.3f}" if ind else ""
            parts.append(f" layer {n} head {h}: previous-token score {p:.3f}{extra};")
    parts.append("</p>")
    return "".join(parts)
