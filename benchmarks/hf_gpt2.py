"""Suite ``hf_gpt2``: GPTModel against Hugging Face transformers' GPT2LMHeadModel.

Run with ``python -m benchmarks.hf_gpt2`` after installing the benchmark extra
(``pip install -e '.[bench]'``); it is not one of ``python -m benchmarks``'s
default suites, so the package and its tests never need transformers.

One randomly initialised :class:`attention.gpt.GPTModel` (``qkv_bias=True``
and dropout off, so its parameters are exactly GPT-2's) is copied, weight by
weight, into a ``GPT2LMHeadModel`` of the same configuration with an untied
output head. Before anything is timed the two must agree: float32 logits
within 1e-4, and the same greedy ids. Then, in float32 and bfloat16, on the
CPU and on CUDA when present, the suite times

* the forward pass of a (B, T) batch of ids, and
* greedy generation with the KV cache: our :func:`attention.gpt.generate`
  (a preallocated cache and the unchecked decode step) against transformers'
  ``generate(do_sample=False)``,

for both of our attention paths (``attn_impl="manual"`` and ``"sdpa"``), with
transformers on its default SDPA attention. Each ratio divides our minimum
time by transformers' minimum measured in the same interleaved group; the
goal is at most 1.1.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from attention.gpt import AttnImpl, GPTConfig, GPTModel, generate
from benchmarks import common
from benchmarks.common import RESULTS, ROOT, Mode, Record, Settings

GOAL = 1.1  # ours / transformers, at most
IMPLS: tuple[AttnImpl, ...] = ("manual", "sdpa")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class Plan:
    """What a mode measures."""

    config: GPTConfig
    forward_shape: tuple[int, int]  # (B, T) of the forward pass
    prompt_tokens: int
    new_tokens: int
    repeats: int


_SMALL = GPTConfig(qkv_bias=True, drop_rate=0.0)  # GPT-2 small, GPT-2's biases
PLANS = {
    "full": Plan(_SMALL, (2, 128), 16, 32, 3),
    "quick": Plan(
        GPTConfig(context_length=256, n_layers=4, qkv_bias=True, drop_rate=0.0), (1, 64), 8, 16, 3
    ),
    "tiny": Plan(
        GPTConfig(
            vocab_size=50,
            context_length=32,
            emb_dim=16,
            n_heads=2,
            n_layers=2,
            drop_rate=0.0,
            qkv_bias=True,
        ),
        (2, 8),
        3,
        5,
        1,
    ),
}


def hf_model(model: GPTModel) -> nn.Module:
    """A ``GPT2LMHeadModel`` with ``model``'s configuration and a copy of its weights.

    GPT-2's ``Conv1D`` stores a weight as (in, out), the transpose of
    ``nn.Linear``'s; its attention stacks the query, key and value weights in
    one (C, 3C) matrix. The output head is left untied, as ours is. The
    copy loads with ``strict=True``: every parameter named, none left over.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    c = model.cfg
    if not c.qkv_bias:
        raise ValueError(
            "GPT-2 has query, key and value biases: build the model with qkv_bias=True"
        )
    config = GPT2Config(
        vocab_size=c.vocab_size,
        n_positions=c.context_length,
        n_embd=c.emb_dim,
        n_layer=c.n_layers,
        n_head=c.n_heads,
        activation_function="gelu_new",  # the tanh approximation, as attention.gpt.GELU
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        layer_norm_epsilon=1e-5,
        tie_word_embeddings=False,
        bos_token_id=None,  # no end-of-text id: generation runs every step
        eos_token_id=None,
    )
    hf: nn.Module = GPT2LMHeadModel(config)
    hf.load_state_dict(hf_state_dict(model), strict=True)
    hf.train(False)
    return hf


def hf_state_dict(model: GPTModel) -> dict[str, torch.Tensor]:
    """``model``'s weights under ``GPT2LMHeadModel``'s names and layouts."""
    ours = {name: t.detach() for name, t in model.state_dict().items()}
    out = {
        "transformer.wte.weight": ours["tok_emb.weight"],
        "transformer.wpe.weight": ours["pos_emb.weight"],
        "transformer.ln_f.weight": ours["final_norm.scale"],
        "transformer.ln_f.bias": ours["final_norm.shift"],
        "lm_head.weight": ours["out_head.weight"],
    }
    for i in range(model.cfg.n_layers):
        a, h = f"trf_blocks.{i}.", f"transformer.h.{i}."
        qkv = [ours[f"{a}att.W_{p}.weight"] for p in ("query", "key", "value")]  # 3 x (C, C)
        out |= {
            f"{h}ln_1.weight": ours[f"{a}norm1.scale"],
            f"{h}ln_1.bias": ours[f"{a}norm1.shift"],
            f"{h}ln_2.weight": ours[f"{a}norm2.scale"],
            f"{h}ln_2.bias": ours[f"{a}norm2.shift"],
            f"{h}attn.c_attn.weight": torch.cat(qkv).T.contiguous(),  # (C, 3C)
            f"{h}attn.c_attn.bias": torch.cat(
                [ours[f"{a}att.W_{p}.bias"] for p in ("query", "key", "value")]
            ),
            f"{h}attn.c_proj.weight": ours[f"{a}att.out_proj.weight"].T.contiguous(),
            f"{h}attn.c_proj.bias": ours[f"{a}att.out_proj.bias"],
            f"{h}mlp.c_fc.weight": ours[f"{a}ff.layers.0.weight"].T.contiguous(),  # (C, 4C)
            f"{h}mlp.c_fc.bias": ours[f"{a}ff.layers.0.bias"],
            f"{h}mlp.c_proj.weight": ours[f"{a}ff.layers.2.weight"].T.contiguous(),
            f"{h}mlp.c_proj.bias": ours[f"{a}ff.layers.2.bias"],
        }
    return out


def hf_generate(hf: nn.Module, ids: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """Transformers' greedy generation of exactly ``new_tokens`` tokens, with its cache."""
    out: torch.Tensor = hf.generate(  # type: ignore[operator]
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        use_cache=True,
        pad_token_id=0,
    )
    return out


def check_equal(model: GPTModel, hf: nn.Module, ids: torch.Tensor, plan: Plan) -> Record:
    """Raise unless the float32 copies agree; return the largest logit difference."""
    with torch.no_grad():
        ours, theirs = model(ids), hf(ids).logits
        diff = float((ours - theirs).abs().max())
        if diff > 1e-4:
            raise AssertionError(f"the copied weights give other logits: max |diff| {diff:.3g}")
        prompt = ids[:1, : plan.prompt_tokens]
        same = generate(model, prompt, plan.new_tokens).tolist() == (
            hf_generate(hf, prompt, plan.new_tokens).tolist()
        )
    if not same:
        raise AssertionError("greedy generation gave other ids than transformers'")
    return {"max_abs_logit_diff_float32": diff, "same_greedy_ids_float32": same}


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


def _synced(fn: Callable[[], object], device: torch.device) -> Callable[[], None]:
    """``fn`` followed by a CUDA synchronisation, so its time covers the GPU's work."""

    def run() -> None:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return run


def _tasks(
    models: dict[AttnImpl, GPTModel], hf: nn.Module, x: torch.Tensor, prompt: torch.Tensor, new: int
) -> dict[str, dict[str, Callable[[], object]]]:
    """Task -> candidate -> the function that runs it once."""

    def forward_of(m: nn.Module) -> Callable[[], object]:
        return lambda: m(x)

    def generate_of(m: GPTModel) -> Callable[[], object]:
        return lambda: generate(m, prompt, new)

    forward = {f"ours ({impl})": forward_of(models[impl]) for impl in IMPLS}
    forward["transformers"] = lambda: hf(x).logits
    greedy = {f"ours ({impl})": generate_of(models[impl]) for impl in IMPLS}
    greedy["transformers"] = lambda: hf_generate(hf, prompt, new)
    return {"forward": forward, "generate": greedy}


def measure_device(plan: Plan, device: torch.device) -> list[Record]:
    """Every (dtype, task) group on one device."""
    torch.manual_seed(123)
    models: dict[AttnImpl, GPTModel] = {
        impl: GPTModel(dataclasses.replace(plan.config, attn_impl=impl)).eval() for impl in IMPLS
    }
    models["sdpa"].load_state_dict(models["manual"].state_dict())
    hf = hf_model(models["manual"])
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, plan.config.vocab_size, plan.forward_shape, generator=g)
    groups: list[Record] = []
    checked = check_equal(models["manual"], hf, ids, plan)
    clock_wall = device.type == "cuda" or torch.get_num_threads() > 1
    for dtype_name, dtype in DTYPES.items():
        for m in (*models.values(), hf):
            m.to(device=device, dtype=dtype)
        x = ids.to(device)
        prompt = x[:1, : plan.prompt_tokens]
        tasks = _tasks(models, hf, x, prompt, plan.new_tokens)
        for task, candidates in tasks.items():
            with torch.no_grad():
                runs = {name: _synced(fn, device) for name, fn in candidates.items()}
                times = common.time_interleaved(runs, repeats=plan.repeats)
            common.progress(f"hf_gpt2: {device.type} {dtype_name} {task} timed")
            best = {n: (t.wall if clock_wall else t.times) for n, t in times.items()}
            reference = min(best["transformers"])
            records = []
            for name, timing in times.items():
                record: Record = {"variant": name, "label": name, **common.timing_fields(timing)}
                record["ratio_to_transformers"] = common.ratio(min(best[name]), reference)
                records.append(record)
            groups.append(
                {
                    "group": f"{device.type} {dtype_name} {task}",
                    "device": device.type,
                    "dtype": dtype_name,
                    "task": task,
                    "clock": "wall" if clock_wall else common.clock_for(torch.get_num_threads()),
                    "baseline": "transformers",
                    **checked,
                    "records": records,
                }
            )
    return groups


def run(settings: Settings) -> Record:
    """Run the suite; return its payload (also written to ``settings.out``)."""
    import transformers

    plan = PLANS[settings.mode]
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))

    def measure(payload: Record) -> None:
        payload["settings"] = {
            "plan": asdict(plan),
            "transformers": transformers.__version__,
            "devices": [d.type for d in devices],
            "note": (
                "measured on a machine shared with other work; times are minima of interleaved runs"
            ),
        }
        payload["groups"] = [g for d in devices for g in measure_device(plan, d)]

    payload = common.run_suite("hf_gpt2", settings, measure, peak_gemm=None)
    payload["targets"] = [
        common.target(
            f"{group['group']}: {record['variant']} / transformers",
            record["ratio_to_transformers"],
            GOAL,
            at_most=True,
            where=describe(plan),
        )
        for group in payload["groups"]
        for record in group["records"]
        if record["variant"] != "transformers"
    ]
    print_tables(payload)
    common.write_json(payload, settings.out)
    return payload


def describe(plan: Plan) -> str:
    """The sizes, in words."""
    c = plan.config
    b, t = plan.forward_shape
    return (
        f"{c.n_layers} layers, width {c.emb_dim}, vocabulary {c.vocab_size}; forward ({b}, {t}); "
        f"generate {plan.new_tokens} after {plan.prompt_tokens}"
    )


def print_tables(payload: Record) -> None:
    """One row per group: each candidate's minimum and our ratios."""
    rows = []
    for group in payload["groups"]:
        by = {r["variant"]: r for r in group["records"]}
        key = "wall_min_s" if group["clock"] == "wall" else "min_s"
        rows.append(
            [
                group["group"],
                by["transformers"][key] * 1e3,
                *(by[f"ours ({impl})"][key] * 1e3 for impl in IMPLS),
                *(by[f"ours ({impl})"]["ratio_to_transformers"] for impl in IMPLS),
            ]
        )
    headers = ["", "transformers ms", "manual ms", "sdpa ms", "manual / tf", "sdpa / tf"]
    print(common.table(headers, rows))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.hf_gpt2 [--quick | --tiny] [--out DIR] [--threads N]``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hf_gpt2", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a smoke run at smaller sizes")
    size.add_argument("--tiny", action="store_true", help="toy sizes, seconds (for the tests)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", type=Path, help="folder for the JSON file")
    args = parser.parse_args(argv)
    mode: Mode = "quick" if args.quick else "tiny" if args.tiny else "full"
    out = args.out or (RESULTS if mode == "full" else ROOT / "_build" / "benchmarks" / mode)
    started = time.perf_counter()
    run(Settings(mode=mode, threads=args.threads, out=out))
    print(f"{(time.perf_counter() - started) / 60:.1f} min; wrote {out / 'hf_gpt2.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
