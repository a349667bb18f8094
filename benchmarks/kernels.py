"""Suite ``kernels``: causal attention on (B, H, T, D) tensors, without projections.

Three kernels compute ``softmax(Q K^T / sqrt(D) + causal mask) V``:

* ``sdpa``: ``F.scaled_dot_product_attention(q, k, v, is_causal=True)``, the
  baseline of every ratio;
* ``flash``: :func:`attention.flash.flash_attention`, tiled with an online
  softmax, in plain PyTorch;
* ``naive``: :func:`attention.flash.reference_attention`, the formula, which
  builds the (T, T) score matrix of every head.

The sweep runs forward passes only, under ``torch.no_grad()`` (the layers
suite times the backward passes). For each context length, the first call of
each kernel measures its peak memory and its output, which is checked against
SDPA's; then the kernels take turns being timed. At the target length one
more group measures the peak memory of a forward and a backward pass
together, where autograd keeps what the backward pass needs, and checks each
kernel's gradients against SDPA's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from attention.complexity import attention_macs
from attention.flash import flash_attention, reference_attention
from benchmarks import common
from benchmarks.common import GIB, Record, Settings

KERNELS = {
    "sdpa": "F.scaled_dot_product_attention",
    "flash": "flash_attention",
    "naive": "reference_attention (the formula)",
}
BASELINE = "sdpa"
# The naive kernel's peak holds about three (B, H, T, T) float32 matrices.
_NAIVE_SQUARES = 3


@dataclass(frozen=True)
class Plan:
    """What a mode measures."""

    batch: int
    heads: int
    head_dim: int
    tokens: tuple[int, ...]
    target_tokens: int  # the context length of the targets
    repeats: int
    memory_budget: int  # bytes; kernels estimated above it are skipped
    peak_gemm: int  # side of the square matrix product that measures peak FLOP/s


PLANS = {
    "full": Plan(1, 8, 64, (128, 256, 512, 1024, 2048, 4096, 8192), 4096, 7, 5 * GIB, 2048),
    "quick": Plan(1, 8, 64, (128, 256, 512, 1024, 2048), 2048, 3, GIB, 1024),
    "tiny": Plan(1, 2, 4, (8, 16), 16, 1, GIB // 64, 64),
}


def kernel(name: str) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """Kernel ``name`` as a function of (q, k, v), causal."""
    if name == "sdpa":
        return _sdpa
    if name == "flash":
        return lambda q, k, v: flash_attention(q, k, v, causal=True)
    return lambda q, k, v: reference_attention(q, k, v, causal=True)


def _sdpa(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def kernel_flops(plan: Plan, tokens: int) -> int:
    """Model FLOPs of causal attention (:func:`attention.complexity.attention_macs`, 2 per MAC)."""
    macs = attention_macs(
        batch_size=plan.batch,
        context_length=tokens,
        d_model=plan.heads * plan.head_dim,
        causal=True,
    )
    return 2 * macs


def estimated_bytes(name: str, plan: Plan, tokens: int) -> int:
    """A rough peak: the naive kernel's score matrices, or about four copies of q for the others."""
    vectors = 4 * 4 * plan.batch * plan.heads * tokens * plan.head_dim
    if name == "naive":
        return _NAIVE_SQUARES * 4 * plan.batch * plan.heads * tokens**2 + vectors
    return vectors


def measure(plan: Plan, tokens: int) -> Record:
    """One context length: memory and output of each kernel, then interleaved times."""
    g = torch.Generator().manual_seed(tokens)
    q, k, v = torch.randn(3, plan.batch, plan.heads, tokens, plan.head_dim, generator=g)
    runnable = [n for n in KERNELS if estimated_bytes(n, plan, tokens) <= plan.memory_budget]
    outputs: dict[str, Tensor] = {}

    def call(name: str) -> Callable[[], None]:
        fn = kernel(name)

        def run() -> None:
            with torch.no_grad():
                outputs[name] = fn(q, k, v)

        return run

    runs = {n: call(n) for n in runnable}
    memory = {n: common.peak_bytes(run) for n, run in runs.items()}
    differences = {n: float((outputs[n] - outputs[BASELINE]).abs().max()) for n in runnable}
    if not all(d < 1e-4 for d in differences.values()):
        raise AssertionError(f"kernels disagree with SDPA at T={tokens}: {differences}")
    outputs.clear()
    times = common.time_interleaved(runs, repeats=plan.repeats, warmup=False)
    flops = kernel_flops(plan, tokens)
    records: list[Record] = []
    for n, label in KERNELS.items():
        record: Record = {"variant": n, "label": label}
        if n in runnable:
            record.update(common.timing_fields(times[n]))
            record["peak_bytes"] = memory[n]
            record["max_abs_difference"] = differences[n]
            record.update(common.flop_fields(flops, record["min_s"]))
        else:
            gib = estimated_bytes(n, plan, tokens) / GIB
            budget = plan.memory_budget / GIB
            record["skipped"] = (
                f"estimated peak {gib:.1f} GiB exceeds the budget of {budget:.1f} GiB"
            )
        records.append(record)
    base = records[0]
    for r in records:
        r["time_ratio"] = common.ratio(r.get("min_s"), base.get("min_s"))
        r["wall_time_ratio"] = common.ratio(r.get("wall_min_s"), base.get("wall_min_s"))
        r["memory_ratio"] = common.ratio(r.get("peak_bytes"), base.get("peak_bytes"))
    shape = {"batch": plan.batch, "heads": plan.heads, "tokens": tokens, "head_dim": plan.head_dim}
    return {
        "group": "sweep",
        "pass": "forward",
        "shape": shape,
        "baseline": BASELINE,
        "repeats": plan.repeats,
        "records": records,
    }


def measure_backward(plan: Plan) -> Record:
    """Peak memory of forward plus backward at the target length; gradients checked."""
    tokens = plan.target_tokens
    g = torch.Generator().manual_seed(tokens)
    q, k, v = torch.randn(3, plan.batch, plan.heads, tokens, plan.head_dim, generator=g)
    cotangent = torch.randn(plan.batch, plan.heads, tokens, plan.head_dim, generator=g)
    grads: dict[str, tuple[Tensor, ...]] = {}

    def peak(name: str) -> int:
        fn = kernel(name)
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]  # made before the measurement

        def run() -> None:
            grads[name] = torch.autograd.grad(fn(*leaves), leaves, cotangent)

        return common.peak_bytes(run)  # the output, what autograd saves, the gradients

    memory = {n: peak(n) for n in KERNELS}
    differences = {n: _largest_difference(grads[n], grads[BASELINE]) for n in KERNELS}
    if not all(d < 1e-4 for d in differences.values()):
        raise AssertionError(f"gradients disagree with SDPA's at T={tokens}: {differences}")
    records: list[Record] = [
        {
            "variant": n,
            "label": label,
            "peak_bytes": memory[n],
            "max_abs_difference": differences[n],
            "memory_ratio": common.ratio(memory[n], memory[BASELINE]),
        }
        for n, label in KERNELS.items()
    ]
    shape = {"batch": plan.batch, "heads": plan.heads, "tokens": tokens, "head_dim": plan.head_dim}
    return {
        "group": "target",
        "pass": "forward+backward",
        "shape": shape,
        "baseline": BASELINE,
        "records": records,
    }


def _largest_difference(mine: Sequence[Tensor], base: Sequence[Tensor]) -> float:
    """The largest absolute difference between matching tensors of two lists."""
    return max(float((a - b).abs().max()) for a, b in zip(mine, base, strict=True))


def targets(payload: Record) -> list[Record]:
    """The issue's three targets for ``flash_attention``, at the plan's target length."""
    plan = payload["settings"]["plan"]
    group = next(
        g
        for g in payload["groups"]
        if g["group"] == "sweep" and g["shape"]["tokens"] == plan["target_tokens"]
    )
    by_name = {r["variant"]: r for r in group["records"]}
    both = next(g for g in payload["groups"] if g["pass"] == "forward+backward")
    both_by_name = {r["variant"]: r for r in both["records"]}
    s = group["shape"]
    where = f"(B, H, T, D) = ({s['batch']}, {s['heads']}, {s['tokens']}, {s['head_dim']}), causal"
    return [
        common.target(
            "flash_attention / F.scaled_dot_product_attention, time",
            by_name["flash"]["time_ratio"],
            1.1,
            at_most=True,
            where=where,
            wall=by_name["flash"]["wall_time_ratio"],
        ),
        common.target(
            "flash_attention / naive softmax(QK^T)V, peak memory",
            common.ratio(by_name["flash"].get("peak_bytes"), by_name["naive"].get("peak_bytes")),
            1 / 8,
            at_most=True,
            where=where,
        ),
        common.target(
            "flash_attention / naive softmax(QK^T)V, peak memory, forward + backward",
            common.ratio(
                both_by_name["flash"].get("peak_bytes"), both_by_name["naive"].get("peak_bytes")
            ),
            1 / 8,
            at_most=True,
            where=where,
        ),
    ]


def target_rates(payload: Record) -> str:
    """GFLOP/s of SDPA and flash at the target length beside the run's peak, min and median.

    The median ratio is printed beside the minimum's: on a machine shared with
    other work, the two can differ, and the load averages say how busy it was.
    """
    plan = payload["settings"]["plan"]
    group = next(
        g
        for g in payload["groups"]
        if g["group"] == "sweep" and g["shape"]["tokens"] == plan["target_tokens"]
    )
    by_name = {r["variant"]: r for r in group["records"]}
    flops = by_name["sdpa"]["flops"]
    lines = [f"\nat T={plan['target_tokens']}, GFLOP/s (best run, median run):"]
    for n in ("sdpa", "flash"):
        r = by_name[n]
        lines.append(
            f"  {KERNELS[n]}: {flops / r['min_s'] / 1e9:.1f}, {flops / r['median_s'] / 1e9:.1f}"
        )
    lines.append(f"  peak, {payload['peak']['what']}: {payload['peak']['flop_per_s'] / 1e9:.1f}")
    flash, sdpa = by_name["flash"], by_name["sdpa"]
    lines.append(
        f"  flash / SDPA time: {flash['min_s'] / sdpa['min_s']:.3f} (minima), "
        f"{flash['median_s'] / sdpa['median_s']:.3f} (medians); 1-minute load average "
        f"{payload['machine']['load_average'][0]:.1f} at the start, {os.getloadavg()[0]:.1f} "
        f"now, on {payload['machine']['logical_cpus']} CPUs"
    )
    return "\n".join(lines)


def run(settings: Settings) -> Record:
    """Run the suite; return its payload (also written to ``settings.out``)."""
    plan = PLANS[settings.mode]

    def measure_all(payload: Record) -> None:
        payload["settings"] = {"plan": asdict(plan), "kernels": KERNELS, "baseline": BASELINE}
        for tokens in plan.tokens:
            payload["groups"].append(measure(plan, tokens))
            common.progress(f"T={tokens}: done")
        payload["groups"].append(measure_backward(plan))
        common.progress(f"T={plan.target_tokens}, forward + backward: done")

    payload = common.run_suite("kernels", settings, measure_all, peak_gemm=plan.peak_gemm)
    payload["targets"] = targets(payload)
    print_tables(payload)
    print(common.peak_line(payload))
    print(target_rates(payload))
    common.write_json(payload, settings.out)
    return payload


def print_tables(payload: Record) -> None:
    """Print one table per quantity: kernels by context length."""
    groups = [g for g in payload["groups"] if g["group"] == "sweep"]
    plan = payload["settings"]["plan"]
    print(
        f"\ncausal forward, B={plan['batch']}, H={plan['heads']}, D={plan['head_dim']}, by T"
        f" (min of {plan['repeats']}; ratios to {KERNELS[BASELINE]} in the same run)"
    )
    quantities: list[tuple[str, Callable[[Record], float | None]]] = [
        ("time, ms", lambda r: r["min_s"] * 1e3 if "min_s" in r else None),
        ("time ratio", lambda r: r["time_ratio"]),
        ("peak memory, MiB", lambda r: r["peak_bytes"] / 2**20 if "peak_bytes" in r else None),
        ("memory ratio", lambda r: r["memory_ratio"]),
        ("% of peak FLOP/s", lambda r: 100 * r["fraction_of_peak"] if "min_s" in r else None),
    ]
    tokens = [str(g["shape"]["tokens"]) for g in groups]
    for title, value in quantities:
        rows = [
            [label, *(value(g["records"][i]) for g in groups)]
            for i, label in enumerate(KERNELS.values())
        ]
        print(f"\n{title}:")
        print(common.table(["T", *tokens], rows))
    print("\n- = skipped: estimated peak memory above the budget.")
    both = next(g for g in payload["groups"] if g["pass"] == "forward+backward")
    print(f"\ncausal forward + backward at T={both['shape']['tokens']}:")
    rows = [
        [r["label"], r["peak_bytes"] / 2**20, r["memory_ratio"], r["max_abs_difference"]]
        for r in both["records"]
    ]
    print(common.table(["", "peak memory, MiB", "memory ratio", "gradient vs SDPA"], rows))
