"""The distributed path on CPU: DDP over gloo (trainer=ddp_sim), one run folder per run, and
the same numbers as one process with the same global batch."""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import pytest
import torch
import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict
from tests.conftest import compose_config, run_cli
from torch.nn.parallel import DistributedDataParallel

from loralab.eval import evaluate
from loralab.lora import apply_adapter
from loralab.models import TransformerEncoderClassifier
from loralab.run import distributed
from loralab.run.resolvers import config_dir
from loralab.train import train

QUIET = [
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
]
DATA = ["data.n_train=256", "data.n_val=64", "data.n_test=64", "trainer.max_epochs=1"]
COMPARED = ("val/acc", "val/loss", "test/acc", "test/loss", "train/loss_epoch")


def test_ddp_registers_and_reduces_only_the_trainable_tensors():
    """Frozen base weights are not DDP parameters at all: only adapters and head sync."""
    model = TransformerEncoderClassifier(
        vocab_size=64, num_classes=2, d_model=32, n_heads=2, n_layers=2, d_ff=64, max_len=16
    )
    lora = dict(name="lora", rank=4, alpha=8, dropout=0.0, init="kaiming", lr=1e-2)
    apply_adapter(
        model,
        OmegaConf.create({**lora, "targets": ["q_proj", "v_proj"], "trainable": ["classifier"]}),
    )
    trainable = [p for p in model.parameters() if p.requires_grad]
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(model, find_unused_parameters=False)
        for _ in range(2):  # an unused registered parameter would fail on the second step
            ids = torch.randint(1, 64, (4, 8))
            ddp(input_ids=ids, attention_mask=torch.ones(4, 8, dtype=torch.bool)).sum().backward()
        logged = ddp._get_ddp_logging_data()
    finally:
        dist.destroy_process_group()
    assert logged["num_parameter_tensors"] == len(trainable) == 2 * 2 * 2 + 2
    assert logged["total_parameter_size_bytes"] == sum(p.numel() * 4 for p in trainable)
    assert logged["unused_parameter_size"] == 0


def test_extra_processes_rerun_this_job_only(tmp_path, monkeypatch):
    """In a sweep, rank 1 runs job 1's overrides as a single run in job 1's folder."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("train", ["trainer=ddp_sim", "adapter.rank=4"], return_hydra_config=True)
    job_dir = tmp_path / "multiruns" / "t" / "1"
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(job_dir)
        cfg.hydra.runtime.cwd = str(tmp_path)
        cfg.hydra.job.name = "train"
    monkeypatch.setattr(HydraConfig.instance(), "cfg", None)  # restored after the test
    HydraConfig.instance().set_config(cfg)
    monkeypatch.setattr(distributed, "entry_module", lambda: "loralab.train")
    command, cwd = distributed.child_command(local_rank=1)
    assert command[1:4] == ["-m", "loralab.train", "--config-name=train"]
    assert "--multirun" not in command and command.count("-m") == 1
    assert ["trainer=ddp_sim", "adapter.rank=4"] == command[4:6]
    assert f"hydra.run.dir={job_dir}" in command and "hydra.output_subdir=null" in command
    assert cwd == str(tmp_path)


@pytest.mark.parametrize("trainer", ["ddp", "ddp_sim", "fsdp", "fsdp_sim"])
def test_strategy_configs_build(trainer, tmp_path):
    """GPU strategies can't run here; their configs still build real Lightning strategies."""
    strategy = hydra.utils.instantiate(
        compose_config("train", [f"trainer={trainer}"], tmp_path).trainer.strategy
    )
    assert isinstance(strategy, (distributed.HydraDDPStrategy, distributed.HydraFSDPStrategy))
    if trainer == "fsdp":  # LoRA needs frozen and trainable tensors in one FSDP unit
        assert strategy.kwargs["use_orig_params"] is True


PERF_TAGS = {"perf/step_time_ms", "perf/samples_per_s", "perf/tokens_per_s", "perf/peak_memory_mib"}


def tensorboard_tags(run_dir: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # fit, test and the final hparams may each open an event file: read the run's folder
    (folder,) = run_dir.glob("tensorboard/*/")
    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    return set(accumulator.Tags()["scalars"])


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.mark.slow
def test_ddp_sim_sweep_matches_one_process_and_makes_one_folder(tmp_path, pretrained_backbone):
    """2 processes x batch 16 = 1 process x batch 32: identical global batches, same metrics."""
    logs = tmp_path / "logs"
    base = [f"model.checkpoint={pretrained_backbone}", *DATA, *QUIET]
    run_cli(
        "loralab.train",
        "-m",
        "adapter=lora,full",
        "trainer=ddp_sim",
        "data.batch_size=16",
        f"paths.log_dir={logs}",
        *base,
    )
    base.append("logger=[]")
    sweeps = list((logs / "train" / "multiruns").iterdir())
    assert len(sweeps) == 1, sweeps  # no extra sweep (or run) folder from the second process
    assert not (logs / "train" / "runs").exists()
    jobs = sorted(p.name for p in sweeps[0].iterdir() if p.is_dir())
    assert jobs == ["0", "1"]

    for job, adapter in zip(jobs, ("lora", "full"), strict=True):
        ddp = _summary(sweeps[0] / job)
        assert ddp["status"] == "completed" and ddp["adapter"] == adapter
        single = train(
            compose_config(
                "train", [f"adapter={adapter}", "data.batch_size=32", *base], tmp_path / adapter
            )
        )
        for key in COMPARED:
            assert ddp["metrics"][key] == pytest.approx(single[key], abs=1e-4), key
        assert ddp["samples_per_s"] > 0 and ddp["step_time_ms"] > 0
        assert PERF_TAGS <= tensorboard_tags(sweeps[0] / job)  # measured cost, logged by rank 0

    # the adapter-only checkpoint of the DDP run evaluates in one process
    best = _summary(sweeps[0] / "0")["checkpoint_path"]
    evaluated = evaluate(compose_config("eval", [f"ckpt_path={best}"], tmp_path / "eval"))
    assert evaluated["test/acc"] == pytest.approx(
        _summary(sweeps[0] / "0")["metrics"]["test/acc"], abs=1e-6
    )


# --- FSDP (FSDP2's fully_shard on CPU processes) and Hugging Face causal LMs over 2 processes


def test_fsdp_on_cpu_fails_in_one_sentence(tmp_path):
    """torch's first FSDP (trainer=fsdp) refuses CPU devices: the run says so and names fsdp_sim."""
    from loralab.errors import ConfigError

    strategy = hydra.utils.instantiate(
        compose_config("train", ["trainer=fsdp"], tmp_path).trainer.strategy
    )
    with pytest.raises(ConfigError, match="trainer.accelerator=cpu.*trainer=fsdp_sim"):
        strategy.check_device(torch.device("cpu"))


def test_fsdp_sim_refuses_block_classes_the_model_lacks():
    from loralab.errors import ConfigError
    from loralab.run.sharded import block_types, shard_module

    with pytest.raises(ConfigError, match="trainer.strategy.block_classes: 'no.such.Block'"):
        block_types(["no.such.Block"])
    with pytest.raises(ConfigError, match="trainer.strategy.block_classes: the model has no"):
        shard_module(torch.nn.Sequential(torch.nn.Linear(2, 2)), (torch.nn.Conv1d,))


VOCAB = {1: "42", 2: "2500", 3: "43", 9: ""}


def oracle_examples():
    """Five prompts (an odd count: the ranks get 3 and 2); three of their answers are right."""
    from loralab.data.base import GenerationSet

    return GenerationSet(
        prompts=["a", "b", "c", "d", "e"],
        prompt_ids=[[5], [6, 6], [7], [8, 8, 8], [4]],
        answers=["42", "2500", "42", "42", "2500"],
        stop_ids=frozenset({9}),
        pad_id=0,
        decode=lambda ids: "".join(VOCAB[i] for i in ids),
    )


def oracle_model():
    """A model whose `generate` writes fixed answers, and records the prompts it was asked."""
    from tests.test_llm_task import Oracle

    class Recording(Oracle):
        def generate(self, input_ids, attention_mask, generation_config):
            self.asked = getattr(self, "asked", [])
            self.asked += [
                ids[m.bool()].tolist() for ids, m in zip(input_ids, attention_mask, strict=True)
            ]
            return super().generate(input_ids, attention_mask, generation_config)

    answers = {(5,): [1, 9], (6, 6): [2, 9], (7,): [3, 9], (8, 8, 8): [1, 9], (4,): [1, 9]}
    return Recording(answers)


def _answer_on_two_ranks(rank: int, port: int, out: str) -> None:
    """Rank `rank` of 2 scores 5 prompts (an odd count) with answers split across the ranks."""
    import os

    from loralab.tasks.across_ranks import score_across_ranks

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        model, examples = oracle_model(), oracle_examples()
        score = score_across_ranks(model, examples, max_new_tokens=4, batch_size=2)
        asked = model.asked
        Path(out, f"{rank}.json").write_text(
            json.dumps({"exact_match": score.exact_match, "asked": asked})
        )
    finally:
        dist.destroy_process_group()


def test_exact_match_over_two_ranks_answers_each_prompt_once_and_scores_the_whole_set(tmp_path):
    """Each rank answers every other prompt, no prompt twice (no sampler padding), and both
    ranks score all five answers exactly as one process does."""
    import socket

    import torch.multiprocessing as mp

    from loralab.tasks.exact_match import score_generation

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(
        _answer_on_two_ranks, args=(port, str(tmp_path)), nprocs=2, start_method="spawn"
    )
    ranks = [json.loads((tmp_path / f"{r}.json").read_text()) for r in (0, 1)]
    single = score_generation(oracle_model(), oracle_examples(), max_new_tokens=4, batch_size=2)
    assert single.exact_match == pytest.approx(3 / 5)
    assert [r["exact_match"] for r in ranks] == [single.exact_match] * 2
    assert [len(r["asked"]) for r in ranks] == [3, 2]
    asked = [p for r in ranks for p in r["asked"]]
    assert sorted(asked) == sorted(oracle_examples().prompt_ids)  # each prompt once


def _full_tensors(checkpoint: Path, run_dir: Path) -> dict[str, tuple[int, ...]]:
    """Shapes of a checkpoint's tensors; they equal the adapter file's (nothing is a shard)."""
    from safetensors.torch import load_file

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    adapter = load_file(run_dir / "adapter.safetensors")
    assert {k.removeprefix("model."): tuple(v.shape) for k, v in state.items()} == {
        k: tuple(v.shape) for k, v in adapter.items()
    }
    return {k: tuple(v.shape) for k, v in state.items()}


@pytest.mark.slow
def test_fsdp_sim_lora_matches_one_process_and_its_checkpoint_is_whole(
    tmp_path, pretrained_backbone
):
    """FSDP2 over 2 CPU processes x batch 16 = 1 process x batch 32; only the adapter (and
    head) trained; one run folder; eval, merge and export read its checkpoint."""
    from loralab.export import export
    from loralab.merge import merge

    run_dir = tmp_path / "fsdp"
    base = [f"model.checkpoint={pretrained_backbone}", *DATA, *QUIET, "logger=[]"]
    run_cli(
        "loralab.train", "trainer=fsdp_sim", "data.batch_size=16", f"hydra.run.dir={run_dir}", *base
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fsdp"]  # no folder per rank
    fsdp = _summary(run_dir)
    single = train(compose_config("train", ["data.batch_size=32", *base], tmp_path / "one"))
    for key in COMPARED:
        assert fsdp["metrics"][key] == pytest.approx(single[key], abs=1e-4), key
    assert fsdp["trainable_params"] == 2 * 2 * 2 * 8 * 128 + 2 * 128 + 2  # LoRA r=8 q,v + head

    shapes = _full_tensors(Path(fsdp["checkpoint_path"]), run_dir)
    assert shapes["model.layers.0.attn.q_proj.lora_A"] == (8, 128)
    ckpt = f"ckpt_path={fsdp['checkpoint_path']}"
    evaluated = evaluate(compose_config("eval", [ckpt], tmp_path / "eval"))
    assert evaluated["test/acc"] == pytest.approx(fsdp["metrics"]["test/acc"], abs=1e-6)
    merged = tmp_path / "merged.safetensors"
    merge(compose_config("merge", [ckpt, f"output={merged}"], tmp_path / "merge"))
    assert merged.stat().st_size > 0
    export(compose_config("export", [ckpt, f"output={tmp_path / 'peft'}"], tmp_path / "export"))
    assert (tmp_path / "peft" / "adapter_model.safetensors").is_file()


LLAMA_BLOCK = "[transformers.models.llama.modeling_llama.LlamaDecoderLayer]"
LLM_COMPARED = (
    "val/loss",
    "val/ppl",
    "test/loss",
    "test/ppl",
    "val/exact_match",
    "test/exact_match",
)


@pytest.fixture(scope="module")
def llm_overrides(tmp_path_factory) -> list[str]:
    """A tiny Llama with data=instruct on a few rows (val 4, test 6: even, so no sampler pads)."""
    pytest.importorskip("transformers")
    from tests.test_llm_task import ROWS, data_overrides
    from tests.tiny_llm import write_jsonl, write_tiny_llama

    root = tmp_path_factory.mktemp("llm")
    model = write_tiny_llama(root / "llama")
    overrides = data_overrides(root, model, ROWS * 8)
    write_jsonl(root / "test.jsonl", ROWS + ROWS[:2])
    return [*overrides, "task.max_new_tokens=6", "trainer.max_epochs=1", "logger=[]"]


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["ddp_sim", "fsdp_sim"])
def test_tiny_llama_instruct_on_two_processes_matches_one(trainer, tmp_path, llm_overrides):
    """2 processes x batch 4 = 1 process x batch 8: the same losses (the gradient is the mean
    over the global batch's tokens) and exact match scored once over the whole set."""
    extra = [f"trainer.strategy.block_classes={LLAMA_BLOCK}"] if trainer == "fsdp_sim" else []
    run_dir = tmp_path / trainer
    run_cli(
        "loralab.train",
        f"trainer={trainer}",
        "data.batch_size=4",
        f"hydra.run.dir={run_dir}",
        *extra,
        *llm_overrides,
    )
    multi = _summary(run_dir)["metrics"]
    single = train(compose_config("train", ["data.batch_size=8", *llm_overrides], tmp_path / "one"))
    for key in LLM_COMPARED:
        assert multi[key] == pytest.approx(single[key], rel=1e-4, abs=1e-5), key
    assert multi["val/loss"] < multi["val/loss_start"]  # the adapter trained
    _full_tensors(Path(_summary(run_dir)["checkpoint_path"]), run_dir)
