# Everything runs from .venv/ in the repository root (make install creates it).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MODEL ?=
OUT ?= artifacts/$(notdir $(patsubst %/,%,$(MODEL)))

.PHONY: install export test demo

install:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[export,test]"
	# The official package is the test oracle; its pins (a CUDA torch via torchaudio) are not installable here,
	# so it goes in without dependencies: everything it really uses is in the [export,test] extras.
	$(BIN)/pip install --quiet --no-deps qwen-tts==0.1.1

export:
	@test -n "$(MODEL)" || { echo "usage: make export MODEL=<hub id or checkpoint dir> [OUT=<dir>]"; exit 2; }
	$(BIN)/python -m qwen3_tts_export --model "$(MODEL)" --out "$(OUT)"

test:
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup tests

demo:
	$(BIN)/python -m qwen3_tts_export.demo
