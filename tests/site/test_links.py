"""No broken internal link or anchor in the built site, checked offline.

linkchecker (through tests/site/run_linkchecker.py) starts from every page,
served under the path the site is published at (see ``site_url``), and
checks every link, image, script and stylesheet reference, and every
``#anchor``. External URLs are not fetched (there is no network here): the
weekly workflow .github/workflows/links.yml checks them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

from tests.site.conftest import serve, site_pages

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """\
[checking]
threads=4
# The test server sends the header that lets linkchecker skip its rate limit.
maxrequestspersecond=1000
[AnchorCheck]
"""


def _linkcheck(urls: list[str], tmp_path: Path) -> tuple[list[dict[str, str]], list[str]]:
    """Check ``urls`` and what they link to; return the URLs checked, and the problems.

    Each URL checked is a dict with its ``url`` (as written), ``parent``,
    ``line``, ``realurl`` (resolved), ``result`` and ``warnings``.
    """
    config = tmp_path / "linkcheckerrc"
    config.write_text(CONFIG, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "tests.site.run_linkchecker", "--config", str(config),
         "--no-status", "--verbose", "--output", "xml/utf-8", *urls],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=1200,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stdout + result.stderr
    rows = []
    for item in ElementTree.fromstring(result.stdout).iter("urldata"):
        parent = item.find("parent")
        valid = item.find("valid")
        assert valid is not None
        rows.append(
            {
                "url": item.findtext("url", ""),
                "parent": item.findtext("parent", "(start)"),
                "line": "" if parent is None else parent.get("line", ""),
                "realurl": item.findtext("realurl", ""),
                "result": valid.get("result", ""),
                "valid": valid.text or "",
                # AnchorCheck's warning goes on to list every anchor of the page.
                "warnings": " ".join(
                    (w.text or "").split(" Available anchors:")[0] for w in item.iter("warning")
                ),
            }
        )
    problems = [
        f"{row['parent']} line {row['line']}: {row['url']}: {row['result']} {row['warnings']}"
        for row in rows
        if row["valid"] != "1" or row["warnings"]
    ]
    assert (result.returncode == 1) == bool(problems), result.stdout + result.stderr
    return rows, problems


def test_linkchecker_reports_a_broken_link_and_a_missing_anchor(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "target.html").write_text(
        '<!DOCTYPE html><html lang="en"><title>t</title><h1 id="present">t</h1></html>'
    )
    (site / "index.html").write_text(
        '<!DOCTYPE html><html lang="en"><title>i</title>'
        '<a href="target.html">fine</a> <a href="target.html#present">fine anchor</a>'
        '<a href="missing.html">broken link</a> <a href="target.html#absent">broken anchor</a>'
        '<a href="https://example.org/">external, not fetched</a></html>'
    )
    with serve(site) as url:
        rows, problems = _linkcheck([f"{url}/index.html"], tmp_path)
    assert len(problems) == 2, problems
    assert any("missing.html" in p and "404" in p for p in problems), problems
    assert any("target.html#absent" in p and "absent" in p for p in problems), problems
    external = [r["result"] for r in rows if r["url"] == "https://example.org/"]
    assert external == ["filtered"]  # only its syntax is checked


def test_no_broken_internal_link_or_anchor(site_url, tmp_path):
    pages = site_pages()
    assert "index.html" in pages
    url = site_url + "/"
    rows, problems = _linkcheck([url + page for page in pages], tmp_path)
    assert not problems, f"{len(problems)} broken links:\n" + "\n".join(problems)
    checked = {row["realurl"] for row in rows}
    assert {url + page for page in pages} <= checked
    anchors = [u for u in checked if "#" in u and u.startswith(url)]
    print(f"{len(checked)} URLs checked, {len(anchors)} of them with an anchor")
    assert len(anchors) > 100
