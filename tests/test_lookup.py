"""Chapter 2: a soft lookup blends values; the hard lookup picks one."""

from __future__ import annotations

import re

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from attention.lookup import (
    COLOURS,
    Swatches,
    colour_table,
    hard_lookup,
    hex_to_rgb,
    lookup_scores,
    rgb_to_hex,
    soft_lookup,
    swatches,
)
from tests.conftest import random_tensor

NAMES, RGB = colour_table()
YELLOW, GOLD = hex_to_rgb("#FFFF00"), hex_to_rgb("#FFD700")
temperatures = st.floats(1e-3, 1e3)
fractions = st.floats(0.0, 1.0)


def test_hex_round_trip_for_every_colour():
    for code in COLOURS.values():
        assert rgb_to_hex(hex_to_rgb(code)) == code
    assert hex_to_rgb("#ffd700").mul(255).round().tolist() == [255.0, 215.0, 0.0]
    assert rgb_to_hex(torch.tensor([1.00001, 0.5, -0.00001])) == "#FF8000"  # rounding is clipped


def test_colour_table_order_and_subsets():
    assert tuple(COLOURS) == NAMES
    assert RGB.shape == (len(COLOURS), 3)
    names, rgb = colour_table(["gold", "yellow"])
    assert names == ("gold", "yellow")
    assert torch.equal(rgb, torch.stack((GOLD, YELLOW)))  # exact: the same hex_to_rgb, copied


@pytest.mark.parametrize("similarity", ["distance", "dot"])
def test_hard_lookup_weights_are_one_hot(similarity):
    weights, value = hard_lookup(RGB[0], RGB, RGB, similarity=similarity)
    assert weights.sum() == 1  # exact: a one-hot vector
    assert set(weights.tolist()) == {0.0, 1.0}
    # exact: the value is a row of the table, picked by indexing
    assert torch.equal(value, RGB[int(weights.argmax())])


@pytest.mark.parametrize("name", list(COLOURS))
def test_hard_lookup_of_an_exact_key_returns_its_value(name):
    weights, value = hard_lookup(hex_to_rgb(COLOURS[name]), RGB, RGB)
    assert NAMES[int(weights.argmax())] == name
    assert rgb_to_hex(value) == COLOURS[name]


def test_dot_product_lookup_prefers_long_keys():
    """With the dot product, gold's nearest key is yellow: it is longer."""
    weights, _ = hard_lookup(GOLD, RGB, RGB, similarity="dot")
    assert NAMES[int(weights.argmax())] == "yellow"
    scores = lookup_scores(GOLD, RGB, similarity="dot")
    assert torch.allclose(scores, RGB @ GOLD, atol=1e-6, rtol=0)


def test_golden_values_for_a_query_between_yellow_and_gold():
    """The numbers chapter 2 shows, at temperature 0.1."""
    weights, value = soft_lookup((YELLOW + GOLD) / 2, RGB, RGB, temperature=0.1)
    expected = [0.0001, 0.2002, 0.3999, 0.3999, 0.0, 0.0, 0.0, 0.0]
    assert torch.allclose(weights, torch.tensor(expected), atol=1e-4)
    assert rgb_to_hex(value) == "#FFDD00"


@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 8), t=temperatures)
def test_weights_are_positive_and_sum_to_one(seed, n, t):
    keys, values = random_tensor(seed, n, 3), random_tensor(seed + 1, n, 2)
    for similarity in ("distance", "dot"):
        weights, value = soft_lookup(
            random_tensor(seed + 2, 3), keys, values, temperature=t, similarity=similarity
        )
        assert weights.shape == (n,)
        assert value.shape == (2,)
        assert torch.isclose(weights.sum(), torch.tensor(1.0), atol=1e-5)
        assert (weights >= 0).all()


@given(seed=st.integers(0, 2**31 - 1), m=st.integers(1, 4))
def test_several_queries_at_once_equal_one_at_a_time(seed, m):
    queries = random_tensor(seed, m, 3)
    weights, values = soft_lookup(queries, RGB, RGB, temperature=0.5)
    assert weights.shape == (m, len(NAMES))
    assert values.shape == (m, 3)
    for i in range(m):
        one = soft_lookup(queries[i], RGB, RGB, temperature=0.5)
        assert torch.allclose(weights[i], one.weights, atol=1e-6)
        assert torch.allclose(values[i], one.value, atol=1e-6)


@given(seed=st.integers(0, 2**31 - 1))
def test_temperature_to_zero_approaches_the_hard_lookup(seed):
    query = random_tensor(seed, 3).sigmoid()
    hard = hard_lookup(query, RGB, RGB)
    scores = lookup_scores(query, RGB).sort(descending=True).values
    gap = float(scores[0] - scores[1])  # how far the runner-up is behind
    soft = soft_lookup(query, RGB, RGB, temperature=gap / 50)
    assert torch.allclose(soft.weights, hard.weights, atol=1e-4 * len(NAMES))
    assert torch.allclose(soft.value, hard.value, atol=1e-3)


def test_a_tiny_temperature_gives_no_nan():
    weights, _ = soft_lookup(GOLD * 0.9, RGB, RGB, temperature=1e-30)
    assert not weights.isnan().any()
    # exact: divided by 1e-30 the scores lie so far apart that exp underflows to 0 for all
    # but the best, which gets exp(0) = 1
    assert torch.equal(weights, hard_lookup(GOLD * 0.9, RGB, RGB).weights)


@given(seed=st.integers(0, 2**31 - 1))
def test_temperature_to_infinity_approaches_the_mean(seed):
    query = random_tensor(seed, 3)
    weights, value = soft_lookup(query, RGB, RGB, temperature=1e6)
    assert torch.allclose(weights, torch.full((len(NAMES),), 1 / len(NAMES)), atol=1e-5)
    assert torch.allclose(value, RGB.mean(dim=0), atol=1e-5)


@given(f=fractions, t=temperatures)
def test_a_query_between_yellow_and_gold_blends_between_them(f, t):
    _, keys = colour_table(["yellow", "gold"])
    query = f * YELLOW + (1 - f) * GOLD
    _, value = soft_lookup(query, keys, keys, temperature=t)
    low, high = torch.minimum(YELLOW, GOLD), torch.maximum(YELLOW, GOLD)
    assert ((value >= low - 1e-6) & (value <= high + 1e-6)).all()  # every channel in between


def test_the_blend_moves_towards_the_nearer_key():
    _, keys = colour_table(["yellow", "gold"])
    near_yellow = soft_lookup(0.8 * YELLOW + 0.2 * GOLD, keys, keys, temperature=0.01)
    near_gold = soft_lookup(0.2 * YELLOW + 0.8 * GOLD, keys, keys, temperature=0.01)
    assert near_yellow.weights[0] > 0.5 > near_gold.weights[0]
    assert near_yellow.value[1] > near_gold.value[1]  # green: 255 for yellow, 215 for gold


def test_swatches_html():
    row = swatches(torch.stack((YELLOW, hex_to_rgb("#000080"))), ["yellow", "<navy>"], title="T")
    page = row.to_html()
    assert row._repr_html_() == page
    assert page.startswith('<div class="attn-swatches" role="group" aria-label="T"')
    assert page.count('role="img"') == 2
    assert 'aria-label="yellow: #FFFF00"' in page
    assert 'title="yellow: #FFFF00"' in page
    assert "&lt;navy&gt;" in page
    assert "<navy>" not in page
    assert "background:#FFFF00;color:#000000" in page  # dark text on a light swatch
    assert "background:#000080;color:#FFFFFF" in page  # light text on a dark one
    assert not re.search(r"(src|href)=", page)  # no external assets
    assert repr(row) == "Swatches('T': yellow=#FFFF00, <navy>=#000080)"


def test_swatches_default_labels_are_the_codes():
    row = swatches(["#ffd700"])
    assert isinstance(row, Swatches)
    assert row.codes == row.labels == ("#FFD700",)


def test_bad_input():
    with pytest.raises(ValueError, match=r"code must be '#' and six hex digits.*got 'FFD700'"):
        hex_to_rgb("FFD700")
    with pytest.raises(TypeError, match=r"code must be a str.*got int"):
        hex_to_rgb(0xFFD700)
    with pytest.raises(ValueError, match=r"rgb must have entries in \[0, 1\]"):
        rgb_to_hex(torch.tensor([1.5, 0.0, 0.0]))
    with pytest.raises(ValueError, match=r"rgb must have last dimension channels=3, got 4"):
        rgb_to_hex(torch.zeros(4))
    with pytest.raises(ValueError, match=r"names must be a non-empty list.*unknown: \['mauve'\]"):
        colour_table(["gold", "mauve"])
    with pytest.raises(TypeError, match=r"names must be a sequence of colour names"):
        colour_table("gold")
    with pytest.raises(ValueError, match=r"temperature must be positive and finite, got 0"):
        soft_lookup(GOLD, RGB, RGB, temperature=0)
    with pytest.raises(ValueError, match=r"temperature must be positive and finite, got inf"):
        soft_lookup(GOLD, RGB, RGB, temperature=float("inf"))
    with pytest.raises(TypeError, match=r"temperature must be a positive float, got str"):
        soft_lookup(GOLD, RGB, RGB, temperature="hot")
    with pytest.raises(ValueError, match=r"keys must have last dimension query's d_k=3, got 2"):
        soft_lookup(GOLD, RGB[:, :2], RGB)
    with pytest.raises(ValueError, match=r"values must have one row per key \(8\), got 7 rows"):
        soft_lookup(GOLD, RGB, RGB[:7])
    with pytest.raises(ValueError, match=r"query must have shape \(d_k,\) or \(M, d_k\)"):
        hard_lookup(torch.zeros(1, 1, 3), RGB, RGB)
    with pytest.raises(TypeError, match=r"query and keys must share a dtype"):
        soft_lookup(GOLD.double(), RGB, RGB)
    with pytest.raises(ValueError, match=r"similarity must be 'distance' or 'dot', got 'cosine'"):
        lookup_scores(GOLD, RGB, similarity="cosine")
    with pytest.raises(ValueError, match=r"labels must be a sequence of 2 labels, got 1 labels"):
        swatches(["#FFFF00", "#FFD700"], ["yellow"])
    with pytest.raises(TypeError, match=r"colours must be a list of hex codes"):
        swatches("#FFFF00")
    with pytest.raises(ValueError, match=r"code must be '#' and six hex digits"):
        swatches(["yellow"])
