# The front door. `make demo` and `make test` are the only two commands a newcomer needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION := 2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint format bench clean peers gpu-wheels

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# the pinned CPU torch first: an unpinned resolve would pull a multi-GB CUDA build
	$(BIN)/python -m pip install -q torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/videomae2 demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/videomae2 bench forward

# PyAV for the lent GPU machine (Python 3.12, no registry there): carried as .whl/ by
# benchmarks/gpu_check.sh's run; see benchmarks/bench_gpu.py.
gpu-wheels:
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
	  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
	  -d .whl av==18.1.0

peers:
	bash ../shared/peers/install-mmaction2.sh .peers/mmaction2

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
