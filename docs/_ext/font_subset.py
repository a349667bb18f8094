"""Cut a font down to the characters a site shows, as WOFF2, and cache the cut.

Used by ``mathml`` (the maths font) and ``icons`` (the theme's icon font):
both fonts are far larger than the few dozen glyphs our pages draw.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Mapping
from pathlib import Path

from fontTools import subset
from fontTools.ttLib import TTFont

# Names kept from the source font: copyright (0), the names we may replace
# (1-6), licence text and address (13, 14).
_NAME_IDS = [0, 1, 2, 3, 4, 5, 6, 13, 14]
# Cuts kept in the cache: the latest of each font for a few builds back (a
# build uses two: the maths font and the icon font); older ones are deleted.
KEEP = 8


def subset_woff2(
    source: bytes, codepoints: Iterable[int], names: Mapping[int, str], cache: Path
) -> bytes:
    """The WOFF2 of ``source`` with only the glyphs of ``codepoints``.

    The cut keeps every glyph those characters need: their OpenType layout
    alternatives and, in a maths font, the size variants and pieces from which
    stretchy brackets, radicals and sums are built (the MATH table).

    Args:
        source: the font file (TrueType, OpenType or WOFF2).
        codepoints: the characters to keep; those the font lacks are ignored.
        names: name-table entries to replace, by name ID (a cut font is a
            modified version, which the fonts' licences ask to rename).
        cache: a folder for earlier cuts; the same source, characters and
            names are cut once. Only the :data:`KEEP` most recently used
            cuts stay in it.

    Returns:
        The cut font, WOFF2-compressed.
    """
    kept = sorted(set(codepoints))
    digest = hashlib.sha256(source)
    digest.update(repr((kept, sorted(names.items()))).encode())
    cached = cache / f"{digest.hexdigest()[:20]}.woff2"
    if cached.is_file():
        cached.touch()  # recently used: kept when the cache is pruned
        return cached.read_bytes()
    options = subset.Options()
    options.layout_features = ["*"]
    options.name_IDs = _NAME_IDS
    options.hinting = False
    font = TTFont(io.BytesIO(source))
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=kept)
    subsetter.subset(font)
    for record in font["name"].names:
        if record.nameID in names:
            record.string = names[record.nameID]
    font.flavor = "woff2"
    out = io.BytesIO()
    font.save(out)
    cache.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(out.getvalue())
    prune(cache, KEEP)
    return out.getvalue()


def prune(cache: Path, keep: int) -> None:
    """Delete all but the ``keep`` most recently used cuts in ``cache``."""
    cuts = sorted(cache.glob("*.woff2"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in cuts[keep:]:
        old.unlink(missing_ok=True)  # a parallel reader may have deleted it first
