"""The interleaved probe: contenders take turns, and each point's step is rebuilt from its
config and counted exactly (gradients and Adam state of what trains, nothing else)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import TINY, compose_config

from loralab.errors import MissingFileError
from loralab.lora import apply_adapter, count_parameters
from loralab.report.probe import MIN_ROUNDS, Schedule, probe, run_config, timed_rounds


def test_contenders_take_turns_round_by_round():
    calls: list[str] = []
    steps = {name: (lambda name=name: calls.append(name)) for name in ("full", "lora")}
    times = timed_rounds(steps, rounds=3, steps_per_round=2)
    assert calls == ["full", "full", "lora", "lora"] * 3
    assert [len(t) for t in times.values()] == [3, 3]


def test_probe_rebuilds_each_point_and_counts_its_step_memory(tmp_path, pretrained_backbone):
    configs = {
        name: compose_config(
            "train", [*TINY, f"model.checkpoint={pretrained_backbone}", *overrides], tmp_path / name
        )
        for name, overrides in {"full": ["adapter=full"], "lora": ["adapter=lora"]}.items()
    }
    configs["broken"] = compose_config(
        "train", [*TINY, "model.checkpoint=/nowhere/base.safetensors"], tmp_path / "broken"
    )
    probed = probe(configs, Schedule(rounds=2, steps_per_round=1), budget_s=None)
    results, errors = probed.results, probed.errors
    assert probed.schedule == Schedule(2, 1)
    assert set(results) == {"full", "lora"} and "model.checkpoint" in errors["broken"]
    for name, result in results.items():
        assert result.step_ms > 0 and len(result.rounds_ms) == 2 and result.device == "cpu"
        assert result.batch_shape == [configs[name].data.batch_size, configs[name].data.seq_len]
        # float32 gradients of exactly what trains; AdamW keeps two moments per weight
        model = compose_model(configs[name])
        assert result.gradients == 4 * count_parameters(model).trainable
        assert result.optimizer_state == 2 * result.gradients
    assert results["lora"].parameters >= results["full"].parameters  # the adapter is extra
    assert results["lora"].memory_bytes < results["full"].memory_bytes


def test_the_schedule_fits_its_budget_fewer_steps_per_round_first_then_fewer_rounds():
    schedule = Schedule(rounds=7, steps_per_round=4)
    # 7 x 4 steps of a 0.1 s round: 2.8 s, within 60 s
    assert schedule.fitted(0.1, 60.0) == schedule
    assert schedule.fitted(100.0, None) == schedule
    # 1 s a round: 28 s of steps do not fit 20 s; 7 rounds of 2 steps (14 s) do
    assert schedule.fitted(1.0, 20.0) == Schedule(7, 2)
    # a 135M LLM sweep, 4 points at ~3 s a step: 12.5 s a round, 60 s -> 4 rounds of 1 step
    assert schedule.fitted(12.5, 60.0) == Schedule(4, 1)
    # however slow, never fewer than MIN_ROUNDS rounds of one step
    assert schedule.fitted(1000.0, 60.0) == Schedule(MIN_ROUNDS, 1)
    assert Schedule(2, 4).fitted(1000.0, 1.0) == Schedule(2, 1)


def test_a_slow_probe_times_fewer_steps(tmp_path, pretrained_backbone):
    cfg = compose_config("train", [*TINY, f"model.checkpoint={pretrained_backbone}"], tmp_path)
    # a budget no step fits: the fewest rounds of one step
    probed = probe({"lora": cfg}, budget_s=1e-6)
    assert probed.schedule == Schedule(MIN_ROUNDS, 1)
    assert len(probed.results["lora"].rounds_ms) == MIN_ROUNDS


def compose_model(cfg):  # noqa: ANN001, ANN201 - a DictConfig in, a module out
    import hydra

    model = hydra.utils.instantiate(cfg.model)
    apply_adapter(model, cfg.adapter)
    return model


def test_a_run_folder_without_a_checkpoint_or_config_cannot_be_rebuilt(tmp_path: Path):
    with pytest.raises(MissingFileError, match="holds no checkpoint and no .hydra/config.yaml"):
        run_config(tmp_path)


@pytest.mark.parametrize(
    ("precision", "dtype"), [("32-true", "float32"), ("bf16-mixed", "bfloat16")]
)
def test_the_probe_times_the_step_at_the_runs_precision(tmp_path, precision, dtype):
    """A run trained with trainer.precision=bf16-mixed is timed with bfloat16 matmuls, as it
    trained, not in float32."""
    import torch

    from loralab.report.probe import TrainingStep
    from loralab.run.builder import build_run

    cfg = compose_config(
        "train", [*TINY, "model.checkpoint=null", f"trainer.precision={precision}"], tmp_path
    )
    step = TrainingStep(build_run(cfg), torch.device("cpu"))
    seen: list[torch.dtype] = []
    linear = next(m for m in step.task.modules() if isinstance(m, torch.nn.Linear))
    linear.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    step()
    assert seen and {str(d).removeprefix("torch.") for d in seen} == {dtype}
