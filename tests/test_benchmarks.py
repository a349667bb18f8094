"""The benchmarks (``python -m benchmarks``) run, write what they promise and count FLOPs right.

Nothing here times anything: the suites run at toy sizes (``--tiny``) and
the tests check the files and the FLOP formulas, never a measured number.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch

from attention import MultiHeadAttention
from attention.complexity import (
    attention_macs_per_token,
    generation_step_macs,
    linear_macs_per_token,
)
from attention.gpt import GPTConfig
from benchmarks import generation, kernels, layers
from benchmarks.__main__ import SUITES, main
from benchmarks.common import table, time_interleaved, torch_threads
from tests.test_complexity import _macs

RECORD_KEYS = {"variant", "label", "times_s", "min_s", "median_s"}
# JSON gives back the Python floats that were written (repr round-trips). A field
# copied from another, or x / x, compares exactly; a ratio or sum recomputed here
# from the stored numbers is compared to the last few bits.
SAME_ARITHMETIC = 1e-12
SVGS = {
    "layers": ["layers.svg", "layers-memory.svg"],
    "kernels": ["kernels.svg"],
    "generation": ["generation.svg"],
    "imports": ["imports.svg"],
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ``python -m benchmarks --tiny`` run of every suite; its output folder."""
    out = tmp_path_factory.mktemp("bench")
    assert main(["--tiny", "--out", str(out)]) == 0
    return out


def _load(out: Path, suite: str) -> dict:
    return json.loads((out / f"{suite}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("suite", SUITES)
def test_every_suite_writes_json_with_the_common_schema(tiny_run, suite):
    payload = _load(tiny_run, suite)
    assert payload["suite"] == suite
    assert payload["schema_version"] == 1
    assert payload["mode"] == "tiny"
    machine = payload["machine"]
    for key in ("cpu", "logical_cpus", "usable_cpus", "torch", "python", "date", "finished"):
        assert machine[key], key
    assert machine["torch"] == torch.__version__
    assert machine["torch_threads"] == 1
    assert payload["groups"], "no measurements"
    assert payload["targets"], "no targets"
    for t in payload["targets"]:
        assert set(t) == {
            "target",
            "where",
            "measured",
            "wall_clock",
            "limit",
            "comparison",
            "passed",
        }
        assert isinstance(t["passed"], bool)
        expected = t["measured"] <= t["limit"] if t["comparison"] == "<=" else None
        if expected is not None:
            assert t["passed"] == expected


@pytest.mark.parametrize("suite", ["layers", "kernels", "generation"])
def test_flop_suites_record_a_measured_peak_and_fractions_of_it(tiny_run, suite):
    payload = _load(tiny_run, suite)
    peak = payload["peak"]
    assert "matrix product in this run" in peak["what"]
    # exact: the peak is one of the two numbers, copied
    assert peak["flop_per_s"] == max(peak["at_start"]["flop_per_s"], peak["at_end"]["flop_per_s"])
    timed = [r for g in payload["groups"] for r in g["records"] if "min_s" in r]
    assert timed
    for r in timed:
        assert set(r) >= RECORD_KEYS
        assert r["min_s"] == min(r["times_s"]) > 0  # exact: copied
        assert r["clock"] == "cpu"  # one thread: CPU time counts, wall-clock kept beside it
        assert r["times_s"] == r["cpu_times_s"]  # exact: the same list
        assert len(r["wall_times_s"]) == len(r["times_s"])
        assert r["flop_per_s"] == pytest.approx(r["flops"] / r["min_s"], rel=SAME_ARITHMETIC)
        assert r["fraction_of_peak"] == pytest.approx(
            r["flop_per_s"] / peak["flop_per_s"], rel=SAME_ARITHMETIC
        )


def test_layers_json_has_every_variant_both_passes_and_ratios_to_nn_multiheadattention(tiny_run):
    """Sweep ratios are to nn.MultiheadAttention on its SDPA path, targets to its eval mode."""
    payload = _load(tiny_run, "layers")
    sweep = [g for g in payload["groups"] if g["group"] == "sweep"]
    plan = layers.PLANS["tiny"]
    assert {(g["shape"]["tokens"], g["pass"]) for g in sweep} == {
        (t, p) for t in plan.sweep_tokens for p in layers.PASSES
    }
    for g in sweep:
        assert [r["variant"] for r in g["records"]] == layers.sweep_variants(g["pass"])
        assert g["baseline"] == "torch_sdpa"
        base = next(r for r in g["records"] if r["variant"] == "torch_sdpa")
        assert base["time_ratio"] == 1.0  # exact: x / x
        assert base["memory_ratio"] == 1.0
        for r in g["records"]:
            assert r["time_ratio"] == pytest.approx(r["min_s"] / base["min_s"], rel=SAME_ARITHMETIC)
            assert r["peak_bytes"] > 0
            assert r["flops"] == layers.layer_flops(layers.Shape(**g["shape"]), g["pass"])
    target = [g for g in payload["groups"] if g["group"] == "target"]
    assert [g["pass"] for g in target] == list(layers.PASSES)
    for g in target:
        assert g["baseline"] == "torch"
        names = [r["variant"] for r in g["records"]]
        assert names == ["sdpa", "torch"] + (["torch_sdpa"] if g["pass"] == "forward" else [])
        assert g["records"][1]["time_ratio"] == 1.0  # exact: x / x
        assert [p["part"] for p in g["parts"]] == list(layers.PARTS)
        assert g["parts_sum_s"] == pytest.approx(
            sum(p["min_s"] for p in g["parts"]), rel=SAME_ARITHMETIC
        )
        sdpa = g["records"][0]
        assert sdpa["variant"] == "sdpa"
        assert sdpa["parts_ratio"] == pytest.approx(
            sdpa["min_s"] / g["parts_sum_s"], rel=SAME_ARITHMETIC
        )
        assert all(d < 1e-4 for d in g["max_abs_difference"].values())


def test_kernels_json_compares_flash_and_the_formula_with_sdpa(tiny_run):
    payload = _load(tiny_run, "kernels")
    plan = kernels.PLANS["tiny"]
    sweep = [g for g in payload["groups"] if g["group"] == "sweep"]
    assert [g["shape"]["tokens"] for g in sweep] == list(plan.tokens)
    for g in sweep:
        names = [r["variant"] for r in g["records"]]
        assert names == ["sdpa", "flash", "naive"]
        base = g["records"][0]
        assert base["time_ratio"] == 1.0  # exact: x / x
        assert base["memory_ratio"] == 1.0
        for r in g["records"]:
            assert r["max_abs_difference"] < 1e-4
            assert r["flops"] == kernels.kernel_flops(plan, g["shape"]["tokens"])
    time_target, memory_target, both_target = payload["targets"]
    last = {r["variant"]: r for r in sweep[-1]["records"]}
    # exact: copied, and the same division of the same two integers
    assert time_target["measured"] == last["flash"]["time_ratio"]
    assert memory_target["measured"] == last["flash"]["peak_bytes"] / last["naive"]["peak_bytes"]
    (both,) = [g for g in payload["groups"] if g["pass"] == "forward+backward"]
    assert both["shape"]["tokens"] == plan.target_tokens
    by_name = {r["variant"]: r for r in both["records"]}
    assert list(by_name) == ["sdpa", "flash", "naive"]
    assert all(r["max_abs_difference"] < 1e-4 and r["peak_bytes"] > 0 for r in by_name.values())
    flash, naive = by_name["flash"]["peak_bytes"], by_name["naive"]["peak_bytes"]
    assert both_target["measured"] == flash / naive


def test_generation_json_has_both_modes_and_the_same_tokens(tiny_run):
    group = _load(tiny_run, "generation")["groups"][0]
    assert group["same_tokens"] is True
    assert [r["variant"] for r in group["records"]] == ["uncached", "cached"]
    uncached, cached = group["records"]
    assert group["speedup"] == pytest.approx(
        uncached["min_s"] / cached["min_s"], rel=SAME_ARITHMETIC
    )
    assert cached["flops"] < uncached["flops"]


def test_imports_json_reports_the_cost_and_no_heavy_modules(tiny_run):
    group = _load(tiny_run, "imports")["groups"][0]
    torch_only, both = group["records"]
    assert torch_only["added_modules"] == []
    assert "attention" in both["added_modules"]
    assert group["heavy_modules"] == []
    assert group["cost_s"] == both["after_torch"]["min_s"] > 0  # exact: copied


@pytest.mark.parametrize("suite", SUITES)
def test_every_suite_draws_svg_plots_without_a_date(tiny_run, suite):
    for name in SVGS[suite]:
        text = (tiny_run / name).read_text(encoding="utf-8")
        assert ET.fromstring(text).tag.endswith("svg")
        assert "<dc:date>" not in text


def test_replot_redraws_identical_svgs_from_the_json(tiny_run):
    """Plots depend on the JSON alone: redrawing them changes no byte."""
    names = [name for files in SVGS.values() for name in files]
    before = {name: (tiny_run / name).read_bytes() for name in names}
    for name in names:
        (tiny_run / name).unlink()
    assert main(["--replot", "--out", str(tiny_run)]) == 0
    assert {name: (tiny_run / name).read_bytes() for name in names} == before


def test_targets_json_gathers_every_suites_targets(tiny_run):
    summary = json.loads((tiny_run / "targets.json").read_text(encoding="utf-8"))
    suites = [t["suite"] for t in summary["targets"]]
    assert sorted(set(suites)) == sorted(SUITES)
    assert len(suites) == sum(len(_load(tiny_run, s)["targets"]) for s in SUITES)


def test_layer_flops_are_the_per_token_formulas_summed():
    shape = layers.Shape(batch=3, tokens=7, width=8, heads=2)
    attention = sum(attention_macs_per_token(8, t) for t in range(1, 8))  # token t sees t keys
    projections = 7 * linear_macs_per_token(8) // 3  # Q, K, V and out: 4 of the 12 d^2
    forward = 2 * 3 * (attention + projections)
    assert layers.layer_flops(shape, "forward") == forward
    assert layers.layer_flops(shape, "forward+backward") == 3 * forward
    parts = sum(layers.part_flops(p, shape, "forward") for p in layers.PARTS)
    assert parts == forward


def test_layer_flops_without_the_mask_equal_counted_operations_of_the_books_layer():
    """The book's layer computes every (query, key) score, masked or not."""
    b, t, c, h = 2, 5, 8, 2
    torch.manual_seed(0)
    layer = MultiHeadAttention(c, c, t, 0.0, h)
    x = torch.randn(b, t, c)
    causal_pairs = t * (t + 1) // 2
    masked_pairs = t * t - causal_pairs
    counted = _macs(lambda: layer(x))
    shape = layers.Shape(batch=b, tokens=t, width=c, heads=h)
    assert 2 * counted == layers.layer_flops(shape, "forward") + 2 * b * 2 * c * masked_pairs


def test_kernel_flops_are_the_causal_pairs():
    plan = kernels.PLANS["tiny"]
    d = plan.heads * plan.head_dim
    for t in plan.tokens:
        expected = 2 * plan.batch * sum(attention_macs_per_token(d, s) for s in range(1, t + 1))
        assert kernels.kernel_flops(plan, t) == expected


def test_generation_flops_sum_the_steps():
    cfg = GPTConfig(vocab_size=11, context_length=16, emb_dim=4, n_heads=2, n_layers=3)
    plan = generation.Plan(
        cfg, prompt_tokens=2, new_tokens=4, cached_repeats=1, uncached_repeats=1, peak_gemm=8
    )
    sizes = {"n_layers": 3, "d_model": 4, "vocab_size": 11}
    rerun = [generation_step_macs(**sizes, context_length=t, use_cache=False) for t in (2, 3, 4, 5)]
    cached = [rerun[0]] + [
        generation_step_macs(**sizes, context_length=t, use_cache=True) for t in (3, 4, 5)
    ]
    assert generation.generation_flops(plan, use_cache=False) == 2 * sum(rerun)
    assert generation.generation_flops(plan, use_cache=True) == 2 * sum(cached)


def test_time_interleaved_takes_turns_and_honours_per_candidate_repeats():
    calls = []
    times = time_interleaved(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
        repeats={"a": 3, "b": 1},
    )
    assert calls == ["a", "b", "a", "b", "a", "a"]  # warm-up a b, then a b, a, a
    assert [len(times["a"].times), len(times["b"].times)] == [3, 1]


def test_cpu_time_counts_on_one_thread_and_wall_clock_time_on_more():
    with torch_threads(1):
        one = time_interleaved({"sleep": lambda: time.sleep(0.01)}, repeats=2)["sleep"]
    with torch_threads(2):
        two = time_interleaved({"sleep": lambda: time.sleep(0.01)}, repeats=2)["sleep"]
    assert one.clock == "cpu"
    assert two.clock == "wall"
    # exact: best is the smallest time, copied; sleeping uses no CPU
    assert one.best == min(one.cpu) < 0.005
    assert two.best == min(two.wall) >= 0.01


def test_table_aligns_columns():
    text = table(["name", "x"], [["long name", 1.5], ["b", None]])
    lines = text.splitlines()
    assert len({len(line) for line in lines}) == 1
    assert lines[3].endswith("-")


def test_table_puts_text_columns_left_and_numbers_right():
    text = table(["target", "where", "value"], [["a", "B=8", 0.5], ["bb", "T=1024", 12.25]])
    header, rule, first, second = text.splitlines()
    assert first.index("B=8") == second.index("T=1024") == header.index("where")
    assert first.endswith("  0.5")
    assert second.endswith(" 12.2")
    assert len(first) == len(second) == len(rule)
