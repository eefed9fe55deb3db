#!/usr/bin/env bash
# The GPU check in one command (docs/scaling.md): scripts/gpu_check.sh [--cpu] [--out DIR]
# writes DIR/gpu_check.json and DIR/gpu_check.md (default logs/gpu_check/).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
# the converted SmolLM2 folder, once (the CPU form uses a tiny Llama instead)
if [[ " $* " != *" --cpu "* && ! -e checkpoints/smollm2-135m-instruct/config.json ]]; then
  "$PY" -m loralab.models.gguf
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
exec "$PY" scripts/gpu_check.py "$@"
