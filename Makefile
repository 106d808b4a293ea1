# The two commands a new user runs (README): `make demo` and `make test`.
# Both create .venv/ inside the repo when missing, install torch first, then the project.
#
# GPU users: choose a CUDA build of torch before anything else pulls one in, e.g.
#   make demo TORCH_SPEC="torch==2.13.0" TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX_URL ?=
PYTEST_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.ecomharness-installed

.PHONY: demo test setup clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml $(wildcard plugins/*/pyproject.toml)
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ is required, found " + sys.version' 
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first: installing lm-eval or deepspeed first pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)" $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	# [ray]: the tests run the Ray Data engine of `data build` in local mode.
	$(BIN)/python -m pip install --quiet -e ".[dev,ray]"
	# The domain-benchmark plugins, installed as any user's plugin would be (plugins/*/README.md).
	$(BIN)/python -m pip install --quiet -e plugins/ecomharness-ecinstruct -e plugins/ecomharness-shopping-mmlu
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ecomharness demo

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
