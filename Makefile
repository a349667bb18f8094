# One place for every command: the README, .ci/run and the GitHub workflows
# all call these targets.
#
#   make html    set up .venv if needed, then build the site into _build/html
#   make test    set up, then lint, package tests, docs build (-n -W), browser tests
#   make serve   serve _build/html on http://127.0.0.1:8000
#   make bench-build  time cold and incremental builds of a copy of the project
#   make bench   benchmarks: tables, benchmarks/results/*.json and *.svg

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Set to a PyTorch wheel index (for example its CPU-only index) to install
# torch from there instead of the default index.
TORCH_INDEX_URL ?=
SPHINXOPTS ?=
# Reader processes for sphinx-build -j: chapters execute this many at a time.
# auto is one per CPU core; JOBS=1 builds serially.
JOBS ?= auto
SPHINXBUILD = $(BIN)/sphinx-build -b html -c . -d _build/doctrees docs _build/html
# The command `make html` runs; benchmarks/build.py times exactly this one.
HTMLBUILD = $(SPHINXBUILD) -j $(JOBS) $(SPHINXOPTS)
PORT ?= 8000

.PHONY: setup html html-strict test test-package test-site lint serve clean linkcheck bench-build

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/torch.txt requirements/dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is needed; set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) -r requirements/torch.txt
	$(BIN)/python -m pip install --quiet -r requirements/dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

html: setup
	$(HTMLBUILD)

# The build as the tests run it: nitpicky, every warning an error, and -E so
# that every page is read again (warnings of pages an incremental build skips
# would otherwise go unseen). Executed outputs still come from the cache.
html-strict: setup
	$(SPHINXBUILD) -j $(JOBS) -E -n -W --keep-going $(SPHINXOPTS)

lint: setup
	$(BIN)/ruff check src tests benchmarks conf.py docs/_ext
	$(BIN)/ruff format --check src tests benchmarks conf.py docs/_ext
	$(BIN)/mypy

test-package: setup
	$(BIN)/python -m pytest -m "not site"

test-site: setup
	$(BIN)/python -m pytest -m site

test: lint test-package html-strict test-site

# Cold, no-change and incremental builds of a temporary copy of the project,
# timed; writes benchmarks/results/build.json. Minutes: every chapter
# executes twice (cold, and after the package edit). BENCHOPTS passes options
# (see python benchmarks/build.py --help), e.g. BENCHOPTS="--workdir DIR".
BENCHOPTS ?=
bench-build: setup
	$(BIN)/python benchmarks/build.py $(BENCHOPTS) -- $(HTMLBUILD)

# Benchmarks (benchmarks/, run as `python -m benchmarks`): the package's attention
# against PyTorch's, with a table of the targets at the end. The full run takes
# about eight minutes of CPU time (more wall-clock time on a busy machine) and
# writes benchmarks/results/ (which chapter 13 plots); bench-quick is a smoke
# run of a minute or two at smaller sizes, written to _build/benchmarks/quick.
# BENCHOPTS passes more options (see `python -m benchmarks --help`).
# PYTHONPATH=src: measure this checkout.
.PHONY: bench bench-quick

bench: setup
	PYTHONPATH=src $(BIN)/python -m benchmarks $(BENCHOPTS)

bench-quick: setup
	PYTHONPATH=src $(BIN)/python -m benchmarks --quick $(BENCHOPTS)

serve:
	$(BIN)/python -m http.server $(PORT) --bind 127.0.0.1 --directory _build/html

# External links: needs the network, so the weekly workflow
# (.github/workflows/links.yml) runs it, not `make test` (whose site tests
# check internal links offline). Broken links land in _build/linkcheck/output.txt
# and, in GitHub Actions, in the job summary and a warning.
linkcheck: setup
	$(BIN)/sphinx-build -b linkcheck -c . -d _build/doctrees docs _build/linkcheck $(SPHINXOPTS) || { \
		status=$$?; \
		if [ -n "$${GITHUB_STEP_SUMMARY:-}" ]; then \
			{ echo "## Broken external links"; echo; echo '```'; \
			  cat _build/linkcheck/output.txt; echo '```'; } >> "$$GITHUB_STEP_SUMMARY"; \
			echo "::warning title=Broken external links::listed in the job summary"; \
		fi; \
		exit $$status; }

clean:
	rm -rf _build docs/api
