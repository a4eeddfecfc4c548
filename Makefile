# fhdr: `make demo`, `make test`, `make bench`. Everything runs inside .venv at the repository root.
# `make install`/`make demo` install what fhdr needs (`pip install -e .`); `make test`, `make bench` and
# `make lint` add the dev extra (pytest, ruff, hypothesis, ONNX, Ray).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fhdr-installed
DEV_STAMP := $(VENV)/.fhdr-dev-installed
TORCH_CPU := torch==2.13.0

.PHONY: install install-dev demo test bench lint clean

install: $(STAMP)

install-dev: $(DEV_STAMP)

# torch is installed first only when the venv has none: a user with a GPU installs their CUDA build
# into .venv beforehand, and the CPU build never replaces it.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet $(TORCH_CPU)
	$(BIN)/pip install --quiet -e .
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(DEV_STAMP)

demo: install
	mkdir -p out
	$(BIN)/fhdr convert samples/quarry_ldr.png out/quarry_hdr.exr
	$(BIN)/python samples/summary.py samples/quarry_ldr.png out/quarry_hdr.exr

test: install-dev
	$(BIN)/python -m pytest -q

bench: install-dev
	$(BIN)/python -m benchmarks

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache
