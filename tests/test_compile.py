"""`compile=true`: the repeated blocks run compiled and compute what the eager model computes.

Checked: gradients of LoRA, DoRA, QLoRA and full fine-tuning equal eager ones (traced with
`aot_eager`, which runs the same operators through the compiler's graph capture); a real
`inductor` run of the CLI trains, validates and tests to the eager run's metrics and writes
the same checkpoint keys; a Hugging Face causal LM generates the same answers compiled; a block
whose compiler fails warns naming it and runs eagerly; a bad scope fails in one sentence.
"""

from __future__ import annotations

import json

import pytest
import torch
from tests.adapter_models import adapter_cfg, pretend_trained, tiny_backbone, token_batch
from tests.conftest import TINY, compose_config

from loralab.errors import ConfigError
from loralab.lora import apply_adapter
from loralab.run.compiled import compile_model, repeated_blocks

ADAPTERS = {
    "lora": adapter_cfg(),
    "dora": adapter_cfg(name="dora"),
    "qlora": adapter_cfg(quant="nf4"),
    "full": {"name": "full"},
}


def adapted_pair(adapter: dict) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Two copies of one adapted tiny encoder (adapter moved off its init): eager, compiled."""
    eager = tiny_backbone()
    apply_adapter(eager, adapter)
    pretend_trained(eager)
    twin = tiny_backbone()
    apply_adapter(twin, adapter)
    twin.load_state_dict(eager.state_dict())
    return eager, twin


def trained_grads(model: torch.nn.Module) -> list[torch.Tensor]:
    model.zero_grad()
    model(token_batch()).pow(2).sum().backward()
    return [p.grad.clone() for p in model.parameters() if p.requires_grad]


@pytest.mark.parametrize("name", ADAPTERS)
def test_compiled_blocks_give_the_eager_gradients_and_keep_the_state_keys(name):
    eager, compiled = adapted_pair(ADAPTERS[name])
    assert compile_model(compiled, backend="aot_eager") == ["layers.0", "layers.1"]
    for _ in range(2):  # the second call reuses the compiled graph
        expected, got = trained_grads(eager), trained_grads(compiled)
        assert len(got) == len(expected) > 0
        assert max((a - b).abs().max().item() for a, b in zip(expected, got, strict=True)) <= 1e-6
    assert list(compiled.state_dict()) == list(eager.state_dict())


def test_repeated_blocks_are_the_outermost_lists_of_one_class():
    model = torch.nn.Sequential(
        torch.nn.ModuleList([torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)]),
        torch.nn.ModuleList([torch.nn.Linear(2, 2), torch.nn.ReLU()]),  # mixed: not a stack
    )
    assert [path for path, _ in repeated_blocks(model)] == ["0.0", "0.1"]
    assert [path for path, _ in repeated_blocks(tiny_backbone())] == ["layers.0", "layers.1"]
    # no repeated blocks: the whole model is compiled
    assert compile_model(torch.nn.Linear(2, 2), backend="aot_eager") == [""]


def test_a_block_whose_compiler_fails_warns_naming_it_and_runs_eagerly():
    def broken_backend(graph, example_inputs):
        raise RuntimeError("no kernels today")

    eager, compiled = adapted_pair(adapter_cfg())
    compile_model(compiled, backend=broken_backend)
    with pytest.warns(
        UserWarning,
        match=r"compile: layers\.0 \(TransformerBlock\) could not be compiled \(RuntimeError: no kernels today\)",
    ):
        got = compiled(token_batch())
    assert torch.equal(got, eager(token_batch()))


def test_an_unknown_scope_fails_in_one_sentence():
    with pytest.raises(ConfigError, match="compile_options.scope must be one of regional, whole"):
        compile_model(tiny_backbone(), scope="layers")


def test_a_compiled_hugging_face_llm_generates_the_eager_answers(tmp_path):
    from tests.tiny_llm import write_tiny_llama

    from loralab.models.generation import generate_many
    from loralab.models.hf import build_hf_model

    folder = write_tiny_llama(tmp_path / "llama")
    models = []
    for _ in range(2):
        model = build_hf_model(str(folder), task="causal_lm")
        apply_adapter(
            model, {"name": "lora", "rank": 4, "alpha": 8, "targets": ["q_proj", "v_proj"]}
        )
        models.append(model)
    models[1].load_state_dict(models[0].state_dict())
    pretend_trained(models[0])
    models[1].load_state_dict(models[0].state_dict())
    assert len(compile_model(models[1], backend="aot_eager")) == 2
    prompts = [[5, 9, 13], [7, 8], [20, 21, 22, 23, 24]]
    answers = [generate_many(m, prompts, 6, stop_ids={0}, pad_id=0) for m in models]
    assert answers[0] == answers[1] and any(answers[0])


@pytest.mark.slow
def test_compile_true_trains_with_inductor_to_the_eager_metrics(tmp_path):
    from loralab.train import train

    results = {}
    for flag in ("false", "true"):
        folder = tmp_path / flag
        # a seeded random base: the same in both runs, and no pretrained file to need
        overrides = [*TINY, "logger=[]", "model.checkpoint=null", f"compile={flag}"]
        train(compose_config("train", overrides, folder))
        summary = json.loads((folder / "summary.json").read_text())
        state = torch.load(summary["checkpoint_path"], weights_only=True)["state_dict"]
        results[flag] = (summary["metrics"], sorted(state))
    (eager, eager_keys), (compiled, compiled_keys) = results["false"], results["true"]
    assert compiled_keys == eager_keys
    for key in ("val/acc_best", "test/acc", "test/loss"):
        assert abs(compiled[key] - eager[key]) <= 1e-3, key
