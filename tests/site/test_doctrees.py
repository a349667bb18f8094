"""The built book's stored doctrees hold their pages only (docs/_ext/lean_doctrees.py).

sphinx-autodoc2 parses every docstring into a document of its own; without
the extension, each API page's doctree pickles the whole build environment
through those documents (1.2 MB a page instead of 0.1 MB), and every build
writes and reads those copies.
"""

from __future__ import annotations

from pathlib import Path

DOCTREES = Path(__file__).resolve().parents[2] / "_build" / "doctrees"


def test_the_api_doctrees_hold_no_build_environment() -> None:
    stored = sorted((DOCTREES / "api").rglob("*.doctree"))
    assert len(stored) > 10, f"expected the API pages' doctrees under {DOCTREES}: run make html"
    heavy = [p.name for p in stored if b"BuildEnvironment" in p.read_bytes()]
    assert heavy == [], f"doctrees that pickle the build environment: {heavy}"
