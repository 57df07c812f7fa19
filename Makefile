# Two entry points for a fresh machine:
#   make demo   set up .venv, build, and train on the embedded Amazon-670K-shaped data
#   make test   set up .venv, build, and run the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SOURCES := pyproject.toml setup.py $(wildcard kernels/*.pyx kernels/include/slide/*.h kernels/include/slide/emu/*.h)
DEMO_ARGS ?= --max-samples 50000 --eval-samples 1000

.PHONY: demo test bench clean

$(STAMP): $(SOURCES)
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/slide-workbench train $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m pytest bench --benchmark-only

clean:
	rm -rf build $(VENV) kernels/*.so kernels/*.c *.egg-info
