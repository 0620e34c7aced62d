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

.PHONY: setup demo test test-unit benchmark benchmark-auto-pgd benchmark-mu-miso benchmark-mu-miso-3gpp benchmark-hybrid benchmark-lista benchmark-rpca benchmark-detection benchmark-textbook benchmark-decoding search-benchmark drift-demo drift-demo-3gpp clean

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

# everything: unit tests and the integration tests that start real Ray / MLflow processes (what CI runs).
# Two pytest workers, one test file each at a time (a file's fixtures stay in one process): the
# integration tests spend much of their time waiting on process starts (pytest 10-11 min on 2 cores, against
# 17.5 min serial when last measured; a 3rd worker was slower: 678 s against 651 s)
TEST_WORKERS ?= 2
# torch threads per pytest worker: the cores shared out (two workers each running two OpenMP threads on two
# cores made the CPU-bound files 2.4x slower: 215 s against 89 s for mu_miso + rpca + hybrid)
TEST_THREADS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); t=$$(( n / $(TEST_WORKERS) )); [ $$t -ge 1 ] && echo $$t || echo 1)
test: setup
	MLFLOW_DISABLE_TELEMETRY=true OMP_NUM_THREADS=$(TEST_THREADS) $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# unit tests only (no Ray head, no mlflow server; one process, about 6 min)
test-unit: setup
	MLFLOW_DISABLE_TELEMETRY=true $(PY) -m pytest -q -m "not integration"

benchmark: setup
	$(PY) -m autounfold.cli benchmark --out results/benchmark

# Auto-PGD deployment: the preset unchanged on every condition, latency vs the closed form and PGD-200 on
# the same code path, multi-stream, per-antenna reference, 3GPP UMi / UMa / CDL test users (pool_seed 1) for
# the preset and the recipe trained on UMi (pool_seed 0) (about 3 min on 2 cores)
benchmark-auto-pgd: setup
	$(PY) -m autounfold.cli benchmark-auto-pgd --out results/auto_pgd

# MU-MISO sum rate: unfolded WMMSE / PGA against WMMSE, tuned WMMSE, tuned PGA, RZF, and the 3GPP section;
# 1500 training steps per model, the preset's (about 35 min on 2 cores)
benchmark-mu-miso: setup
	$(PY) -m autounfold.cli benchmark-mu-miso --steps 1500 --out results/mu_miso

# MU-MISO 3GPP section alone: 16 x 8 trained on Rayleigh and on UMi (pool_seed 0), tested on UMi / UMa users
# of pool_seed 1; results/mu_miso/mu_miso_3gpp.json / .md (a few minutes)
benchmark-mu-miso-3gpp: setup
	$(PY) -m autounfold.cli benchmark-mu-miso --steps 1500 --sections 3gpp --out results/mu_miso

# Wideband hybrid precoding: unfolded PGA against classical PGA tuned per depth, PE-AltMin, the two-stage
# and subspace designs and the fully-digital bound; transfer to other antenna / band counts; conditions not trained on (3GPP UMi among them) for the log-det and the sum-rate networks, the latter also safeguarded; latency (about 41 min on 2 cores)
benchmark-hybrid: setup
	$(PY) -m autounfold.cli benchmark-hybrid --out results/hybrid

# Sparse recovery: ALISTA and LISTA-CPSS against ISTA / FISTA with lambda tuned per iteration count, the
# converged LASSO and the oracle bound, textbook and classic settings (32-48 min on 2 cores)
benchmark-lista: setup
	$(PY) -m autounfold.cli benchmark-lista --out results/lista

benchmark-detection: setup
	$(PY) -m autounfold.cli benchmark-detection --out results/detection

benchmark-rpca: setup
	$(PY) -m autounfold.cli benchmark-rpca --out results/rpca

# Channel decoding: neural BP-5 (flooding and layered) against BP-5/10/20 of both schedules on the 5G LDPC (128, 64) and (512, 256) codes (about 19 min, 1 core)
benchmark-decoding: setup
	$(PY) -m autounfold.cli benchmark-decoding --out results/decoding

# ADMM-Net (LASSO, 4x4 QPSK) and learned EP (8x8 16-QAM, nominal and mismatched SNR, and against depth) against
# classical ADMM / EP; ADMM-Net applied unchanged off its training conditions beside ADMM re-tuned there (about 48 min on 2 cores)
benchmark-textbook: setup
	$(PY) -m autounfold.cli benchmark-textbook --out results/textbook

# Search benchmark: the discrete spaces of search_spaces/tabular/ tabulated once through Ray (the committed
# Parquet tables in benchmarks/search_tables are reused when their sha256 matches the spec; building
# all three takes about 35 min on 2 cores), then TPE / random / Optuna TPE over 50 paired seeds,
# concurrency, warm-start transfer, live searches against the table, a multi-node Ray cluster
search-benchmark: setup
	MLFLOW_DISABLE_TELEMETRY=true $(PY) -m autounfold.cli search-benchmark --out results/search_benchmark --tables benchmarks/search_tables --report benchmarks

clean:
	rm -rf $(VENV) runs results mlruns .pytest_cache

# The operations loop end to end on the nominal scenario (about 5 min on 2 cores): a model trained at
# 15 deg angular spread becomes champion, the channel moves to 40 deg, the monitor triggers one
# warm-started re-search, its best becomes challenger, a 5% canary on 40 deg traffic decides.
DRIFT_DIR := results/drift_demo
DRIFT_URI := sqlite:///$(abspath $(DRIFT_DIR))/mlflow.db
drift-demo: setup
	rm -rf $(DRIFT_DIR) && mkdir -p $(DRIFT_DIR)
	MLFLOW_DISABLE_TELEMETRY=true $(PY) -m autounfold.cli search search_spaces/auto_pgd.yaml --out $(DRIFT_DIR)/search15 \
	  --tracking-uri $(DRIFT_URI) --register drift_demo --set budget.num_samples=12 --set budget.n_initial_points=8 \
	  --set base.training.steps=200
	MLFLOW_DISABLE_TELEMETRY=true $(PY) -m autounfold.cli promote drift_demo --tracking-uri $(DRIFT_URI)
	MLFLOW_DISABLE_TELEMETRY=true $(PY) -m autounfold.cli monitor --model drift_demo@champion --tracking-uri $(DRIFT_URI) \
	  --source "synthetic:angular_spread=15->40,windows=8,at=3" --events $(DRIFT_DIR)/events.jsonl \
	  --research-trials 12 --research-set base.training.steps=200
	MLFLOW_DISABLE_TELEMETRY=true $(PY) -m autounfold.cli promote drift_demo --tracking-uri $(DRIFT_URI) --canary 0.05 \
	  --batches 200 --batch-size 64 --set problem.channel.angular_spread_deg=40
	MLFLOW_DISABLE_TELEMETRY=true $(PY) -m autounfold.cli monitor --model drift_demo@champion --tracking-uri $(DRIFT_URI) \
	  --source "synthetic:angular_spread=40->40,windows=3" --events $(DRIFT_DIR)/events.jsonl --no-research

# The same loop for a MIMO detector on 3GPP channels (about 3.5 min on 2 cores): a 4x4 QPSK detector
# searched on UMi users becomes champion; the traffic moves to UMa users (another user pool); the
# monitor's receive-side statistic triggers one warm-started re-search aimed at UMa; a canary on UMa
# traffic scored by SER decides (promote's default tolerance is detection's, 0.002 SER); the monitor on the
# champion then sees UMa as its own distribution.
DRIFT3_DIR := results/drift_demo_3gpp
DRIFT3_URI := sqlite:///$(abspath $(DRIFT3_DIR))/mlflow.db
DRIFT3_FAST := --set base.problem.channel.pool=512 --set base.training.steps=60 --set base.training.validate_every=30 \
  --set base.training.validation_batch=512 --set base.training.batch_size=128
drift-demo-3gpp: setup
	rm -rf $(DRIFT3_DIR) && mkdir -p $(DRIFT3_DIR)
	MLFLOW_DISABLE_TELEMETRY=true $(PY) -m autounfold.cli search search_spaces/detection.yaml --out $(DRIFT3_DIR)/search_umi \
	  --tracking-uri $(DRIFT3_URI) --register det_demo --set base.problem.channel.model=umi $(DRIFT3_FAST) \
	  --set budget.num_samples=4 --set budget.n_initial_points=3
	MLFLOW_DISABLE_TELEMETRY=true $(PY) -m autounfold.cli promote det_demo --tracking-uri $(DRIFT3_URI)
	MLFLOW_DISABLE_TELEMETRY=true $(PY) -m autounfold.cli monitor --model det_demo@champion --tracking-uri $(DRIFT3_URI) \
	  --source "synthetic:channel=umi->uma,windows=6,at=2" --events $(DRIFT3_DIR)/events.jsonl \
	  --research-trials 3 --research-set base.training.steps=60
	MLFLOW_DISABLE_TELEMETRY=true $(PY) -m autounfold.cli promote det_demo --tracking-uri $(DRIFT3_URI) --canary 0.25 \
	  --batches 40 --batch-size 128 --set problem.channel.model=uma --set problem.channel.pool_seed=1
	MLFLOW_DISABLE_TELEMETRY=true $(PY) -m autounfold.cli monitor --model det_demo@champion --tracking-uri $(DRIFT3_URI) \
	  --source "synthetic:channel=uma->uma,windows=3" --events $(DRIFT3_DIR)/events.jsonl --no-research
