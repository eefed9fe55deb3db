"""What fine-tuning forgets: the source task's metric before and after, measured by the
SourceEvaluation callback, on runs whose source metric must get worse."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import hydra
import pytest
import torch
from tests.conftest import compose_config
from torch import nn

from loralab.callbacks.source_eval import (
    SourceEvaluation,
    check_vocabulary,
    evaluate,
    read_head,
    swapped,
)
from loralab.data import SyntheticDataModule
from loralab.errors import ConfigError
from loralab.tasks import ClassificationTask, LanguageModelingTask
from loralab.train import train


def test_full_fine_tuning_at_a_high_rate_loses_the_source_task(train_cfg, pretrained_backbone):
    cfg = train_cfg(
        f"model.checkpoint={pretrained_backbone}",
        "adapter=full",
        "adapter.lr=1e-2",
        "data.n_train=512",
        "logger=[]",
    )
    metrics = train(cfg)
    # the pretrained model, with its own 8-class head, before the first step ...
    assert metrics["source/acc_start"] == pytest.approx(
        base_source_accuracy(pretrained_backbone, cfg)
    )
    # ... and the fine-tuned features under that head afterwards: overwritten
    assert metrics["source/acc"] < metrics["source/acc_start"] - 0.05
    # the target before the first step: a new random head, near chance on two classes
    assert 0.3 < metrics["test/acc_start"] < 0.7
    summary = json.loads((Path(cfg.paths.output_dir) / "summary.json").read_text())
    assert summary["test_size"] == cfg.data.n_test
    assert summary["source"].startswith("majority_group accuracy")
    assert summary["metrics"]["source/acc"] == pytest.approx(metrics["source/acc"])


def base_source_accuracy(backbone: Path, cfg) -> float:
    """The pretrained model's own test accuracy on its task, computed without the callback."""
    pretrain = compose_config(
        "train",
        ["experiment=pretrain", f"model.checkpoint={backbone}", "model.skip=[]"],
        Path(cfg.paths.output_dir) / "base",
    )
    model = hydra.utils.instantiate(pretrain.model).eval()
    return _accuracy(model, hydra.utils.instantiate(cfg.source.data))


def _accuracy(model: nn.Module, data: SyntheticDataModule) -> float:
    data.setup("test")
    correct = total = 0
    with torch.no_grad():
        for batch in data.test_dataloader():
            logits = model(batch["input_ids"], batch["attention_mask"])
            correct += int((logits.argmax(-1) == batch["labels"]).sum())
            total += len(batch["labels"])
    return correct / total


def test_without_a_source_only_the_target_start_is_measured(train_cfg, pretrained_backbone):
    cfg = train_cfg(f"model.checkpoint={pretrained_backbone}", "~source", "debug=fdr")
    metrics = train(cfg)
    assert "test/acc_start" in metrics
    assert not any(key.startswith("source/") for key in metrics)


class FixedLogits(nn.Module):
    """A 'model' whose logits are given: the metric's arithmetic is all that is tested."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None):  # noqa: ANN001, ARG002
        return self.logits[input_ids[:, 0]]


def test_evaluate_counts_accuracy_per_sequence_and_perplexity_per_token():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])  # predicts 0, 1, 0
    task = ClassificationTask(FixedLogits(logits), num_classes=2, optimizer=None)
    batches = [{"input_ids": torch.tensor([[0], [1], [2]]), "labels": torch.tensor([0, 1, 1])}]
    assert evaluate(task, batches) == ("acc", pytest.approx(2 / 3))

    # one sequence of 3 positions; the last is padding (-100) and must not count
    token_logits = torch.log(torch.tensor([[[0.5, 0.5], [0.25, 0.75], [0.9, 0.1]]]))
    lm = LanguageModelingTask(FixedLogits(token_logits), optimizer=None)
    batch = {"input_ids": torch.tensor([[0, 0, 0]]), "labels": torch.tensor([[0, 1, -100]])}
    kind, ppl = evaluate(lm, [batch])
    # exp(mean(-log 0.5, -log 0.75)) = 1 / sqrt(0.5 * 0.75)
    assert kind == "ppl" and ppl == pytest.approx(1 / math.sqrt(0.5 * 0.75))
    assert lm.training  # the mode it had before


def test_the_base_head_is_swapped_in_and_the_runs_head_always_comes_back(pretrained_backbone):
    head = read_head(str(pretrained_backbone), "classifier")
    assert head.out_features == 8 and not head.weight.requires_grad
    model = nn.Sequential()
    model.classifier = nn.Linear(head.in_features, 2)
    own = model.classifier
    with pytest.raises(RuntimeError), swapped(model, "classifier", head):
        assert model.classifier.out_features == 8
        raise RuntimeError("an evaluation that fails")
    assert model.classifier is own
    with pytest.raises(ConfigError, match="source.head=nope"):
        read_head(str(pretrained_backbone), "nope")


def test_a_source_read_with_another_vocabulary_is_refused():
    with pytest.raises(ConfigError, match="source.data emits 12 token ids but data emits 78"):
        check_vocabulary(SimpleNamespace(vocab_size=12), SimpleNamespace(vocab_size=78))
    check_vocabulary(SimpleNamespace(vocab_size=78), SimpleNamespace(vocab_size=78))


def test_a_resumed_run_keeps_its_start_metrics():
    logged: dict[str, float] = {}
    module = SimpleNamespace(log=lambda key, value, **_: logged.__setitem__(key, value))
    first = SourceEvaluation(source=None, base_checkpoint=None)
    first.start = {"source/acc_start": 0.97, "test/acc_start": 0.5}
    resumed = SourceEvaluation(source=None, base_checkpoint=None)
    resumed.load_state_dict(first.state_dict())
    # resumed at step 40: the model is no longer the one that started; nothing is re-measured
    resumed.on_train_start(SimpleNamespace(global_step=40, datamodule=None), module)
    assert logged == {"source/acc_start": 0.97, "test/acc_start": 0.5}
