# One place for every command: the README, .ci/run and the GitHub workflows
# all call these targets.
#
#   make html    set up .venv if needed, then build the site into _build/html
#   make test    set up (the browser tests' system packages too), then lint,
#                package tests, docs build (-n -W), the chapters on a second
#                floating-point code path, browser tests
#   make test-gpu  the package tests on CUDA (their CUDA cases only); needs a GPU
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
# A torch requirement to install instead of requirements/torch.txt (for
# example "torch==2.6.0", or "torch" for the newest): CI's torch-versions job
# tests the package on the oldest torch pyproject.toml allows and the newest.
TORCH_SPEC ?=
SPHINXOPTS ?=
# Reader processes for sphinx-build -j: chapters execute this many at a time.
# auto is one per CPU core; JOBS=1 builds serially.
JOBS ?= auto
SPHINXBUILD = $(BIN)/sphinx-build -b html -c . -d _build/doctrees docs _build/html
# The command `make html` runs; benchmarks/build.py times exactly this one.
HTMLBUILD = $(SPHINXBUILD) -j $(JOBS) $(SPHINXOPTS)
PORT ?= 8000

.PHONY: setup system-packages html html-strict html-fp test test-package test-gpu test-site lint serve clean linkcheck bench-build

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/torch.txt requirements/dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is needed; set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) $(if $(TORCH_SPEC),"$(TORCH_SPEC)",-r requirements/torch.txt)
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

# The chapters once more on a second floating-point code path: MKL in its
# reproducible (COMPATIBLE) mode and ATen's plain, unvectorised kernels. A
# comparison that holds only with this CPU's own kernels then fails here, not
# on a reader's machine with another CPU. Own folders and cache (conf.py keys
# the cache on these settings): with nothing changed it executes nothing.
# The dummy builder reads and checks every page but writes none.
FP_SETTINGS ?= MKL_CBWR=COMPATIBLE ATEN_CPU_CAPABILITY=default
FPBUILD = $(BIN)/sphinx-build -b dummy -c . -d _build/fp/doctrees docs _build/fp/dummy \
	-j $(JOBS) -n -W --keep-going $(SPHINXOPTS)
html-fp: setup
	$(FP_SETTINGS) ATTENTION_BUILD_DIR=_build/fp $(FPBUILD)

lint: setup
	$(BIN)/ruff check src tests benchmarks conf.py docs/_ext
	$(BIN)/ruff format --check src tests benchmarks conf.py docs/_ext
	$(BIN)/mypy
	PYRIGHT_PYTHON_IGNORE_WARNINGS=1 $(BIN)/pyright

test-package: setup
	$(BIN)/python -m pytest -m "not site"

# The CUDA case of every test that takes the `device` fixture, and the tests
# about CUDA itself, on this machine's GPU. Install a CUDA build of torch
# first (TORCH_INDEX_URL). Without a CUDA device pytest stops with a usage
# error saying so, before any test runs.
test-gpu: setup
	$(BIN)/python -m pytest --device cuda -m "cuda and not site"

test-site: setup system-packages
	$(BIN)/python -m pytest -m site

# system-packages first: a missing browser stops the run before any test.
test: system-packages lint test-package html-strict html-fp test-site

# System packages the browser tests need, by their Debian names: a Chromium
# for Playwright to drive (never a downloaded browser), the fonts it draws the
# pages' text in (the theme uses the system's fonts, so what is installed
# decides line widths; these are the ones the tests were written against) and
# a Java runtime for the Nu HTML Checker. CHROMIUM=/path/to/chrome drives
# another browser instead.
# Missing packages are installed with apt-get when this user is root or has
# password-less sudo; otherwise this stops, before any test, with the command
# to run.
CHROMIUM ?= /usr/bin/chromium
SYSTEM_PACKAGES_MISSING = $(strip $(if $(wildcard $(CHROMIUM)),,chromium) \
	$(if $(shell fc-list "DejaVu Sans" family 2>/dev/null),,fonts-dejavu-core) \
	$(if $(shell fc-list "Liberation Sans" family 2>/dev/null),,fonts-liberation) \
	$(if $(shell command -v java 2>/dev/null),,default-jre-headless))

system-packages:
	@missing="$(SYSTEM_PACKAGES_MISSING)"; \
	[ -n "$$missing" ] || exit 0; \
	if [ "$(CHROMIUM)" != /usr/bin/chromium ] && [ ! -e "$(CHROMIUM)" ]; then \
		echo "CHROMIUM=$(CHROMIUM) does not exist: set it to a Chromium or Chrome" \
			"executable, or unset it to use Debian's chromium."; \
		exit 1; \
	fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
		echo "The browser tests need a Chromium (set CHROMIUM=/path/to/it), the DejaVu" \
			"and Liberation fonts, and Java 11 or newer on the PATH." \
			"Missing here, by their Debian names: $$missing"; \
		exit 1; \
	fi; \
	if [ "$$(id -u)" -eq 0 ]; then sudo=""; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo"; \
	else \
		echo "The browser tests need system packages that are missing: $$missing."; \
		echo "Install them, then run make test again:"; \
		echo "    sudo apt-get update && sudo apt-get install -y $$missing"; \
		exit 1; \
	fi; \
	echo "Installing the system packages the browser tests need: $$missing"; \
	$$sudo apt-get update -qq && \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null

# Cold, no-change and incremental builds of a temporary copy of the project,
# and html-fp's build of it, timed; writes benchmarks/results/build.json.
# Minutes: every chapter executes three times (cold, after the package edit,
# and on the second floating-point code path). BENCHOPTS passes options
# (see python benchmarks/build.py --help), e.g. BENCHOPTS="--workdir DIR".
BENCHOPTS ?=
bench-build: setup
	$(BIN)/python benchmarks/build.py $(BENCHOPTS) \
		--fp-command "$(FPBUILD)" --fp-settings "$(FP_SETTINGS)" -- $(HTMLBUILD)

# Benchmarks (benchmarks/, run as `python -m benchmarks`): the package's attention
# against PyTorch's, with a table of the targets at the end. The full run takes
# about eight minutes of CPU time (more wall-clock time on a busy machine) and
# writes benchmarks/results/ (which the benchmarks appendix plots); bench-quick
# is a smoke run of a minute or two at smaller sizes, written to
# _build/benchmarks/quick.
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
