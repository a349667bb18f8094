"""Suite ``generation``: greedy generation with and without the KV cache.

One randomly initialised GPT-2 small (:class:`attention.gpt.GPTConfig`'s
defaults, dropout off) generates the same new tokens from the same short
prompt twice with :func:`attention.gpt.generate_text_simple`: without a cache
(every step reruns the whole sequence, as in the book) and with
``use_cache=True`` (every step after the first feeds only the newest token).
The two must produce the same tokens. The cached run is cheap, so it is
repeated more often; the runs take turns as long as both have runs left.

FLOPs are summed step by step with
:func:`attention.complexity.generation_step_macs`. Peak memory is measured
for one step at the final length in each mode, next to the size of the KV
cache by formula (:func:`attention.complexity.kv_cache_bytes`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from attention.complexity import generation_step_macs, kv_cache_bytes
from attention.gpt import GPTConfig, GPTModel, generate_text_simple
from attention.kv_cache import KVCache
from benchmarks import common
from benchmarks.common import Record, Settings

MODES = {"uncached": "without the KV cache (recompute)", "cached": "with the KV cache"}


@dataclass(frozen=True)
class Plan:
    """What a mode measures."""

    config: GPTConfig
    prompt_tokens: int
    new_tokens: int
    cached_repeats: int
    uncached_repeats: int
    peak_gemm: int  # side of the square matrix product that measures peak FLOP/s


PLANS = {
    "full": Plan(GPTConfig(drop_rate=0.0), 4, 200, 3, 1, 2048),
    "quick": Plan(GPTConfig(drop_rate=0.0), 4, 20, 2, 1, 1024),
    "tiny": Plan(
        GPTConfig(
            vocab_size=50, context_length=32, emb_dim=16, n_heads=2, n_layers=2, drop_rate=0.0
        ),
        3,
        5,
        1,
        1,
        64,
    ),
}


def generation_flops(plan: Plan, *, use_cache: bool) -> int:
    """Model FLOPs of the whole generation, 2 per multiply-add, step by step.

    Step i sees ``prompt_tokens + i`` tokens. Without the cache every step
    reruns them all; with it the first step runs the prompt and each later
    step runs only the newest token.
    """
    c = plan.config
    total = 0
    for i in range(plan.new_tokens):
        tokens = plan.prompt_tokens + i
        total += generation_step_macs(
            n_layers=c.n_layers,
            d_model=c.emb_dim,
            vocab_size=c.vocab_size,
            context_length=tokens,
            use_cache=use_cache and i > 0,
        )
    return 2 * total


def describe(cfg: GPTConfig) -> str:
    """A short name for a model's sizes."""
    if cfg == GPTConfig(drop_rate=0.0):
        return "GPT-2 small (GPTConfig defaults)"
    return f"{cfg.n_layers} layers, width {cfg.emb_dim}, vocabulary {cfg.vocab_size}"


def step_memory(model: GPTModel, ids: torch.Tensor, *, use_cache: bool) -> int:
    """Peak bytes of the last step: the full rerun, or one token against a filled cache."""
    with torch.no_grad():
        if not use_cache:
            return common.peak_bytes(lambda: model(ids))
        cache = KVCache()
        model(ids[:, :-1], cache=cache)
        return common.peak_bytes(lambda: model(ids[:, -1:], cache=cache))


def run(settings: Settings) -> Record:
    """Run the suite; return its payload (also written to ``settings.out``)."""
    plan = PLANS[settings.mode]
    cfg = plan.config

    def measure(payload: Record) -> None:
        payload["settings"] = {"plan": asdict(plan), "modes": MODES}
        torch.manual_seed(123)
        model = GPTModel(cfg).eval()
        g = torch.Generator().manual_seed(0)
        prompt = torch.randint(0, cfg.vocab_size, (1, plan.prompt_tokens), generator=g)  # (B, T)
        outputs: dict[str, torch.Tensor] = {}

        def generate(mode: str) -> None:
            outputs[mode] = generate_text_simple(
                model, prompt, plan.new_tokens, cfg.context_length, use_cache=mode == "cached"
            )

        # No separate warm-up: the first, cached run warms up the shared model.
        runs = {mode: (lambda mode=mode: generate(mode)) for mode in ("cached", "uncached")}
        repeats = {"uncached": plan.uncached_repeats, "cached": plan.cached_repeats}
        times = common.time_interleaved(runs, repeats=repeats, warmup=False)
        common.progress("generation: timed")
        # exact: integer ids. The cache moves the logits by float32 rounding only (~1e-6),
        # so the ids agree unless a greedy step is a near tie (tests/test_gpt.py measures
        # the margins of the book's prompt).
        same = torch.equal(outputs["cached"], outputs["uncached"])
        if not same:
            raise AssertionError("generation with the KV cache gave other tokens than without")
        final = outputs["cached"][:, :-1]  # the ids the last step sees, (B, T)
        records = []
        for mode, label in MODES.items():
            use_cache = mode == "cached"
            flops = generation_flops(plan, use_cache=use_cache)
            record: Record = {"variant": mode, "label": label, **common.timing_fields(times[mode])}
            record["step_peak_bytes"] = step_memory(model, final, use_cache=use_cache)
            record.update(common.flop_fields(flops, record["min_s"]))
            record["seconds_per_token"] = record["min_s"] / plan.new_tokens
            records.append(record)
        payload["groups"] = [
            {
                "group": "generation",
                "shape": {
                    "prompt_tokens": plan.prompt_tokens,
                    "new_tokens": plan.new_tokens,
                    "parameters": sum(p.numel() for p in model.parameters()),
                },
                "model": describe(cfg),
                "baseline": "uncached",
                "same_tokens": same,
                "kv_cache_bytes": kv_cache_bytes(
                    n_layers=cfg.n_layers,
                    d_model=cfg.emb_dim,
                    context_length=plan.prompt_tokens + plan.new_tokens,
                ),
                "speedup": common.ratio(records[0]["min_s"], records[1]["min_s"]),
                "wall_speedup": common.ratio(records[0]["wall_min_s"], records[1]["wall_min_s"]),
                "records": records,
            }
        ]

    payload = common.run_suite("generation", settings, measure, peak_gemm=plan.peak_gemm)
    group = payload["groups"][0]
    payload["targets"] = [
        common.target(
            f"generation of {plan.new_tokens} tokens: time without / with the KV cache",
            group["speedup"],
            3.0,
            at_most=False,
            where=f"{group['model']}, prompt of {plan.prompt_tokens} tokens",
            wall=group["wall_speedup"],
        )
    ]
    print_tables(payload)
    print(common.peak_line(payload))
    common.write_json(payload, settings.out)
    return payload


def print_tables(payload: Record) -> None:
    """Print the two runs side by side."""
    group = payload["groups"][0]
    s = group["shape"]
    print(
        f"\n{s['new_tokens']} new tokens after a prompt of {s['prompt_tokens']}, "
        f"{s['parameters']:,} parameters; same tokens both ways: {group['same_tokens']}"
    )
    rows = [
        [
            r["label"],
            r["min_s"],
            r["median_s"],
            len(r["times_s"]),
            r["seconds_per_token"] * 1e3,
            r["flop_per_s"] / 1e9,
            100 * r["fraction_of_peak"],
            r["step_peak_bytes"] / 2**20,
        ]
        for r in group["records"]
    ]
    headers = ["", "min s", "median s", "runs", "ms/token", "GFLOP/s", "% peak", "last step MiB"]
    print(common.table(headers, rows))
    print(
        f"speed-up of the cache: {group['speedup']:.1f}x; KV cache at the end: "
        f"{group['kv_cache_bytes'] / 2**20:.1f} MiB (by formula)"
    )
