# Two commands on a fresh machine:  `make demo` (train on the embedded default) and `make test`.
VENV   ?= .venv
PYTHON ?= python3
PIP     = $(VENV)/bin/pip
export HF_HUB_OFFLINE = 1
export TOKENIZERS_PARALLELISM = false

.PHONY: demo test lint install bench smollm2 clean

install: $(VENV)/.installed

# torch==2.13.0 first (the CPU wheel on these machines), then the project with pinned extras.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[test,math,gguf]"
	touch $@

demo: install
	$(VENV)/bin/regulator train configs/default.yaml

test: install
	$(VENV)/bin/python -m pytest -q

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(VENV)/bin/regulator bench configs/bench/sim_default.yaml

clean:
	rm -rf $(VENV) runs bench_out .pytest_cache
