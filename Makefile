# Every daily action of loralab. `make train` and `make test` work from a fresh clone:
# they create .venv with the pinned, tested versions first.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
PRETRAINED := checkpoints/tiny_encoder.safetensors
# extra Hydra overrides, e.g. make train ARGS="adapter=full trainer.max_epochs=2"
ARGS ?=
# the log folder TensorBoard shows
LOGDIR ?= logs
# the checkpoint `make eval` tests
CKPT ?=

.PHONY: help install pretrain train eval test test-fast bench tensorboard lint format clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev,hf]"
	touch $@

install: $(INSTALLED) ## create .venv with the pinned, tested versions

$(PRETRAINED): | $(INSTALLED)
	$(PY) -m loralab.train experiment=pretrain

pretrain: $(INSTALLED) ## pretrain the tiny backbone (checkpoints/tiny_encoder.safetensors)
	$(PY) -m loralab.train experiment=pretrain $(ARGS)

train: $(INSTALLED) $(PRETRAINED) ## fine-tune with LoRA r=8 on q,v (pretrains once if needed)
	$(PY) -m loralab.train $(ARGS)

eval: $(INSTALLED) ## test a checkpoint: make eval CKPT=logs/train/runs/<time>/checkpoints/best.ckpt
	$(PY) -m loralab.eval ckpt_path=$(CKPT) $(ARGS)

test: $(INSTALLED) ## the whole test suite, end-to-end CLI runs included
	$(PY) -m pytest -q

test-fast: $(INSTALLED) ## the suite without the slow end-to-end runs
	$(PY) -m pytest -q -m "not slow"

bench: $(INSTALLED) ## LoRA vs full: step time, peak memory, merged inference (ratios)
	$(PY) scripts/bench.py

tensorboard: $(INSTALLED) ## TensorBoard over logs/ (or LOGDIR=a/sweep/folder)
	$(PY) -m tensorboard.main --logdir $(LOGDIR)

lint: $(INSTALLED) ## ruff lint and format check
	$(VENV)/bin/ruff check src tests scripts
	$(VENV)/bin/ruff format --check src tests scripts

format: $(INSTALLED) ## apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff check --fix src tests scripts
	$(VENV)/bin/ruff format src tests scripts

clean: ## remove logs and caches (keeps .venv and checkpoints/)
	find logs -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
	rm -rf .pytest_cache .ruff_cache
	find . -name __pycache__ -not -path './.venv/*' -exec rm -rf {} +
