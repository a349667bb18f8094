"""Predict, then reveal: short questions whose answers the package computes.

Each function returns a :class:`~attention.widgets.Widget` of kind
``"quiz"``: a question, an input, a Check button and a Reveal button. The
widget carries the data the question is about (queries and keys, or a shape
and its operations) and the answer computed here, by torch. The page's
script, ``attention/static/attention-quiz.js``, recomputes the answer from
the same data to check the reader's input and to show the working; the
browser tests hold its answer equal to the package's.

Three kinds of question:

- :func:`attend_question`: which key a query attends to most (a choice among
  the tokens);
- :func:`shape_question`: the shape after a chain of ``view`` and
  ``transpose`` (typed as ``2, 6, 4``);
- :func:`stride_question`: one stride after the same operations (a number).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from attention import _checks
from attention.functional import causal_mask, masked_softmax
from attention.widgets import JSON_DECIMALS, Widget

#: One operation on a shape: ``("view", (2, 6, 4, 5))`` or ``("transpose", 1, 2)``.
Operation = tuple[Any, ...]


def _question(prompt: str) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"prompt must be a non-empty string, got {prompt!r}")
    return prompt


def _quiz(data: dict[str, Any], answer_text: str) -> Widget:
    fallback = (
        f"<p>{html.escape(data['prompt'])}</p>"
        f"<details><summary>Answer</summary><p>{html.escape(answer_text)}</p></details>"
    )
    return Widget("quiz", data, label=f"Question: {data['prompt']}", fallback=fallback)


def attend_weights(
    queries: Tensor, keys: Tensor, query: int, *, scale: bool, causal: bool
) -> Tensor:
    """One query's attention weights over the keys, as the question computes them.

    Args:
        queries: (T, d_k) query vectors.
        keys: (T, d_k) key vectors.
        query: The row whose weights are asked for.
        scale: Divide the scores by sqrt(d_k).
        causal: Block the keys after ``query``.

    Returns:
        Weights, shape (T,), summing to one.
    """
    q = _checks.floating("queries", queries, ranks=(2,), layout="(T, d_k)")
    k = _checks.floating("keys", keys, ranks=(2,), layout="(T, d_k)")
    if q.shape != k.shape:
        raise ValueError(
            f"keys must have the shape of queries {tuple(q.shape)}, got {tuple(k.shape)}"
        )
    n = q.shape[0]
    if isinstance(query, bool) or not isinstance(query, int) or not 0 <= query < n:
        raise ValueError(f"query must be an int in [0, {n}), got {query!r}")
    scores = k @ q[query]  # (T, d_k) @ (d_k,) -> (T,)
    if _checks.flag("scale", scale):
        scores = scores / k.shape[-1] ** 0.5
    blocked = causal_mask(n)[query] if _checks.flag("causal", causal) else None
    return masked_softmax(scores, blocked)


def attend_question(
    queries: Tensor,
    keys: Tensor,
    query: int,
    *,
    tokens: Sequence[str],
    prompt: str,
    scale: bool = False,
    causal: bool = False,
) -> Widget:
    """Which key does one query attend to most? The reader picks a token.

    Args:
        queries: (T, d_k) query vectors (the inputs, for weight-free attention).
        keys: (T, d_k) key vectors.
        query: The index of the asking token.
        tokens: The T token labels, offered as the choices.
        prompt: The question as the reader sees it.
        scale: Divide the scores by sqrt(d_k), as trainable attention does.
        causal: Block the keys after the query, as causal attention does.

    Returns:
        A widget of kind ``"quiz"``; ``data["answer"]`` is the index of the key
        with the largest weight.

    Example:
        >>> from attention import TOKENS, toy_inputs
        >>> x = toy_inputs()
        >>> w = attend_question(x, x, 1, tokens=TOKENS, prompt="Which key?")
        >>> TOKENS[w.data["answer"]]
        'journey'
    """
    with torch.no_grad():
        weights = attend_weights(queries, keys, query, scale=scale, causal=causal)
    n = weights.shape[0]
    if isinstance(tokens, str) or len(tokens) != n:
        raise ValueError(f"tokens must be a sequence of {n} labels, got {tokens!r}")
    labels = [str(t) for t in tokens]
    answer = int(weights.argmax())
    top = weights.topk(2).values
    if float(top[0] - top[1]) < 1e-3:
        raise ValueError(f"query {query} has two keys within 1e-3 of the top weight: ask another")
    data = {
        "type": "attend",
        "prompt": _question(prompt),
        "tokens": labels,
        "query": query,
        "queries": queries.detach().double().round(decimals=JSON_DECIMALS).tolist(),
        "keys": keys.detach().double().round(decimals=JSON_DECIMALS).tolist(),
        "scale": scale,
        "causal": causal,
        "answer": answer,
        "weights": weights.double().round(decimals=4).tolist(),
    }
    return _quiz(data, f"{labels[answer]} (weight {weights[answer]:.4f})")


def _operations(shape: Sequence[int], operations: Sequence[Operation]) -> tuple[Tensor, list[Any]]:
    """Apply the operations to a tensor of ``shape``; return it and the JSON form of them."""
    if isinstance(shape, str) or not isinstance(shape, Sequence) or not shape:
        raise ValueError(f"shape must be a non-empty sequence of sizes, got {shape!r}")
    sizes = [_checks.positive_int("shape", s) for s in shape]
    x = torch.empty(sizes, device="meta")
    ops: list[Any] = []
    if isinstance(operations, str) or not operations:
        raise ValueError(f"operations must be a non-empty sequence, got {operations!r}")
    for op in operations:
        if isinstance(op, tuple) and len(op) == 2 and op[0] == "view":
            new = [_checks.positive_int("operations", s) for s in op[1]]
            try:
                x = x.view(new)
            except RuntimeError as error:
                raise ValueError(f"operations: view{tuple(new)} fails here: {error}") from None
            ops.append(["view", new])
        elif isinstance(op, tuple) and len(op) == 3 and op[0] == "transpose":
            a, b = op[1], op[2]
            for dim in (a, b):
                if isinstance(dim, bool) or not isinstance(dim, int) or not 0 <= dim < x.dim():
                    raise ValueError(
                        f"operations: transpose dims must be ints in [0, {x.dim()}), got {op!r}"
                    )
            x = x.transpose(a, b)
            ops.append(["transpose", a, b])
        else:
            raise ValueError(
                f"operations must hold ('view', sizes) or ('transpose', dim0, dim1), got {op!r}"
            )
    return x, ops


def shape_question(shape: Sequence[int], operations: Sequence[Operation], *, prompt: str) -> Widget:
    """What shape comes out? The reader types it, as ``2, 6, 4``.

    Args:
        shape: The starting shape.
        operations: ``("view", sizes)`` and ``("transpose", dim0, dim1)`` steps.
        prompt: The question as the reader sees it.

    Returns:
        A widget of kind ``"quiz"``; ``data["answer"]`` is the final shape.

    Example:
        >>> w = shape_question((2, 6, 20), [("view", (2, 6, 4, 5)), ("transpose", 1, 2)],
        ...                    prompt="Shape?")
        >>> w.data["answer"]
        [2, 4, 6, 5]
    """
    x, ops = _operations(shape, operations)
    data = {
        "type": "shape",
        "prompt": _question(prompt),
        "shape": list(shape),
        "operations": ops,
        "answer": list(x.shape),
    }
    return _quiz(data, ", ".join(map(str, x.shape)))


def stride_question(
    shape: Sequence[int], operations: Sequence[Operation], dim: int, *, prompt: str
) -> Widget:
    """One stride after the operations: the reader types a number.

    Args:
        shape: The starting shape (a contiguous tensor).
        operations: As for :func:`shape_question`.
        dim: The dimension whose stride is asked for.
        prompt: The question as the reader sees it.

    Returns:
        A widget of kind ``"quiz"``; ``data["answer"]`` is ``stride()[dim]``.

    Example:
        >>> w = stride_question((2, 6, 20), [("view", (2, 6, 4, 5)), ("transpose", 1, 2)], 2,
        ...                     prompt="Stride?")
        >>> w.data["answer"]
        20
    """
    x, ops = _operations(shape, operations)
    if isinstance(dim, bool) or not isinstance(dim, int) or not 0 <= dim < x.dim():
        raise ValueError(f"dim must be an int in [0, {x.dim()}), got {dim!r}")
    data = {
        "type": "stride",
        "prompt": _question(prompt),
        "shape": list(shape),
        "operations": ops,
        "dim": dim,
        "answer": x.stride()[dim],
    }
    return _quiz(data, str(x.stride()[dim]))
