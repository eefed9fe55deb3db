"""Checkpoints are read with weights_only=True: a pickle payload never runs, bad files fail in
one sentence (the CLI path of each entry point is in tests/test_fault_injection.py)."""

from __future__ import annotations

import pytest
import torch
from tests.test_fault_injection import Payload

from loralab.errors import ConfigError, MissingFileError
from loralab.models import TransformerEncoderClassifier, save_backbone
from loralab.run.builder import read_checkpoint
from loralab.run.resume import check_resume_config


def test_a_payload_is_refused_before_it_runs_naming_what_it_wanted(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hook": Payload(tmp_path / "pwned")}, path)
    with pytest.raises(ConfigError, match=r"\(the global \S+open\), which loralab never unpickles"):
        read_checkpoint(path)
    with pytest.raises(ConfigError, match="never unpickles"):
        check_resume_config(str(path), None)  # the resume reads it the same way
    assert not (tmp_path / "pwned").exists()


def test_bad_files_fail_in_one_sentence_each(tmp_path):
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.ones(300, 300)}}, good)
    assert torch.equal(read_checkpoint(good)["state_dict"]["w"], torch.ones(300, 300))

    truncated = tmp_path / "half.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    notes = tmp_path / "notes.ckpt"
    notes.write_text("not a checkpoint")
    backbone = tmp_path / "base.safetensors"
    save_backbone(TransformerEncoderClassifier(50, 2, d_model=8, n_heads=2, n_layers=1), backbone)
    listing = tmp_path / "list.ckpt"
    torch.save([1, 2, 3], listing)
    cases = {
        truncated: r"is a damaged or truncated checkpoint \(",
        notes: r"is not a PyTorch checkpoint \(it starts with b'not '\)",
        backbone: r"is a safetensors file \(a backbone or an adapter\), not a training checkpoint",
        listing: r"holds a list, not a training checkpoint",
    }
    for path, message in cases.items():
        with pytest.raises(ConfigError, match=rf"^my_key: {path} {message}.*best\.ckpt"):
            read_checkpoint(path, key="my_key")
    with pytest.raises(MissingFileError, match="ckpt_path: no checkpoint at"):
        read_checkpoint(tmp_path / "absent.ckpt")
