# Mixer Symmetry Lab. `make demo` and `make test` each do their whole set-up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU machines: the local CPU build. GPU users: `make setup TORCH=torch` (or any spec), or
# install torch into the venv first; a satisfied requirement installs nothing more.
TORCH ?= torch==2.13.0
APT_PACKAGES := slurm-wlm munge dataset-fashion-mnist chromium chromium-driver

.PHONY: setup system venv demo results test test-fast lint bench cluster cluster-stop mlflow-ui clean

setup: system venv

# System packages (Debian): SLURM + munge for the local cluster, Fashion-MNIST, Chromium for
# the MLflow UI check. Installs only what is missing; needs root or sudo.
system:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages: $$missing"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH)"
	# compat mode: a .pth with the project root, so `hydra_plugins` (a namespace package)
	# is found by Hydra's plugin discovery alongside the installed launcher plugin
	$(BIN)/pip install -q -e ".[dev]" --config-settings editable_mode=compat
	touch $@

# The main job: a small CPU sweep on Fashion-MNIST, then the figures.
demo: setup
	$(BIN)/python sweep/run.py -m +experiment=demo
	$(BIN)/python analysis/make_figures.py --experiment demo --out figures/demo

# docs/RESULTS.md: the CPU-scale experiment set on Fashion-MNIST, then its figures and tables
# into docs/results/<experiment>/. 3-6 h on 2 cores (summed from job times measured on two days
# whose speeds differed 2x; never timed end to end): sb_strength (66 jobs) and n_iter (48) are
# the longest.
RESULTS_EXPERIMENTS := model_comparison energy vanilla_symmetry lam1_clip sb_strength search n_iter
results: setup
	for e in $(RESULTS_EXPERIMENTS); do \
	  $(BIN)/python sweep/run.py -m +experiment=$$e || exit 1; done
	for e in $(RESULTS_EXPERIMENTS); do \
	  $(BIN)/python analysis/make_figures.py --experiment $$e --sweep $$e \
	    --out docs/results/$$e || exit 1; done

# Everything, against the real services (local SLURM cluster, MLflow server, Chromium).
test: setup
	bash slurm/start_cluster.sh
	$(BIN)/python -m pytest -q --durations=25 tests

# Unit tests only (no cluster, no browser).
test-fast: venv
	$(BIN)/python -m pytest -q tests -m "not slurm and not browser and not slow"

lint: venv
	$(BIN)/ruff check .

bench: venv
	$(BIN)/python benchmarks/throughput.py

cluster: system
	bash slurm/start_cluster.sh

cluster-stop:
	bash slurm/stop_cluster.sh

# The MLflow UI on 127.0.0.1:5000 (MLFLOW_UI_ARGS="--port 5001" ...), without MLflow's
# background job workers; Ctrl-C or SIGTERM leaves no process behind (slurm/mlflow_ui.sh).
mlflow-ui: venv
	bash slurm/mlflow_ui.sh $(MLFLOW_UI_ARGS)

clean:
	rm -rf outputs multirun figures .pytest_cache
