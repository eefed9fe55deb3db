"""`python -m loralab.memory --hf-config <SmolLM2's config.json>` against measured training
steps of a model of that shape (random weights: memory does not depend on their values)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

pytest.importorskip("transformers")
pytest.importorskip("gguf")

from loralab.lora import apply_adapter  # noqa: E402
from loralab.measure.step import measure_step_memory  # noqa: E402
from loralab.memory import main  # noqa: E402

BATCH, SEQ = 4, 64
MB = 1e6


@pytest.fixture(scope="module")
def smollm2_config() -> Path:
    from loralab.models.gguf import smollm2_folder
    from loralab.run.resolvers import project_root

    return Path(smollm2_folder(Path(project_root()) / "checkpoints")) / "config.json"


def measured_total(config_path: Path, adapter: dict | None) -> float:
    """Weights and buffers as stored, gradients, Adam state and saved activations of one step."""
    from transformers import LlamaConfig, LlamaForCausalLM

    settings = json.loads(config_path.read_text())
    settings = {
        k: v for k, v in settings.items() if k not in ("architectures", "transformers_version")
    }
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**settings)).train()
    model.config.use_cache = False
    if adapter is not None:
        apply_adapter(model, OmegaConf.create(adapter))
    ids = torch.randint(3, 49_000, (BATCH, SEQ), generator=torch.Generator().manual_seed(0))

    def loss(m):
        return F.cross_entropy(m(input_ids=ids).logits.flatten(0, 1), ids.flatten())

    step = measure_step_memory(model, loss)
    # QLoRA's codes and scales are buffers, which the step's parameter count leaves out
    buffers = sum(b.untyped_storage().nbytes() for b in model.buffers())
    return step.total + buffers


@pytest.mark.slow
def test_the_planner_is_within_5_percent_of_measured_smollm2_steps(smollm2_config, capsys):
    table = main(
        ["--hf-config", str(smollm2_config), "--batch", str(BATCH), "--seq-len", str(SEQ),
         "--dtype", "fp32", "--rank", "8", "--targets", "q_proj,v_proj"]
    )  # fmt: skip
    assert capsys.readouterr().out.startswith("smollm2-135m-instruct: 0.135B parameters")
    planned = {line.split()[0]: float(line.split()[-1]) * 1e9 for line in table.splitlines()[3:6]}
    lora = {
        "name": "lora",
        "rank": 8,
        "alpha": 16,
        "targets": ["q_proj", "v_proj"],
        "trainable": [],
    }
    measured = {
        "full": measured_total(smollm2_config, None),
        "lora": measured_total(smollm2_config, lora),
        "qlora": measured_total(smollm2_config, {**lora, "quant": "nf4", "double_quant": True}),
    }
    for method, value in measured.items():
        print(f"{method}: planned {planned[method] / MB:.1f} MB, measured {value / MB:.1f} MB")
        assert planned[method] == pytest.approx(value, rel=0.05), method
    assert measured["lora"] < 0.4 * measured["full"]
