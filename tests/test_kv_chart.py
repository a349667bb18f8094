"""The KV-cache chart carries kv_budget's own numbers, and its fallback table prints them.

Pure integer arithmetic: no tensors, so no `device` fixture; equalities of ints are exact.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from attention.kv_budget import (
    DEEPSEEK_V3,
    GEMMA3_27B,
    GPT_OSS_120B,
    LLAMA3_8B,
    PUBLISHED,
    KVLayout,
    as_mha,
    cache_bytes,
    cache_bytes_curve,
)
from attention.kv_chart import (
    VARIANTS,
    context_grid,
    describe,
    format_bytes,
    kv_budget_chart,
    kv_budget_figure,
    kv_chart_data,
    kv_variants,
)
from attention.shapes import PALETTE
from attention.widgets import PORTABLE_END, PORTABLE_START, STATIC, inline_script

GIB = 2**30
T128K = 131_072


def _payload(html: str) -> dict:
    found = re.search(r'<script type="application/json" class="attn-data">(.*?)</script>', html,
                      flags=re.S)  # fmt: skip
    assert found
    return json.loads(found.group(1))


def _fallback(html: str) -> str:
    part = html[html.index(PORTABLE_START) : html.index(PORTABLE_END)]
    found = re.search(r'<div class="attn-fallback">(.*?)</div><script', part, flags=re.S)
    assert found
    return found.group(1)


@pytest.fixture(scope="module")
def chart_html() -> str:
    return kv_budget_chart().to_html()


# -- The embedded numbers are kv_budget's --------------------------------------------------


def test_the_embedded_json_is_cache_bytes_curve_of_every_variant(chart_html):
    data = _payload(chart_html)
    tokens = data["tokens"]
    assert [m["name"] for m in data["models"]] == [lay.name for lay in PUBLISHED]
    for model, layout in zip(data["models"], PUBLISHED, strict=True):
        variants = kv_variants(layout)
        assert [v["id"] for v in model["variants"]] == list(variants)
        for entry in model["variants"]:
            expected = cache_bytes_curve(variants[entry["id"]], tokens)
            assert entry["bytes"] == expected  # exact: the same ints
            assert entry["detail"] == describe(variants[entry["id"]])
    assert data["variants"] == [{"id": k, "label": label} for k, label in VARIANTS]
    assert (data["dtypeBytes"], data["batchSize"]) == (2, 1)


def test_book_numbers_at_128k_tokens(chart_html):
    data = _payload(chart_html)
    assert data["tokens"][-1] == T128K
    last = {(m["name"], v["id"]): v["bytes"][-1] for m in data["models"] for v in m["variants"]}
    # By hand, as in tests/test_kv_budget.py: K and V * layers * KV heads * width * 2 bytes * T.
    assert last["Llama 3 8B", "published"] == 2 * 32 * 8 * 128 * 2 * T128K == 16 * GIB
    assert last["Llama 3 8B", "mha"] == 64 * GIB
    assert last["Llama 3 8B", "mqa"] == 2 * GIB
    assert last["DeepSeek-V3", "published"] == 61 * (512 + 64) * 2 * T128K
    assert last["DeepSeek-V3", "mqa"] == 61 * 2 * 128 * 2 * T128K  # MLA: 2.25 times this
    assert last["Gemma 3 27B", "global"] == 2 * 62 * 16 * 128 * 2 * T128K == 62 * GIB
    assert last["Gemma 3 27B", "mha"] == 124 * GIB
    assert last["gpt-oss-120b", "global"] == 2 * 36 * 8 * 64 * 2 * T128K == 9 * GIB


def test_the_options_reach_cache_bytes():
    data = kv_chart_data([GEMMA3_27B], max_tokens=4096, dtype_bytes=4, batch_size=3)
    float32 = dataclasses.replace(GEMMA3_27B, dtype_bytes=4)
    for entry in data["models"][0]["variants"]:
        variant = kv_variants(float32)[entry["id"]]
        assert variant.dtype_bytes == 4
        assert entry["bytes"] == cache_bytes_curve(variant, data["tokens"], batch_size=3)
    published = data["models"][0]["variants"][0]["bytes"][-1]
    assert published == 3 * 2 * cache_bytes(GEMMA3_27B, context_length=4096)  # 3 sequences, 4 B
    assert (data["dtypeBytes"], data["batchSize"]) == (4, 3)
    assert data["models"][0]["colour"] == PALETTE[0]


def test_the_json_stays_small(chart_html):
    payload = re.search(r'class="attn-data">(.*?)</script>', chart_html, flags=re.S)
    assert payload
    assert len(payload.group(1)) < 12_000  # a few dozen points a line


# -- The variants ----------------------------------------------------------------------------


def test_each_model_offers_the_variants_it_can_differ_by():
    offered = {lay.name: list(kv_variants(lay)) for lay in PUBLISHED}
    assert offered == {
        "Llama 3 8B": ["published", "mqa", "mha"],
        "Qwen3-8B": ["published", "mqa", "mha"],
        "DeepSeek-V3": ["published", "mqa", "mha"],
        "Gemma 3 27B": ["published", "global", "mqa", "mha"],
        "gpt-oss-120b": ["published", "global", "mqa", "mha"],
    }


def test_each_variant_changes_one_thing():
    gemma = kv_variants(GEMMA3_27B)
    assert gemma["published"] is GEMMA3_27B
    assert gemma["global"] == dataclasses.replace(
        GEMMA3_27B, name="Gemma 3 27B, every layer global", window=None, local_per_global=None
    )
    assert gemma["mqa"] == dataclasses.replace(GEMMA3_27B, name="Gemma 3 27B with MQA",
                                               n_kv_heads=1)  # fmt: skip
    assert gemma["mha"] == as_mha(GEMMA3_27B)
    deepseek = kv_variants(DEEPSEEK_V3)["mqa"]
    assert (deepseek.latent_dim, deepseek.rope_dim, deepseek.n_kv_heads) == (None, 0, 1)


def test_a_variant_that_caches_what_another_does_is_left_out():
    mha = KVLayout(name="plain", n_layers=2, n_heads=4, head_dim=8)
    assert list(kv_variants(mha)) == ["published", "mqa"]
    mqa = KVLayout(name="one head", n_layers=2, n_heads=4, n_kv_heads=1, head_dim=8)
    assert list(kv_variants(mqa)) == ["published", "mha"]
    single = KVLayout(name="single", n_layers=2, n_heads=1, head_dim=8)
    assert list(kv_variants(single)) == ["published"]


def test_describe_says_what_each_layout_caches():
    assert describe(LLAMA3_8B) == "GQA, 8 KV heads for 32 query heads; all 32 layers global"
    assert describe(DEEPSEEK_V3) == (
        "MLA, a latent of 512 and a RoPE key of 64; all 61 layers global"
    )
    assert describe(GPT_OSS_120B).endswith("1 local layer (window 128) per global one")
    assert describe(as_mha(LLAMA3_8B)) == "MHA, 32 KV heads; all 32 layers global"
    local = KVLayout(n_layers=4, n_kv_heads=1, window=16, share_every=2)
    assert describe(local) == (
        "MQA, 1 KV head for 12 query heads; all 4 layers local (window 16); "
        "layers share a cache in groups of 2"
    )


# -- The grid and the curves -----------------------------------------------------------------


def test_the_grid_is_log_spaced_with_every_power_of_two_and_every_window(chart_html):
    tokens = _payload(chart_html)["tokens"]
    assert tokens[0] == 64
    assert tokens[-1] == T128K
    assert tokens == sorted(set(tokens))
    assert {2**k for k in range(6, 18)} <= set(tokens)
    assert {128, 1024} <= set(tokens)  # gpt-oss's and Gemma 3's windows: where curves bend
    assert 30 <= len(tokens) <= 40
    ratios = [b / a for a, b in itertools.pairwise(tokens)]
    assert max(ratios) == pytest.approx(2 ** (1 / 3), abs=0.02)


@given(
    low=st.integers(1, 500),
    span=st.integers(1, 100_000),
    steps=st.integers(1, 6),
    extra=st.lists(st.integers(1, 200_000), max_size=3),
)
def test_context_grid_properties(low, span, steps, extra):
    high = low + span
    grid = context_grid(high, min_tokens=low, per_doubling=steps, extra=extra)
    assert grid[0] == low
    assert grid[-1] == high
    assert all(a < b for a, b in itertools.pairwise(grid))
    assert {e for e in extra if low < e < high} <= set(grid)


@pytest.mark.parametrize("layout", PUBLISHED, ids=lambda lay: lay.name)
def test_every_curve_grows_and_mha_is_never_smaller(layout):
    data = kv_chart_data([layout])
    curves = {v["id"]: v["bytes"] for v in data["models"][0]["variants"]}
    for key, curve in curves.items():
        assert all(a <= b for a, b in itertools.pairwise(curve)), key
        assert curve[0] > 0
    for key, curve in curves.items():
        assert all(m >= c for m, c in zip(curves["mha"], curve, strict=True)), key


def test_local_layers_bend_the_curve_at_their_window():
    tokens = kv_chart_data([GEMMA3_27B])["tokens"]
    curve = kv_chart_data([GEMMA3_27B])["models"][0]["variants"][0]["bytes"]
    at = {t: b for t, b in zip(tokens, curve, strict=True)}
    per_token_and_layer = 2 * 16 * 128 * 2
    # Up to the window all 62 layers grow; past it only the 10 global ones.
    assert at[1024] - at[512] == 62 * per_token_and_layer * 512
    assert at[4096] - at[2048] == 10 * per_token_and_layer * 2048


# -- Printing sizes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 bytes"), (1023, "1023 bytes"), (1024, "1.00 KiB"), (70_272, "68.6 KiB"),
     (9 * GIB // 2, "4.50 GiB"), (16 * GIB, "16.0 GiB"), (124 * GIB, "124 GiB"),
     (1023 * 2**20, "1023 MiB"), (2**40, "1.00 TiB"), (2**50, "1024 TiB"),
     (5 * 2**20 // 2, "2.50 MiB")],
)  # fmt: skip
def test_format_bytes(n, text):
    assert format_bytes(n) == text


def test_format_bytes_rounds_halves_up_as_javascript_does():
    # Each size is an exact tie in binary; Python's format rounds it to even instead.
    assert format_bytes(201 * GIB // 2) == "101 GiB"  # 100.5; f"{100.5:.0f}" gives "100"
    assert format_bytes(41 * GIB // 4) == "10.3 GiB"  # 10.25; f"{10.25:.1f}" gives "10.2"
    assert format_bytes(9 * GIB // 8) == "1.13 GiB"  # 1.125; f"{1.125:.2f}" gives "1.12"


@given(n=st.integers(1024, 2**50))
def test_format_bytes_is_within_half_a_unit_of_the_last_digit(n):
    number, unit = format_bytes(n).split()
    power = ["KiB", "MiB", "GiB", "TiB"].index(unit) + 1
    exact = Fraction(n, 1024**power)
    decimals = len(number.partition(".")[2])
    assert abs(Fraction(number) - exact) <= Fraction(1, 2 * 10**decimals)
    assert 1 <= exact < 1024 or unit == "TiB"


# -- The static fallback table ----------------------------------------------------------------


def test_the_fallback_tables_print_the_same_numbers(chart_html):
    data = _payload(chart_html)
    fallback = _fallback(chart_html)
    assert fallback.count("<table") == len(PUBLISHED)
    tables = re.findall(r"<table.*?</table>", fallback, flags=re.S)
    rows_at = [i for i, t in enumerate(data["tokens"]) if t & (t - 1) == 0]  # powers of two
    for table, model in zip(tables, data["models"], strict=True):
        assert f"<caption>{model['name']}: KV cache of 1 sequence" in table
        heads = re.findall(r'<th scope="col"[^>]*>([^<]*)</th>', table)
        labels = dict(VARIANTS)
        assert heads == ["context (tokens)"] + [labels[v["id"]] for v in model["variants"]]
        rows = re.findall(r"<tr><th scope=\"row\"[^>]*>([^<]*)</th>(.*?)</tr>", table)
        assert [int(t.replace(",", "")) for t, _ in rows] == [data["tokens"][i] for i in rows_at]
        for i, (_, cells) in zip(rows_at, rows, strict=True):
            printed = re.findall(r"<td[^>]*>([^<]*)</td>", cells)
            assert printed == [format_bytes(v["bytes"][i]) for v in model["variants"]]
    assert "<script" not in fallback
    assert "<style" not in fallback  # inline styles only: they survive a sanitiser


def test_a_grid_that_ends_between_powers_of_two_keeps_its_last_row():
    html = kv_budget_chart([LLAMA3_8B], max_tokens=100_000).to_html()
    rows = re.findall(r'<th scope="row"[^>]*>([^<]*)</th>', _fallback(html))
    assert rows[-2:] == ["65,536", "100,000"]


# -- The widget -----------------------------------------------------------------------------


def test_the_widget_is_a_kv_budget_chart_that_carries_its_script(chart_html):
    assert chart_html.startswith('<div class="attn-widget" data-attn-kind="kv-budget"')
    assert 'aria-label="KV-cache size against context length, by model and variant"' in chart_html
    assert inline_script("attention-kv-budget") in chart_html
    assert inline_script("attention-engine") in chart_html
    book = kv_budget_chart().to_html(portable=False)
    assert "attn-fallback" not in book
    assert _payload(book) == _payload(chart_html)


def test_the_script_draws_and_prints_but_computes_no_cache():
    script = (STATIC / "attention-kv-budget.js").read_text(encoding="utf-8")
    assert "if (window.AttentionKV) {" in script
    assert "window.AttentionEngine" in script
    # It reads sizes from the data; no field of a layout reaches it.
    for field in ("n_kv_heads", "head_dim", "n_layers", "latent_dim", "window"):
        assert field not in script.replace("window.", ""), field
    assert (STATIC / "attention-kv-budget.css").is_file()


# -- The static figure ----------------------------------------------------------------------


def test_the_figure_draws_the_same_numbers():
    figure = kv_budget_figure([LLAMA3_8B, GEMMA3_27B], variants=("published", "global"),
                              max_tokens=8192)  # fmt: skip
    data = kv_chart_data([LLAMA3_8B, GEMMA3_27B], max_tokens=8192)
    (ax,) = figure.axes
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == [
        "Llama 3 8B, As published",
        "Gemma 3 27B, As published",
        "Gemma 3 27B, Every layer global",
    ]
    assert np.asarray(lines[0].get_xdata()).tolist() == data["tokens"]
    expected = data["models"][1]["variants"][1]["bytes"]
    assert np.asarray(lines[2].get_ydata()).tolist() == expected
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["64", "256", "1,024", "4,096"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0.001", "0.01", "0.1", "1", "10"]
    assert ax.get_yticks()[3] == GIB  # exact: 10.0**0 * 2**30, the tick labelled 1


# -- Bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"models": []}, ValueError, r"models must be a non-empty sequence of KVLayout, got \[\]"),
        ({"models": "Llama"}, ValueError, r"models must be a non-empty sequence of KVLayout"),
        ({"models": [LLAMA3_8B, {"n_layers": 2}]}, TypeError,
         r"models\[1\] must be a KVLayout, got dict"),
        ({"models": [LLAMA3_8B, LLAMA3_8B]}, ValueError,
         r"models must have distinct names, got 'Llama 3 8B' twice"),
        ({"max_tokens": 0}, ValueError, r"max_tokens must be a positive int, got 0"),
        ({"max_tokens": 64}, ValueError, r"max_tokens must be larger than min_tokens=64, got 64"),
        ({"max_tokens": 1e5}, TypeError, r"max_tokens must be a positive int, got float 100000\.0"),
        ({"min_tokens": -1}, ValueError, r"min_tokens must be a positive int, got -1"),
        ({"per_doubling": 0}, ValueError, r"per_doubling must be a positive int, got 0"),
        ({"dtype_bytes": "2"}, TypeError, r"dtype_bytes must be a positive int, got str '2'"),
        ({"batch_size": True}, TypeError, r"batch_size must be a positive int, got bool True"),
    ],
)  # fmt: skip
def test_bad_input_names_the_argument(kwargs, error, message):
    with pytest.raises(error, match=message):
        kv_budget_chart(**kwargs)


def test_bad_calls_of_the_helpers_name_the_argument():
    with pytest.raises(TypeError, match=r"layout must be a KVLayout, got NoneType"):
        kv_variants(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"layout must be a KVLayout, got str"):
        describe("Llama")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"extra\[1\] must be a positive int, got 0"):
        context_grid(1000, extra=(128, 0))
    with pytest.raises(ValueError, match=r"n must be an int >= 0, got -1"):
        format_bytes(-1)
    with pytest.raises(ValueError, match=r"variants must be a non-empty sequence of ids from"):
        kv_budget_figure(variants=("gqa",))
    with pytest.raises(ValueError, match=r"variants must be a non-empty sequence of ids from"):
        kv_budget_figure(variants="mha")
