# Everything runs from .venv/ in the repository root (make install creates it).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MODEL ?=
PRECISION ?= fp32
DECODER ?= fp32
OUT ?= artifacts/$(notdir $(patsubst %/,%,$(MODEL)))$(if $(filter-out fp32,$(PRECISION)),-$(PRECISION))$(if $(filter-out fp32,$(DECODER)),-dec-$(DECODER))

.PHONY: install export test demo bench bench-quick device-wheels

install:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[export,test,server]"
	# The official package is the test oracle; its pins (a CUDA torch via torchaudio) are not installable here,
	# so it goes in without dependencies: everything it really uses is in the [export,test] extras.
	$(BIN)/pip install --quiet --no-deps qwen-tts==0.1.1

export:
	@test -n "$(MODEL)" || { echo "usage: make export MODEL=<hub id or checkpoint dir> [OUT=<dir>] [PRECISION=fp32|int8|int4|fp16] [DECODER=fp32|int8]"; exit 2; }
	$(BIN)/python -m qwen3_tts_export --model "$(MODEL)" --out "$(OUT)" --precision "$(PRECISION)" --decoder "$(DECODER)"

test:
	$(BIN)/python -m pytest -q -n 2 --dist load tests

demo:
	$(BIN)/python -m qwen3_tts_export.demo

# Full benchmarks against the official package (full-size random checkpoints; exports cached in artifacts/bench).
bench:
	$(BIN)/python scripts/bench.py --json artifacts/bench/results.json --record BENCHMARKS.md

bench-quick:
	$(BIN)/python scripts/bench.py --quick

# onnxruntime-gpu for the lent GPU machine, in pieces a device call can carry beside the working tree, 64 MiB in all,
# and in .whl/official the official package's pins the machine's image lacks (transformers 4.57.3 and what goes with
# it, 19 MB), for `scripts/bench.py --cuda`; scripts/device_setup.sh installs both
OFFICIAL_WHEELS = qwen-tts==0.1.1 transformers==4.57.3 tokenizers==0.22.2 huggingface_hub==0.36.2 librosa==0.11.0 \
	soundfile==0.14.0 soxr==1.1.0 sox==1.4.1 audioread==3.1.0 pooch==1.9.0 lazy_loader==0.6 cffi==2.1.1 \
	pycparser==3.12 decorator==5.3.1 platformdirs==4.14.9
DEVICE_PLATFORM = --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
	--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
device-wheels:
	rm -rf .whl && mkdir -p .whl/official && cd .whl && $(abspath $(BIN))/pip download --quiet --no-deps $(DEVICE_PLATFORM) \
		'onnxruntime-gpu>=1.31' -d . \
		&& for w in *.whl; do split -b 56M "$$w" "$$w.part-" && rm "$$w"; done \
		&& $(abspath $(BIN))/pip download --quiet --no-deps $(DEVICE_PLATFORM) $(OFFICIAL_WHEELS) -d official \
		&& ls -l . official
