# One place for every command: the README, .ci/run and the GitHub workflows
# all call these targets.
#
#   make html    set up .venv if needed, then build the site into _build/html
#   make test    set up, then lint, package tests, docs build (-n -W), browser tests
#   make serve   serve _build/html on http://127.0.0.1:8000
#   make bench   benchmarks: tables, benchmarks/results/*.json and *.svg

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Set to a PyTorch wheel index (for example its CPU-only index) to install
# torch from there instead of the default index.
TORCH_INDEX_URL ?=
SPHINXOPTS ?=
SPHINXBUILD = $(BIN)/sphinx-build -b html -c . -d _build/doctrees docs _build/html
PORT ?= 8000

.PHONY: setup html html-strict test test-package test-site lint serve clean

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
	$(SPHINXBUILD) $(SPHINXOPTS)

# The build as the tests run it: nitpicky, every warning an error, and -E so
# that every page is read again (warnings of pages an incremental build skips
# would otherwise go unseen). Executed outputs still come from the cache.
html-strict: setup
	$(SPHINXBUILD) -E -n -W --keep-going $(SPHINXOPTS)

lint: setup
	$(BIN)/ruff check src tests benchmarks conf.py docs/_ext
	$(BIN)/ruff format --check src tests benchmarks conf.py docs/_ext
	$(BIN)/mypy

test-package: setup
	$(BIN)/python -m pytest -m "not site"

test-site: setup
	$(BIN)/python -m pytest -m site

test: lint test-package html-strict test-site

# Benchmarks (benchmarks/, run as `python -m benchmarks`): the package's attention
# against PyTorch's, with a table of the targets at the end. The full run takes
# about eight minutes of CPU time (more wall-clock time on a busy machine) and
# writes benchmarks/results/ (which chapter 13 plots); bench-quick is a smoke
# run of a minute or two at smaller sizes, written to _build/benchmarks/quick.
# BENCHOPTS passes more options (see `python -m benchmarks --help`).
# PYTHONPATH=src: measure this checkout.
BENCHOPTS ?=
.PHONY: bench bench-quick

bench: setup
	PYTHONPATH=src $(BIN)/python -m benchmarks $(BENCHOPTS)

bench-quick: setup
	PYTHONPATH=src $(BIN)/python -m benchmarks --quick $(BENCHOPTS)

serve:
	$(BIN)/python -m http.server $(PORT) --bind 127.0.0.1 --directory _build/html

clean:
	rm -rf _build docs/api
