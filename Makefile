# emclip — the two quick-start commands are `make run` and `make test`.
# Every target creates .venv and installs the pinned requirements when they are missing;
# `make site` and `make test-browser` add docs/requirements.txt (MkDocs, MathJax, playwright).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.emclip-installed
SITE_STAMP := $(VENV)/.emclip-site-installed
PROFILE ?= ci
# the course site: built from the notebooks `make run` executed, into SITE_DIR
SITE_NOTEBOOKS ?= results/notebooks
SITE_DIR ?= results/site
# `make lab`: the folder it opens, extra jupyter-lab options; --allow-root when run as root
LAB_DIR ?= notebooks
LAB_ARGS ?=
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)
# `make test` runs on one pytest-xdist worker per core (at most 4), each with one torch thread (tests/conftest.py;
# OMP_NUM_THREADS=1 for the notebook kernels): unit tests spread over the workers, notebooks one whole notebook
# per worker (--dist loadfile keeps a notebook's cells in order). UNIT_WORKERS= NB_WORKERS= runs both in one process.
UNIT_WORKERS ?= -n auto --maxprocesses 4
NB_WORKERS ?= -n auto --maxprocesses 4 --dist loadfile
NBVAL_FLAGS := --nbval-lax --nbval-current-env --nbval-cell-timeout=900 --nbval-sanitize-with tests/nbval_sanitize.cfg
export HF_HUB_OFFLINE ?= 1
export MPLBACKEND ?= Agg
export PYTHONHASHSEED ?= 0

.PHONY: help install run test test-unit test-nb test-all test-browser lab site home notebooks sweep fixup strip lint bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

$(SITE_STAMP): docs/requirements.txt $(STAMP)
	$(PY) -m pip install --quiet -r docs/requirements.txt
	@touch $(SITE_STAMP)

install: $(STAMP)  ## create .venv and install the pinned requirements and emclip (editable)

run: $(STAMP)  ## the main job: execute every notebook on the embedded default, write results/ (SITE=1: then `make site`)
	@start=$$(date +%s); \
	$(BIN)/emclip run --output results; rc=$$?; \
	echo "make run: $$(( $$(date +%s) - start )) s"; \
	if [ $$rc -eq 0 ] && [ -n "$(SITE)" ]; then $(MAKE) --no-print-directory site || rc=$$?; fi; exit $$rc

site: $(SITE_STAMP)  ## the course site from the notebooks `make run` executed -> results/site/index.html
	@start=$$(date +%s); \
	EMCLIP_SITE_NOTEBOOKS=$(SITE_NOTEBOOKS) NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --quiet --site-dir $(SITE_DIR) \
	  && echo "make site: $(SITE_DIR)/index.html ($$(( $$(date +%s) - start )) s; opens from the file system)"

test: $(STAMP)  ## the layer contract (import-linter), unit tests, then every notebook through nbval in the `ci` profile
	@start=$$(date +%s); \
	$(BIN)/lint-imports --no-cache >/dev/null && echo "layers: import contract kept" && \
	EMCLIP_PROFILE=ci $(PY) -m pytest tests -q -p no:cacheprovider --ignore=tests/browser $(UNIT_WORKERS) && \
	$(if $(strip $(NB_WORKERS)),OMP_NUM_THREADS=1) EMCLIP_NO_WIDGETS=1 EMCLIP_PROFILE=ci \
	  $(PY) -m pytest $(NBVAL_FLAGS) notebooks -q -p no:cacheprovider $(NB_WORKERS); rc=$$?; \
	echo "make test: $$(( $$(date +%s) - start )) s (after the install)"; exit $$rc

test-unit: $(STAMP)  ## unit tests only
	EMCLIP_PROFILE=ci $(PY) -m pytest tests -q --ignore=tests/browser $(UNIT_WORKERS)

test-nb: $(STAMP)  ## notebooks only, through nbval (PROFILE=ci by default)
	EMCLIP_NO_WIDGETS=1 EMCLIP_PROFILE=$(PROFILE) $(PY) -m pytest $(NBVAL_FLAGS) notebooks -q

test-all: $(STAMP)  ## everything, slow tests included (not the browser suite)
	EMCLIP_RUN_SLOW=1 EMCLIP_PROFILE=ci $(PY) -m pytest tests -q --ignore=tests/browser

test-browser: $(SITE_STAMP)  ## JupyterLab, the widgets and the course site in headless Chromium (apt-get install chromium)
	@start=$$(date +%s); \
	EMCLIP_BROWSER=1 EMCLIP_PROFILE=ci NO_MKDOCS_2_WARNING=1 $(PY) -m pytest tests/browser -q -p no:cacheprovider; rc=$$?; \
	echo "make test-browser: $$(( $$(date +%s) - start )) s"; exit $$rc

# the kernels draw inline (the Agg backend exported above would hide every figure and explorer)
lab: $(STAMP)  ## JupyterLab on the notebooks (LAB_ARGS: more jupyter-lab options)
	MPLBACKEND=module://matplotlib_inline.backend_inline $(BIN)/jupyter lab $(LAB_DIR) $(ALLOW_ROOT) $(LAB_ARGS)

sweep: $(STAMP)  ## an example papermill sweep (see `emclip sweep --help`)
	$(BIN)/emclip sweep notebooks/04_em_aggregation.ipynb -g em_bases=4,8 -g em_iters=1,3 --profile $(PROFILE) --output results/sweeps/example --plot silhouette_after

bench: $(STAMP)  ## run the benchmark scripts (print figures)
	@for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

fixup: $(STAMP)  ## ruff fix + format (the notebooks' .py sources), then sync the .ipynb copies
	$(BIN)/ruff check --fix emclip tests benchmarks tools docs notebooks/*.py
	$(BIN)/ruff format emclip tests benchmarks tools docs notebooks/*.py
	$(PY) tools/sync_notebooks.py --from py

home: $(STAMP)  ## point the Colab badges and installs at URL=https://github.com/<you>/emclip (REF=v0.1.0)
	$(PY) tools/set_home.py $(URL) $(if $(REF),--ref $(REF))

notebooks: $(STAMP)  ## sync every jupytext pair (notebooks/NN_name.py <-> .ipynb; the newer file wins)
	$(PY) tools/sync_notebooks.py

strip: $(STAMP)  ## strip notebook outputs (rewrites each .ipynb and its .py from the .ipynb)
	$(PY) tools/sync_notebooks.py --from ipynb

lint: $(STAMP)  ## ruff check, and every jupytext pair in sync
	$(BIN)/ruff check emclip tests benchmarks tools docs notebooks
	$(PY) tools/sync_notebooks.py --check

clean:  ## remove caches and results of runs (keeps .venv)
	rm -rf .pytest_cache .ruff_cache results/notebooks results/runs results/sweeps results/site build/site-lessons build/browser
