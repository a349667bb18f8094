"""docs/_ext/font_subset.py: cut fonts, cached, and a cache that stays small."""

from __future__ import annotations

import io
import os
from pathlib import Path

from fontTools.ttLib import TTFont

from tests.conftest import extension

font_subset = extension("font_subset")
mathml = extension("mathml")

SOURCE = mathml._FONT_SOURCE.read_bytes()  # STIX Two Math, as the build uses it
NAMES = {1: "Test Math"}


def _aged(cache: Path, n: int) -> list[Path]:
    """``n`` stand-in cuts, oldest first, with distinct modification times."""
    cache.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = cache / f"old{i:02d}.woff2"
        path.write_bytes(b"stale")
        os.utime(path, (1_000_000 + i, 1_000_000 + i))
        paths.append(path)
    return paths


def test_a_cut_keeps_the_characters_asked_for_and_is_cached(tmp_path):
    cut = font_subset.subset_woff2(SOURCE, map(ord, "xyz+"), NAMES, tmp_path)
    font = TTFont(io.BytesIO(cut))
    assert {ord(c) for c in "xyz+"} <= set(font.getBestCmap())
    assert ord("q") not in font.getBestCmap()
    assert font["name"].getDebugName(1) == "Test Math"
    (cached,) = tmp_path.glob("*.woff2")
    assert cached.read_bytes() == cut
    cached.write_bytes(b"from the cache")  # a second call reads the cache, not the font
    assert font_subset.subset_woff2(SOURCE, map(ord, "zyx+"), NAMES, tmp_path) == b"from the cache"


def test_prune_keeps_the_most_recently_used(tmp_path):
    paths = _aged(tmp_path, 5)
    font_subset.prune(tmp_path, 2)
    assert sorted(tmp_path.iterdir()) == paths[-2:]


def test_a_new_cut_prunes_the_cache_and_a_hit_counts_as_a_use(tmp_path):
    old = _aged(tmp_path, font_subset.KEEP + 3)
    font_subset.subset_woff2(SOURCE, map(ord, "ab"), NAMES, tmp_path)
    left = set(tmp_path.iterdir())
    assert len(left) == font_subset.KEEP
    assert old[0] not in left  # the oldest went first
    # Using the cut from long ago makes it the newest: the next cut keeps it.
    hit = sorted(left - set(old))[0]
    os.utime(hit, (1, 1))
    font_subset.subset_woff2(SOURCE, map(ord, "ab"), NAMES, tmp_path)
    font_subset.subset_woff2(SOURCE, map(ord, "cd"), NAMES, tmp_path)
    assert hit in set(tmp_path.iterdir())
