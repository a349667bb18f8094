"""The head split's layout data: torch's own strides, contiguity and offsets."""

from __future__ import annotations

import itertools
import re

import pytest
import torch

from attention.tensor_layout import DEFAULT_SIZES, layout_steps, layout_widget
from attention.widgets import STATIC, inline_script

SIZES = [(1, 3, 2, 2), (2, 3, 2, 2), (1, 4, 2, 3), (3, 1, 4, 1), (2, 2, 1, 3)]


def _reference(b: int, t: int, h: int, d: int) -> dict[str, torch.Tensor]:
    x = torch.randn(b, t, h * d)
    return {
        "x": x,
        "view": x.view(b, t, h, d),
        "transpose": x.view(b, t, h, d).transpose(1, 2),
        "wrong": x.view(b, h, t, d),
    }


@pytest.mark.parametrize("sizes", SIZES)
def test_each_step_reports_what_torch_reports(sizes):
    reference = _reference(*sizes)
    steps = layout_steps(*sizes)
    assert [s["name"] for s in steps] == list(reference)
    for step in steps:
        y = reference[step["name"]]
        assert step["shape"] == list(y.shape)
        assert step["stride"] == list(y.stride())
        assert step["contiguous"] == y.is_contiguous()


@pytest.mark.parametrize("sizes", SIZES)
def test_offsets_locate_every_element_in_memory(sizes):
    reference = _reference(*sizes)
    memory = reference["x"].flatten()
    for step in layout_steps(*sizes):
        y = reference[step["name"]]
        # The element at each index, read from memory at the recorded offset.
        read = memory[torch.tensor(step["offsets"])]
        assert torch.equal(read, y.flatten())  # exact: the same stored numbers, gathered
        expected = [
            sum(i * s for i, s in zip(index, y.stride(), strict=True))
            for index in itertools.product(*map(range, y.shape))
        ]
        assert step["offsets"] == expected


def test_transpose_is_the_only_non_contiguous_step_and_view_alone_mixes_tokens():
    b, t, h, d = 1, 3, 2, 2
    steps = {s["name"]: s for s in layout_steps(b, t, h, d)}
    assert [n for n, s in steps.items() if not s["contiguous"]] == ["transpose"]
    c = h * d

    def token_head(offset: int) -> tuple[int, int]:
        return offset // c % t, offset % c // d

    # (B, H, T, D) read in order: block = head, row = token.
    grid = itertools.product(range(h), range(t), range(d))
    right = [token_head(o) for o in steps["transpose"]["offsets"]]
    wrong = [token_head(o) for o in steps["wrong"]["offsets"]]
    assert right == [(tok, head) for head, tok, _ in grid]
    assert wrong != right
    assert wrong[d] == (0, 1)  # head 0's "token 1" holds token 0's head-1 features


@pytest.mark.parametrize(
    ("args", "name"),
    [((0, 3, 2, 2), "batch"), ((1, -1, 2, 2), "tokens"), ((1, 3, 2.0, 2), "heads"),
     ((1, 3, 2, True), "d_head")],
)  # fmt: skip
def test_bad_sizes_name_the_argument(args, name):
    with pytest.raises((TypeError, ValueError), match=rf"^{name} must be a positive int"):
        layout_steps(*args)


def test_widget_carries_every_choice_and_refuses_big_or_bad_sizes():
    widget = layout_widget()
    assert widget.kind == "layout"
    assert [tuple(c["sizes"].values()) for c in widget.data["cases"]] == list(DEFAULT_SIZES)
    with pytest.raises(ValueError, match=r"sizes must hold at most 48 elements.*\(2, 4, 2, 4\)"):
        layout_widget([(2, 4, 2, 4)])
    with pytest.raises(ValueError, match=r"sizes must hold \(B, T, H, d_head\) tuples, got \(1,"):
        layout_widget([(1, 2)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"sizes must be a non-empty sequence"):
        layout_widget([])


def test_widget_carries_its_script_and_stylesheet():
    part = layout_widget().to_html()
    assert part.count('<script class="attn-script">') == 2  # the engine, then its own
    assert inline_script("attention-engine") + inline_script("attention-layout") in part
    script = (STATIC / "attention-layout.js").read_text(encoding="utf-8")
    assert "if (window.AttentionLayout) {" in script
    assert re.search(r"<th>is_contiguous\(\)</th>", part)  # the fallback table
