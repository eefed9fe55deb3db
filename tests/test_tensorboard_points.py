"""TensorBoard as a run leaves it: every curve has one point per step (the final HPARAMS entry
names the metrics without logging them again), HPARAMS list the model, data and every adapter
setting, and a Hugging Face causal LM on plain text (data=lm_text) writes TEXT samples."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from tests.conftest import compose_config

pytest.importorskip("tensorboard")


def events_of(run_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # fit, test and the final hparams may each open an event file: read the run's folder
    (folder,) = (run_dir / "tensorboard").glob("*/")
    events = EventAccumulator(str(folder), size_guidance={"tensors": 0, "scalars": 0})
    events.Reload()
    return events


@pytest.mark.slow
def test_no_curve_gets_a_step_twice_and_hparams_hold_model_data_and_adapter(tmp_path):
    from tensorboard.plugins.hparams import plugin_data_pb2

    from loralab.train import train

    overrides = ["model.checkpoint=null", "data.n_train=128", "data.n_val=64", "data.n_test=64",
                 "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
                 "callbacks.progress_bar=null", "logger=tensorboard"]  # fmt: skip
    metrics = train(compose_config("train", overrides, tmp_path / "run"))
    events = events_of(tmp_path / "run")
    tags = events.Tags()["scalars"]
    assert {"val/acc", "test/acc", "train/loss_epoch"} <= set(tags)
    # Lightning adds its `epoch` counter to each logging call (train and val share a step)
    for tag in set(tags) - {"epoch"}:
        steps = Counter(event.step for event in events.Scalars(tag))
        assert max(steps.values()) == 1, (tag, steps)

    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    for key in ("adapter.name", "adapter.rank", "adapter.scaling", "adapter.init",
                "adapter.dropout", "model._target_", "model.net.d_model", "data._target_",
                "data.n_train", "seed", "run_name"):  # fmt: skip
        assert key in hparams, key
    assert hparams["adapter.scaling"].string_value == "standard"
    assert hparams["data.n_train"].number_value == 128
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    assert {m.name.tag for m in experiment.experiment.metric_infos} == set(metrics)
    # the value TensorBoard shows for test/acc is the one the test logged
    assert events.Scalars("test/acc")[-1].value == pytest.approx(metrics["test/acc"])


@pytest.mark.slow
def test_a_hugging_face_causal_lm_on_plain_text_logs_text_samples(tmp_path):
    from tests.test_newcomer import own_tokenizer_gpt2

    from loralab.train import train

    model = own_tokenizer_gpt2(tmp_path / "gpt2")
    overrides = ["data=lm_text", "model=hf", "model.task=causal_lm", "task=language_modeling",
                 f"model.pretrained_model_name_or_path={model}", "data.block_size=32",
                 "data.n_train=32", "data.n_val=8", "data.n_test=8", "adapter.targets=[c_attn]",
                 "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                 "callbacks.progress_bar=null", "callbacks.text_samples.max_new_tokens=8",
                 "monitor.metric=val/loss", "monitor.mode=min", "optimized_metric=val/loss",
                 "logger=tensorboard"]  # fmt: skip
    train(compose_config("train", overrides, tmp_path / "run"))
    events = events_of(tmp_path / "run")
    assert "samples/text_summary" in events.Tags()["tensors"]
    (sample,) = events.Tensors("samples/text_summary")
    assert sample.tensor_proto.string_val[0].decode().startswith("```\n")
