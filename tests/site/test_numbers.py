"""Every number a chapter states reads the same on a second floating-point code path.

``make html-fp`` executes the chapters again with the Makefile's FP_SETTINGS
(MKL's reproducible mode and ATen's plain, unvectorised CPU kernels), so that
sums run in another order through other kernels, as they would on another CPU.
Each number the prose pastes in with ``{glue:text}`` is formatted the way the
page formats it, for both builds, and the two must read the same.

A few numbers measure the machine that built the page rather than a fact
about attention: timings, the size of a rounding error, memory as the
allocator counts it, the installed torch, counts of random draws, and what
a model learned while the page was built (training amplifies a last-bit
difference in one step into a visible one a few hundred steps later). Those
are declared below, each with its reason, and left out; a declaration that
names no number on its page fails, so the register cannot go stale.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from myst_nb.core.variables import format_plain_text

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
DEFAULT = ROOT / "_build" / "jupyter_execute"  # make html / make html-strict
SECOND = ROOT / "_build" / "fp" / "jupyter_execute"  # make html-fp
PASTE = re.compile(r"\{glue(?::text)?\}`([^`]+)`")

TRAINED = "trained while the page is built"
TIMING = "a timing"
ROUNDING = "the size of a rounding error"
ALLOCATOR = "memory as the allocator reports it"
VERSION = "the installed torch"
SAMPLED = "a count of random draws (a last-bit change in a probability can move a draw)"
EVERY = "*"  # every number on the page

MEASURED: dict[str, dict[str, str]] = {
    "01-the-trouble-with-long-sequences": {EVERY: TRAINED},
    "03-self-attention-without-weights": {"row-sum-error": ROUNDING},
    "05-causal-attention": {
        "ways-max-diff": ROUNDING,
        "torch-version": VERSION,
        "trained-head": TRAINED,
        "trained-one-journey": TRAINED,
    },
    "06-dropout": {EVERY: TRAINED},
    "07-batches": {
        "order-gap": ROUNDING,
        "batch-gap": ROUNDING,
        "cube-error": ROUNDING,
        "speedup": TIMING,
        "torch-version": VERSION,
    },
    "08-multi-head-attention": {
        f"trained-{key}": TRAINED
        for key in (
            "loss-first",
            "loss-last",
            *(
                f"{link}-{what}"
                for link in ("adj", "verb", "obj")
                for what in ("head", "weight", "mean")
            ),
            *(f"grid-{what}" for what in ("prev", "head", "starts", "one")),
        )
    },
    "09-from-context-vectors-to-logits": {"draw-drift": SAMPLED},
    "10-layer-normalisation": {
        "rms-centred-gap": ROUNDING,
        "leftover-mean": ROUNDING,
        "ln-var-gap": ROUNDING,
        "torch-gap": ROUNDING,
    },
    "11-the-transformer-block": {
        "seconds-cached": TIMING,
        "seconds-plain": TIMING,
        "swap-still": ROUNDING,
        "spread-rope": ROUNDING,
    },
    "12-why-attention-works": {EVERY: TRAINED},
    "13-attention-at-scale": {
        "err-naive": ROUNDING,
        "err-tiled": ROUNDING,
        "train-grad-err": ROUNDING,
        "naive-ratio-4096": TIMING,
        "tiled-ratio-4096": TIMING,
        "gen-speedup": TIMING,
        "exp2-speedup": TIMING,
        "ex2-small-block-slowdown": TIMING,
        "fused-workspace-trend": ALLOCATOR,
        "fused-mib-4096": ALLOCATOR,
        "fused-workspace-kib-4096": ALLOCATOR,
        "mem-growth-fused": ALLOCATOR,
    },
    "14-attention-in-todays-models": {
        "mla-max-diff": ROUNDING,
        "lin-max-diff": ROUNDING,
        "sparse-gap": ROUNDING,
        "ring-speedup": TIMING,
        "mask-over-full": TIMING,
        "ring-growth": TIMING,
        "full-growth": TIMING,
        **{
            key: TRAINED
            for key in (
                "sink-head",
                "own-head",
                "sink-first",
                "sink-second",
                "own-first",
                "own-second",
                "choice-mha",
                "choice-mqa",
                "choice-window",
                "recall-softmax",
                "recall-linear",
                "recall-delta",
                "recall-linear-first",
                "recall-delta-first",
            )
        },
    },
}


def pasted(page: str) -> set[tuple[str, str]]:
    """The (key, format) pairs that a page's prose pastes in with ``{glue:text}``."""
    found = set()
    for text in PASTE.findall((DOCS / f"{page}.md").read_text(encoding="utf-8")):
        key, _, fmt = text.partition(":")
        found.add((key, fmt))
    return found


# Pages with a number to compare: pasting some, and not declared measured throughout.
PAGES = sorted(
    p.stem for p in DOCS.glob("*.md") if pasted(p.stem) and EVERY not in MEASURED.get(p.stem, {})
)


def executed(folder: Path, page: str) -> tuple[list[str], dict[str, str]]:
    """A page's executed code cells and its glued values as text, from one build."""
    notebook, glued = folder / f"{page}.ipynb", folder / f"{page}.glue.json"
    for path in (notebook, glued):
        if not path.is_file():
            pytest.fail(f"{path} is missing: run `make html-strict html-fp` (make test does)")
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    data = json.loads(glued.read_text(encoding="utf-8"))
    return code, {key: out["data"]["text/plain"] for key, out in data.items()}


@pytest.mark.parametrize("page", PAGES)
def test_numbers_read_the_same_on_a_second_code_path(page: str) -> None:
    code, default = executed(DEFAULT, page)
    code_fp, second = executed(SECOND, page)
    assert code == code_fp, (
        f"{page}: the two builds executed different code; "
        "run `make html-strict html-fp` to build both from this checkout"
    )
    measured = MEASURED.get(page, {})
    differ = []
    for key, fmt in sorted(pasted(page)):
        if key in measured:
            continue
        one, two = format_plain_text(default[key], fmt), format_plain_text(second[key], fmt)
        if one != two:
            differ.append(f"{key}:{fmt} reads {one} on one path and {two} on the other")
    assert not differ, (
        f"{page}: numbers that depend on the floating-point code path "
        "(print fewer digits, or compute them so they do not):\n" + "\n".join(differ)
    )


@pytest.mark.parametrize("page", sorted(MEASURED))
def test_every_declared_number_is_on_its_page(page: str) -> None:
    keys = {key for key, _ in pasted(page)}
    assert keys, f"{page} pastes no numbers; drop it from MEASURED"
    declared = set(MEASURED[page])
    assert declared == {EVERY} or EVERY not in declared, f"{page}: {EVERY} stands alone"
    stale = sorted(declared - keys - {EVERY})
    assert not stale, f"{page} does not paste {stale}; drop them from MEASURED"
