# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv by themselves.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# On a machine without an NVIDIA driver the CPU build of torch is installed first, so that the
# dependency `torch>=2.2` is already satisfied and pip does not pull a multi-GB CUDA build.
# Override with `make TORCH_SPEC= ...` (install nothing special) or another pin.
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
ifeq ($(HAS_GPU),1)
TORCH_SPEC ?=
else
TORCH_SPEC ?= torch==2.13.0
endif

.PHONY: setup demo test test-all benchmark search-benchmark clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@if [ -n "$(TORCH_SPEC)" ]; then echo "installing $(TORCH_SPEC) (CPU machine)"; \
	  $(PY) -m pip install -q "$(TORCH_SPEC)"; fi
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	MLFLOW_DISABLE_TELEMETRY=true $(PY) -m autounfold.cli demo --out runs/demo

test: setup
	MLFLOW_DISABLE_TELEMETRY=true $(PY) -m pytest -q -m "not slow"

test-all: setup
	MLFLOW_DISABLE_TELEMETRY=true $(PY) -m pytest -q

benchmark: setup
	$(PY) -m autounfold.cli benchmark --out results/benchmark

search-benchmark: setup
	MLFLOW_DISABLE_TELEMETRY=true $(PY) -m autounfold.cli search-benchmark --out results/search_benchmark

clean:
	rm -rf $(VENV) runs results mlruns .pytest_cache
