"""A shape tracer (chapter 8): multi-head attention, one operation at a time.

:func:`trace_multihead` runs the forward pass of a
:class:`attention.MultiHeadAttention` one operation at a time, with the
layer's own parameters, and records every intermediate tensor: its name, the
code that produced it, its shape in the package's letters and whether it is
contiguous in memory. The last record is the layer's output. Each record
carries its tensor and dimension names, so :mod:`attention.shapes` can draw
it as a shape diagram.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attention import _checks
from attention.causal import blocked_positions
from attention.functional import masked_softmax
from attention.multihead import MultiHeadAttention


@dataclass(frozen=True, eq=False)
class TraceStep:
    """One intermediate tensor of a traced forward pass.

    Attributes:
        name: The tensor's name, as in the layer's code (``queries``, ``scores``).
        code: The operation that produced it, as PyTorch code.
        dims: One letter per dimension, for example ``("B", "H", "T", "D")``.
        tensor: The tensor itself.
    """

    name: str
    code: str
    dims: tuple[str, ...]
    tensor: Tensor

    @property
    def shape(self) -> tuple[int, ...]:
        """The tensor's shape."""
        return tuple(self.tensor.shape)

    @property
    def layout(self) -> str:
        """The shape in letters, for example ``"(B, H, T, D)"``."""
        return f"({', '.join(self.dims)})"

    @property
    def contiguous(self) -> bool:
        """Whether the tensor's elements lie in memory in row-major order."""
        return self.tensor.is_contiguous()


class Trace(list[TraceStep]):
    """The steps of a traced forward pass, in order; the last is the output.

    A plain list of :class:`TraceStep`, which displays itself as a table in a
    notebook (HTML) and as aligned text with ``str``.
    """

    def step(self, name: str) -> TraceStep:
        """The last step called ``name``: the value the name ends up holding.

        A name such as ``queries`` is reassigned as the tensor is reshaped;
        :meth:`steps` returns every version.
        """
        found = self.steps(name)
        if not found:
            raise KeyError(
                f"no step named {name!r}; the steps are {sorted({s.name for s in self})}"
            )
        return found[-1]

    def steps(self, name: str) -> list[TraceStep]:
        """Every step called ``name``, in order."""
        return [s for s in self if s.name == name]

    @property
    def output(self) -> Tensor:
        """The last step's tensor: the layer's output."""
        return self[-1].tensor

    def _rows(self) -> list[tuple[str, str, str, str, str, str]]:
        return [
            (
                str(i),
                s.name,
                s.code,
                s.layout,
                str(s.shape),
                "yes" if s.contiguous else "no",
            )
            for i, s in enumerate(self, start=1)
        ]

    def to_text(self) -> str:
        """The trace as an aligned text table."""
        head = ("step", "tensor", "operation", "layout", "shape", "contiguous")
        rows = [head, *self._rows()]
        widths = [max(len(r[k]) for r in rows) for k in range(len(head))]
        return "\n".join(
            "  ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=True)).rstrip()
            for r in rows
        )

    def __str__(self) -> str:
        return self.to_text()

    def to_html(self) -> str:
        """The trace as an HTML table; non-contiguous tensors are marked."""
        cell = "padding:0.15rem 0.6rem;text-align:left;vertical-align:top"
        # The page's code colours are meant for its own background, which a
        # theme may replace behind notebook output: inherit the output's colour.
        code = "color:inherit;background:none;border:0;padding:0"
        line = "border-bottom:1px solid var(--pst-color-border, #8884)"
        head = "".join(
            f'<th scope="col" style="{cell};{line}">{h}</th>'
            for h in ("step", "tensor", "operation", "layout", "shape", "contiguous")
        )
        body = []
        for number, name, op, layout, shape, contiguous in self._rows():
            mark = "" if contiguous == "yes" else ";font-weight:bold"
            body.append(
                "<tr>"
                f'<td style="{cell}">{number}</td>'
                f'<td style="{cell}"><code style="{code}">{html.escape(name)}</code></td>'
                f'<td style="{cell}"><code style="{code}">{html.escape(op)}</code></td>'
                f'<td style="{cell};white-space:nowrap">{html.escape(layout)}</td>'
                f'<td style="{cell};white-space:nowrap">{html.escape(shape)}</td>'
                f'<td style="{cell}{mark}">{contiguous}</td>'
                "</tr>"
            )
        return (
            '<div class="attn-trace" style="overflow-x:auto">'
            '<table style="border-collapse:collapse;font-size:0.85em">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
        )

    def _repr_html_(self) -> str:
        return self.to_html()


def trace_multihead(
    layer: MultiHeadAttention, x: Tensor, *, padding_mask: Tensor | None = None
) -> Trace:
    """Run a multi-head attention layer one operation at a time, recording each.

    ``output = out_proj(concat_h(dropout(masked_softmax(Q_h K_h^T / sqrt(D))) V_h))``,
    with each reshape, transpose and product a step of its own: the steps of
    ``MultiHeadAttention.forward`` with ``impl="manual"``, computed with the
    layer's own modules and parameters in the same order, so the last step's
    tensor equals ``layer(x)`` bit for bit (for ``impl="sdpa"`` layers, to
    float rounding). With dropout active (training mode, p > 0), seed the
    generator the same way before both calls to get the same mask.

    Args:
        layer: The :class:`attention.MultiHeadAttention` to trace.
        x: Tokens, shape (B, T, d_in) with T <= ``layer.context_length``.
        padding_mask: Optional (B, T) bool, ``True`` where a token is padding.

    Returns:
        A :class:`Trace`: a list of :class:`TraceStep`, from the input ``x``
        (B, T, d_in) to the output (B, T, C).

    Example:
        >>> import torch
        >>> from attention import MultiHeadAttention, toy_inputs
        >>> _ = torch.manual_seed(123)
        >>> mha = MultiHeadAttention(3, 4, 6, 0.0, num_heads=2)
        >>> trace = trace_multihead(mha, torch.stack((toy_inputs(), toy_inputs())))
        >>> trace.step("scores").layout, trace.step("scores").shape
        ('(B, H, T, T)', (2, 2, 6, 6))
        >>> # exact: the same operations in the same order on the same numbers
        >>> torch.equal(trace.output, mha(torch.stack((toy_inputs(), toy_inputs()))))
        True
    """
    if not isinstance(layer, MultiHeadAttention):
        raise TypeError(f"layer must be a MultiHeadAttention, got {type(layer).__name__}")
    x = _checks.layer_input(
        x,
        d_in=layer.d_in,
        ranks=(3,),
        layout="(B, T, d_in)",
        parameter=layer.W_query.weight,
        context_length=layer.context_length,
    )
    trace = Trace()

    def rec(name: str, code: str, dims: str, t: Tensor) -> Tensor:
        trace.append(TraceStep(name, code, tuple(dims.split()), t))
        return t

    def heads(name: str, proj: nn.Linear) -> Tensor:
        t = rec(name, f"{_attr(layer, proj)}(x)", "B T C", proj(x))  # (B, T, C)
        t = rec(name, f"{name}.view(B, T, H, D)", "B T H D", t.view(b, n, h, d))  # (B, T, H, D)
        return rec(name, f"{name}.transpose(1, 2)", "B H T D", t.transpose(1, 2))  # (B, H, T, D)

    b, n, _ = x.shape
    h, d = layer.num_heads, layer.head_dim
    with torch.no_grad():
        rec("x", "input", "B T d_in", x)
        queries = heads("queries", layer.W_query)  # (B, H, T, D)
        keys = heads("keys", layer.W_key)  # (B, H, T, D)
        values = heads("values", layer.W_value)  # (B, H, T, D)
        keys_t = keys.transpose(2, 3)  # (B, H, D, T)
        rec("keys_t", "keys.transpose(2, 3)", "B H D T", keys_t)
        scores = rec("scores", "queries @ keys_t", "B H T T", queries @ keys_t)  # (B, H, T, T)
        scaled = rec("scaled", "scores / D ** 0.5", "B H T T", scores / keys.shape[-1] ** 0.5)
        blocked = blocked_positions(layer.mask, n, padding_mask, x)  # (T, T) or (B, T, T)
        if blocked.dim() == 3:
            blocked = rec("blocked", "(causal | padding)[:, None]", "B 1 T T", blocked[:, None])
        else:
            rec("blocked", "mask[:T, :T].bool()", "T T", blocked)
        weights = masked_softmax(scaled, blocked)  # (B, H, T, T)
        rec("weights", "masked_softmax(scaled, blocked)", "B H T T", weights)
        active = layer.dropout.training and layer.dropout.p > 0
        what = f"dropout(weights), p={layer.dropout.p}" + ("" if active else ": identity")
        weights = rec("weights", what, "B H T T", layer.dropout(weights))
        context = rec("context", "weights @ values", "B H T D", weights @ values)  # (B, H, T, D)
        context = rec("context", "context.transpose(1, 2)", "B T H D", context.transpose(1, 2))
        context = rec("context", "context.contiguous()", "B T H D", context.contiguous())
        merged = context.view(b, n, layer.d_out)  # (B, T, H, D) -> (B, T, C)
        context = rec("context", "context.view(B, T, C)", "B T C", merged)
        rec("output", "out_proj(context)", "B T C", layer.out_proj(context))  # (B, T, C)
    return trace


def _attr(layer: MultiHeadAttention, module: nn.Module) -> str:
    """The attribute name under which ``layer`` holds ``module``."""
    return next(name for name, child in layer.named_children() if child is module)
