"""Suite ``layers``: whole causal attention layers against ``nn.MultiheadAttention``.

Eight variants compute the same function (d -> d, H heads, causal) with the
same weights, copied from one seeded layer, and are checked to agree before
they are timed:

* ``book``: :class:`attention.MultiHeadAttention`, the book's forward;
* ``wrapper``: :class:`attention.MultiHeadAttentionWrapper` (one
  ``CausalAttention`` per head), followed by the same output projection;
* ``sdpa``: ``MultiHeadAttention(impl="sdpa")``;
* ``functional_sdpa``: the three projections, ``F.scaled_dot_product_attention``
  and the output projection, written out;
* ``flash``: the same with :func:`attention.flash.flash_attention`;
* ``torch``: ``nn.MultiheadAttention(need_weights=False)``, in eval mode as
  for inference, the baseline of the issue's targets;
* ``torch_sdpa``: the same module in training mode (dropout 0, so the same
  numbers), the baseline of the sweep;
* ``torch_weights``: ``nn.MultiheadAttention(need_weights=True)``.

Why two baselines: in eval mode and without autograd, ``nn.MultiheadAttention``
takes its inference fast path, which, given an attention mask, forms the
(T, T) weights even with ``need_weights=False``, so its memory and time grow
like the book's layer. In training mode, or whenever autograd records, it
calls SDPA with ``is_causal`` as ``impl="sdpa"`` does: the stronger baseline,
and the only one that reaches 8,192 tokens within the memory budget. (With
autograd on, ``torch`` and ``torch_sdpa`` run the same code, so the sweep's
backward passes time only ``torch_sdpa``.)

Two groups of measurements: the *target* shape of the issue (batch 8, 1,024
tokens, width 768, 12 heads in a full run), where ``impl="sdpa"`` is also
compared with the sum of its parts, each part timed alone; and a *sweep* over
the context length at batch 1. Forward passes run under ``torch.no_grad()``;
forward plus backward sums the output and back-propagates, the gradients of
the input and of every weight reset to ``None`` first, so each call allocates
them afresh. A variant whose estimated peak memory exceeds the plan's budget
is skipped and recorded as skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attention import MultiHeadAttention, MultiHeadAttentionWrapper
from attention.complexity import attention_layer_macs, attention_macs
from attention.flash import flash_attention
from benchmarks import common
from benchmarks.common import GIB, Record, Settings

VARIANTS = {
    "book": "MultiHeadAttention (book)",
    "wrapper": "MultiHeadAttentionWrapper + out_proj",
    "sdpa": "MultiHeadAttention(impl='sdpa')",
    "functional_sdpa": "projections + F.scaled_dot_product_attention",
    "flash": "projections + flash_attention",
    "torch": "nn.MultiheadAttention(need_weights=False)",
    "torch_sdpa": "nn.MultiheadAttention(need_weights=False), training mode",
    "torch_weights": "nn.MultiheadAttention(need_weights=True)",
}
TARGET_BASELINE = "torch"  # as the issue names it, and as inference calls it
SWEEP_BASELINE = "torch_sdpa"  # PyTorch's fastest path, at every length
PASSES = ("forward", "forward+backward")
PARTS = ("W_query", "W_key", "W_value", "F.scaled_dot_product_attention", "out_proj")

# How many (B, H, T, T) float32 matrices a variant holds at its peak, by pass,
# rounded up from its measured peaks: used only to skip variants that would not
# fit the memory budget. Variants missing here hold none.
_SQUARE_MATRICES = {
    ("book", "forward"): 4,
    ("book", "forward+backward"): 4,
    ("wrapper", "forward"): 1.5,  # one head at a time, but all heads' weights are kept
    ("wrapper", "forward+backward"): 2.5,
    ("torch", "forward"): 2.5,  # the inference fast path forms the weights
    ("torch_weights", "forward"): 2.5,
    ("torch_weights", "forward+backward"): 3,
    ("flash", "forward+backward"): 1,  # autograd keeps every tile of the loop
}


@dataclass(frozen=True)
class Shape:
    """Sizes of one measurement: batch B, tokens T, width C, heads H."""

    batch: int
    tokens: int
    width: int
    heads: int


@dataclass(frozen=True)
class Plan:
    """What a mode measures."""

    target: Shape  # the shape of the targets
    target_repeats: int  # timed runs per candidate at the target shape
    sweep_batch: int
    sweep_width: int
    sweep_heads: int
    sweep_tokens: tuple[int, ...]
    sweep_repeats: tuple[int, ...]  # timed runs per variant, for each of sweep_tokens
    memory_budget: int  # bytes; variants estimated above it are skipped
    peak_gemm: int  # side of the square matrix product that measures peak FLOP/s


PLANS = {
    "full": Plan(
        Shape(8, 1024, 768, 12),
        5,
        1,
        768,
        12,
        (128, 256, 512, 1024, 2048, 4096, 8192),
        (3, 3, 3, 3, 2, 2, 2),
        2 * GIB,
        2048,
    ),
    "quick": Plan(
        Shape(2, 512, 768, 12), 3, 1, 768, 12, (128, 256, 512, 1024), (2, 2, 2, 2), GIB, 1024
    ),
    "tiny": Plan(Shape(2, 16, 32, 4), 1, 1, 32, 4, (8, 16), (1, 1), GIB // 64, 64),
}


class Variants:
    """The variants on shared weights, built for one width, head count and length."""

    def __init__(self, width: int, heads: int, tokens: int, *, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.heads, self.head_dim = heads, width // heads
        self.sdpa = MultiHeadAttention(width, width, tokens, 0.0, heads, impl="sdpa").eval()
        self.causal = torch.ones(tokens, tokens, dtype=torch.bool).triu(1)  # True = blocked
        self._tokens = tokens
        self._built: dict[str, nn.Module] = {}

    def module(self, name: str) -> nn.Module:
        """The module behind variant ``name`` (built on first use: some are large)."""
        key = "torch" if name == "torch_weights" else name  # one module, two calls
        if key not in self._built:
            self._built[key] = self._build(key)
        return self._built[key]

    def _build(self, name: str) -> nn.Module:
        s, c, h, d = self.sdpa, self.sdpa.d_out, self.heads, self.head_dim
        if name == "book":
            book = MultiHeadAttention(c, c, self._tokens, 0.0, h).eval()
            book.load_state_dict(s.state_dict())
            return book
        if name == "wrapper":
            wrapper = MultiHeadAttentionWrapper(c, d, self._tokens, 0.0, h).eval()
            with torch.no_grad():
                for i, head in enumerate(wrapper.heads):
                    for proj in ("W_query", "W_key", "W_value"):
                        rows = getattr(s, proj).weight[i * d : (i + 1) * d]  # head i's (D, C)
                        getattr(head, proj).weight.copy_(rows)
            return wrapper
        if name in ("torch", "torch_sdpa"):
            mha = nn.MultiheadAttention(c, h, dropout=0.0, bias=True, batch_first=True)
            with torch.no_grad():
                stacked = torch.cat((s.W_query.weight, s.W_key.weight, s.W_value.weight))
                mha.in_proj_weight.copy_(stacked)  # (3C, C)
                assert mha.in_proj_bias is not None
                mha.in_proj_bias.zero_()
                mha.out_proj.weight.copy_(s.out_proj.weight)
                mha.out_proj.bias.copy_(s.out_proj.bias)
            return mha.train(name == "torch_sdpa")
        return s  # sdpa, functional_sdpa and flash use the sdpa layer's modules

    def forward(self, name: str) -> Callable[[Tensor], Tensor]:
        """Variant ``name`` as a function of x, (B, T, C) -> (B, T, C)."""
        s = self.sdpa
        module = self.module(name)
        if name == "wrapper":
            return lambda x: s.out_proj(module(x))
        if name == "functional_sdpa":
            return lambda x: self._functional(x, _sdpa_causal)
        if name == "flash":
            return lambda x: self._functional(x, _flash_causal)
        if name in ("torch", "torch_sdpa", "torch_weights"):
            need_weights = name == "torch_weights"

            def torch_mha(x: Tensor) -> Tensor:
                mask = self.causal[: x.shape[1], : x.shape[1]]  # (T, T), True = blocked
                out: Tensor = module(
                    x, x, x, attn_mask=mask, need_weights=need_weights, is_causal=True
                )[0]
                return out

            return torch_mha
        return module

    def _functional(self, x: Tensor, kernel: Callable[[Tensor, Tensor, Tensor], Tensor]) -> Tensor:
        s = self.sdpa
        b, t, c = x.shape
        q, k, v = (self._heads(p(x)) for p in (s.W_query, s.W_key, s.W_value))  # 3 x (B, H, T, D)
        context = kernel(q, k, v).transpose(1, 2).reshape(b, t, c)  # (B, T, C)
        out: Tensor = s.out_proj(context)
        return out

    def _heads(self, t: Tensor) -> Tensor:
        b, n, _ = t.shape
        return t.view(b, n, self.heads, self.head_dim).transpose(1, 2)  # (B, H, T, D)

    def parameters(self) -> list[nn.Parameter]:
        """Every weight of every variant built so far."""
        params = list(self.sdpa.parameters())
        for module in self._built.values():
            params.extend(module.parameters())
        return params


def _sdpa_causal(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def _flash_causal(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    return flash_attention(q, k, v, causal=True)


def estimated_bytes(variant: str, pass_: str, shape: Shape) -> int:
    """A rough peak for ``variant``: its (B, H, T, T) matrices plus activations."""
    square = 4 * shape.batch * shape.heads * shape.tokens**2
    activations = 4 * shape.batch * shape.tokens * shape.width * 16
    return int(_SQUARE_MATRICES.get((variant, pass_), 0) * square) + activations


def runner(
    fn: Callable[[Tensor], Tensor], x: Tensor, pass_: str, params: list[nn.Parameter]
) -> Callable[[], None]:
    """A call of ``fn(x)`` for one pass, ready to time."""
    if pass_ == "forward":

        def forward() -> None:
            with torch.no_grad():
                fn(x)

        return forward
    leaf = x.detach().requires_grad_()

    def forward_backward() -> None:
        leaf.grad = None
        for p in params:
            p.grad = None
        fn(leaf).sum().backward()  # type: ignore[no-untyped-call]  # untyped in torch's stubs

    return forward_backward


def model_flops(macs: int, pass_: str) -> int:
    """FLOPs of a pass: 2 per multiply-add; backward counted as twice the forward."""
    return 2 * macs * (3 if pass_ == "forward+backward" else 1)


def layer_flops(shape: Shape, pass_: str) -> int:
    """Model FLOPs of one causal layer (:func:`attention.complexity.attention_layer_macs`)."""
    macs = attention_layer_macs(
        batch_size=shape.batch, context_length=shape.tokens, d_model=shape.width, causal=True
    )
    return model_flops(macs, pass_)


def part_flops(part: str, shape: Shape, pass_: str) -> int:
    """Model FLOPs of one part of the ``sdpa`` layer."""
    if part == "F.scaled_dot_product_attention":
        macs = attention_macs(
            batch_size=shape.batch, context_length=shape.tokens, d_model=shape.width, causal=True
        )
    else:
        macs = shape.batch * shape.tokens * shape.width**2  # one (C, C) projection
    return model_flops(macs, pass_)


def inputs(shape: Shape) -> Tensor:
    """The layer input of a shape, (B, T, C), always the same numbers."""
    g = torch.Generator().manual_seed(1)
    return torch.randn(shape.batch, shape.tokens, shape.width, generator=g)


def check_agreement(variants: Variants, names: list[str], x: Tensor) -> dict[str, float]:
    """Largest difference of each variant's output from ``torch``'s; raise if any is large."""
    with torch.no_grad():
        expected = variants.forward("torch")(x)
        diffs = {n: float((variants.forward(n)(x) - expected).abs().max()) for n in names}
    bad = {n: d for n, d in diffs.items() if not d < 1e-4}
    if bad:
        raise AssertionError(f"variants disagree with {VARIANTS['torch']}: {bad}")
    return diffs


def part_runners(shape: Shape, pass_: str, variants: Variants) -> dict[str, Callable[[], None]]:
    """The parts of the ``sdpa`` layer, each a call of its own on inputs of its shape."""
    s = variants.sdpa
    b, t, c, h = shape.batch, shape.tokens, shape.width, shape.heads
    g = torch.Generator().manual_seed(2)
    x = torch.randn(b, t, c, generator=g)
    q, k, v = torch.randn(3, b, h, t, c // h, generator=g)  # 3 x (B, H, T, D), contiguous
    grad = pass_ == "forward+backward"
    leaves = [tensor.requires_grad_(grad) for tensor in (x, q, k, v)]
    params = list(s.parameters())

    def call(fn: Callable[[], Tensor]) -> Callable[[], None]:
        def run() -> None:
            if not grad:
                with torch.no_grad():
                    fn()
                return
            for p in (*leaves, *params):
                p.grad = None
            fn().sum().backward()  # type: ignore[no-untyped-call]  # untyped in torch's stubs

        return run

    return {
        "W_query": call(lambda: s.W_query(x)),
        "W_key": call(lambda: s.W_key(x)),
        "W_value": call(lambda: s.W_value(x)),
        "F.scaled_dot_product_attention": call(lambda: _sdpa_causal(q, k, v)),
        "out_proj": call(lambda: s.out_proj(x)),
    }


def with_ratios(records: list[Record], baseline: str) -> list[Record]:
    """Add each record's time and memory ratios to the ``baseline`` record's."""
    base = next(r for r in records if r["variant"] == baseline)
    for r in records:
        r["time_ratio"] = common.ratio(r.get("min_s"), base.get("min_s"))
        r["wall_time_ratio"] = common.ratio(r.get("wall_min_s"), base.get("wall_min_s"))
        r["memory_ratio"] = common.ratio(r.get("peak_bytes"), base.get("peak_bytes"))
    return records


def target_groups(plan: Plan) -> list[Record]:
    """``impl="sdpa"`` against ``nn.MultiheadAttention`` and its own parts, at the target shape."""
    shape = plan.target
    variants = Variants(shape.width, shape.heads, shape.tokens)
    x = inputs(shape)
    agreement = check_agreement(variants, ["sdpa", "torch", "torch_sdpa"], x)
    groups = []
    for pass_ in PASSES:
        # With autograd on, torch never takes its fast path: torch_sdpa would
        # time the same code again.
        names = ["sdpa", "torch"] + (["torch_sdpa"] if pass_ == "forward" else [])
        params = variants.parameters()
        runs = {n: runner(variants.forward(n), x, pass_, params) for n in names}
        parts = part_runners(shape, pass_, variants)
        memory = {n: common.peak_bytes(run) for n, run in runs.items()}  # also the warm-up
        for run in parts.values():
            run()  # warm-up
        candidates = {**runs, **parts}
        times = common.time_interleaved(candidates, repeats=plan.target_repeats, warmup=False)
        flops = layer_flops(shape, pass_)
        records = [
            {
                "variant": n,
                "label": VARIANTS[n],
                **common.timing_fields(times[n]),
                "peak_bytes": memory[n],
                **common.flop_fields(flops, times[n].best),
            }
            for n in names
        ]
        part_records = [
            {
                "part": p,
                **common.timing_fields(times[p]),
                **common.flop_fields(part_flops(p, shape, pass_), times[p].best),
            }
            for p in PARTS
        ]
        parts_sum = sum(r["min_s"] for r in part_records)
        wall_parts_sum = sum(r["wall_min_s"] for r in part_records)
        with_ratios(records, TARGET_BASELINE)
        records[0]["parts_ratio"] = records[0]["min_s"] / parts_sum
        records[0]["wall_parts_ratio"] = records[0]["wall_min_s"] / wall_parts_sum
        if pass_ == "forward":
            records[0]["sdpa_path_ratio"] = records[0]["min_s"] / records[2]["min_s"]
        groups.append(
            {
                "group": "target",
                "pass": pass_,
                "shape": asdict(shape),
                "baseline": TARGET_BASELINE,
                "repeats": plan.target_repeats,
                "max_abs_difference": agreement,
                "records": records,
                "parts": part_records,
                "parts_sum_s": parts_sum,
            }
        )
        common.progress(f"target shape, {pass_}: done")
    return groups


def sweep_group(variants: Variants, shape: Shape, pass_: str, plan: Plan, repeats: int) -> Record:
    """Peak memory (the first, warm-up call), then interleaved times, of every variant."""
    x = inputs(shape)
    names = sweep_variants(pass_)
    runnable = [n for n in names if estimated_bytes(n, pass_, shape) <= plan.memory_budget]
    params = variants.parameters()
    runs = {n: runner(variants.forward(n), x, pass_, params) for n in runnable}
    memory = {n: common.peak_bytes(run) for n, run in runs.items()}
    times = common.time_interleaved(runs, repeats=repeats, warmup=False)
    flops = layer_flops(shape, pass_)
    records = []
    for n in names:
        record: Record = {"variant": n, "label": VARIANTS[n]}
        if n in runnable:
            record.update(common.timing_fields(times[n]))
            record["peak_bytes"] = memory[n]
            record.update(common.flop_fields(flops, record["min_s"]))
        else:
            gib, budget = estimated_bytes(n, pass_, shape) / GIB, plan.memory_budget / GIB
            record["skipped"] = (
                f"estimated peak {gib:.1f} GiB exceeds the budget of {budget:.1f} GiB"
            )
        records.append(record)
    return {
        "group": "sweep",
        "pass": pass_,
        "shape": asdict(shape),
        "baseline": SWEEP_BASELINE,
        "repeats": repeats,
        "records": with_ratios(records, SWEEP_BASELINE),
    }


def sweep_variants(pass_: str) -> list[str]:
    """The variants the sweep times in ``pass_``: all but ``torch`` with autograd on."""
    return [n for n in VARIANTS if not (n == "torch" and pass_ == "forward+backward")]


def sweep_groups(plan: Plan) -> list[Record]:
    """Every variant at batch ``sweep_batch`` for each context length of the plan."""
    groups = []
    for i, (tokens, repeats) in enumerate(zip(plan.sweep_tokens, plan.sweep_repeats, strict=True)):
        shape = Shape(plan.sweep_batch, tokens, plan.sweep_width, plan.sweep_heads)
        variants = Variants(shape.width, shape.heads, tokens)
        agreement = check_agreement(variants, list(VARIANTS), inputs(shape)) if i == 0 else None
        for pass_ in PASSES:
            group = sweep_group(variants, shape, pass_, plan, repeats)
            group["max_abs_difference"] = agreement
            groups.append(group)
            common.progress(f"T={tokens}, {pass_}: done")
    return groups


def targets(payload: Record) -> list[Record]:
    """The issue's targets for this suite, from the target groups of ``payload``."""
    found = []
    for group in payload["groups"]:
        if group["group"] != "target":
            continue
        sdpa = group["records"][0]
        s = group["shape"]
        where = f"B={s['batch']}, T={s['tokens']}, C={s['width']}, H={s['heads']}"
        found.append(
            common.target(
                f"MultiHeadAttention(impl='sdpa') / {VARIANTS[TARGET_BASELINE]}, {group['pass']}",
                sdpa["time_ratio"],
                1.0,
                at_most=True,
                where=where,
                wall=sdpa["wall_time_ratio"],
            )
        )
        found.append(
            common.target(
                f"MultiHeadAttention(impl='sdpa') / sum of its parts, {group['pass']}",
                sdpa["parts_ratio"],
                1.1,
                at_most=True,
                where=where,
                wall=sdpa["wall_parts_ratio"],
            )
        )
    return found


def run(settings: Settings) -> Record:
    """Run the suite; return its payload (also written to ``settings.out``)."""
    plan = PLANS[settings.mode]

    def measure(payload: Record) -> None:
        payload["settings"] = {
            "plan": asdict(plan),
            "variants": VARIANTS,
            "target_baseline": TARGET_BASELINE,
            "sweep_baseline": SWEEP_BASELINE,
            "parts": PARTS,
        }
        payload["groups"] = target_groups(plan) + sweep_groups(plan)

    payload = common.run_suite("layers", settings, measure, peak_gemm=plan.peak_gemm)
    payload["targets"] = targets(payload)
    print_target_groups(payload)
    print_sweep(payload)
    print(common.peak_line(payload))
    common.write_json(payload, settings.out)
    return payload


def print_target_groups(payload: Record) -> None:
    """Print the target shape's tables."""
    for group in payload["groups"]:
        if group["group"] != "target":
            continue
        s = group["shape"]
        print(
            f"\n{group['pass']} at B={s['batch']}, T={s['tokens']}, C={s['width']}, H={s['heads']}"
            f" (min of {group['repeats']}; ratios to {VARIANTS[TARGET_BASELINE]} in this run)"
        )
        rows: list[list[Any]] = [
            [
                r["label"],
                r["min_s"] * 1e3,
                r["median_s"] * 1e3,
                r["time_ratio"],
                r["peak_bytes"] / 2**20,
                r["memory_ratio"],
                100 * r["fraction_of_peak"],
            ]
            for r in group["records"]
        ]
        rows += [
            [
                "  part: " + p["part"],
                p["min_s"] * 1e3,
                p["median_s"] * 1e3,
                None,
                None,
                None,
                100 * p["fraction_of_peak"],
            ]
            for p in group["parts"]
        ]
        rows.append(["  sum of the parts' minima", group["parts_sum_s"] * 1e3, *[None] * 5])
        headers = ["", "min ms", "median ms", "time ratio", "peak MiB", "mem ratio", "% peak"]
        print(common.table(headers, rows))
        sdpa = group["records"][0]
        line = f"impl='sdpa' / sum of its parts: {sdpa['parts_ratio']:.3f}"
        if "sdpa_path_ratio" in sdpa:
            line += f"; / {VARIANTS['torch_sdpa']}: {sdpa['sdpa_path_ratio']:.3f}"
        print(line)


def print_sweep(payload: Record) -> None:
    """Print the sweep: one table per pass and quantity, variants by context length."""
    sweep = [g for g in payload["groups"] if g["group"] == "sweep"]
    for pass_ in PASSES:
        groups = [g for g in sweep if g["pass"] == pass_]
        tokens = [str(g["shape"]["tokens"]) for g in groups]
        s = groups[0]["shape"]
        print(
            f"\n{pass_}, B={s['batch']}, C={s['width']}, H={s['heads']}, by context length T"
            f" (min of {', '.join(str(g['repeats']) for g in groups)} runs;"
            f" ratios to {VARIANTS[SWEEP_BASELINE]} in the same run)"
        )
        for title, value in QUANTITIES:
            rows = [
                [VARIANTS[n], *(value(_find(g, n)) for g in groups)] for n in sweep_variants(pass_)
            ]
            print(f"\n{title}:")
            print(common.table(["T", *tokens], rows))
    print("\n- = skipped: estimated peak memory above the budget.")


QUANTITIES: list[tuple[str, Callable[[Record], float | None]]] = [
    ("time, ms", lambda r: r["min_s"] * 1e3 if "min_s" in r else None),
    ("time ratio", lambda r: r["time_ratio"]),
    ("peak memory, MiB", lambda r: r["peak_bytes"] / 2**20 if "peak_bytes" in r else None),
    ("memory ratio", lambda r: r["memory_ratio"]),
    ("% of peak FLOP/s", lambda r: 100 * r["fraction_of_peak"] if "min_s" in r else None),
]


def _find(group: Record, variant: str) -> Record:
    return next(r for r in group["records"] if r["variant"] == variant)
