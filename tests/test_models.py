"""The tiny backbone: shapes, masking, attention maths, and pretrained-backbone files."""

from __future__ import annotations

import math

import pytest
import torch

from loralab.errors import BackboneCheckpointError
from loralab.models import (
    MultiHeadAttention,
    TransformerBlock,
    TransformerEncoderClassifier,
    build_backbone,
    load_backbone,
    read_metadata,
    save_backbone,
)
from loralab.models.backbone import check_backbone_target

VOCAB, B, T = 50, 3, 10


def tiny(**overrides) -> TransformerEncoderClassifier:
    torch.manual_seed(0)
    settings = dict(vocab_size=VOCAB, num_classes=4, d_model=32, n_heads=4, n_layers=2, d_ff=64)
    return TransformerEncoderClassifier(**{**settings, **overrides}).eval()


def padded_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids with lengths 10, 6 and 3; pad id 0."""
    ids = torch.randint(1, VOCAB, (B, T), generator=torch.Generator().manual_seed(1))
    mask = torch.arange(T) < torch.tensor([[10], [6], [3]])
    return ids.masked_fill(~mask, 0), mask


def test_logits_shape_and_mask_defaults_to_non_pad_tokens():
    model, (ids, mask) = tiny(), padded_batch()
    logits = model(ids, mask)
    assert logits.shape == (B, 4)
    torch.testing.assert_close(model(ids), logits)  # mask derived from ids != pad_id
    torch.testing.assert_close(model(ids, mask.long()), logits)  # int masks work too


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_padded_positions_do_not_change_logits(pooling):
    model, (ids, mask) = tiny(pooling=pooling), padded_batch()
    changed = ids.clone()
    changed[~mask] = 7  # other ids where the mask says "padding"
    assert torch.allclose(model(ids, mask), model(changed, mask), atol=1e-6)


def test_cls_and_mean_pooling_differ_and_cls_reads_only_the_first_position():
    ids, mask = padded_batch()
    mean, cls = tiny(pooling="mean"), tiny(pooling="cls")
    cls.load_state_dict(mean.state_dict())
    assert not torch.allclose(mean(ids, mask), cls(ids, mask))
    # cls = the head applied to the first position's final hidden state
    hidden = {}
    cls.ln_f.register_forward_hook(lambda m, i, out: hidden.setdefault("x", out))
    logits = cls(ids, mask)
    torch.testing.assert_close(logits, cls.classifier(hidden["x"][:, 0]))


def test_lora_target_names_exist():
    names = {name.rsplit(".", 1)[-1] for name, _ in tiny().named_modules()}
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "fc1", "fc2", "classifier"} <= names


def test_init_is_gpt_style():
    model = tiny()
    assert torch.all(model.layers[0].attn.q_proj.bias == 0)
    assert 0.015 < model.tok_emb.weight.std().item() < 0.025


def reference_attention(attn: MultiHeadAttention, x: torch.Tensor, mask: torch.Tensor):
    """Softmax attention written out by hand, to check the fused kernel against."""
    H, hd = attn.n_heads, attn.head_dim

    def heads(t):
        return t.view(x.shape[0], x.shape[1], H, hd).transpose(1, 2)

    q, k, v = heads(attn.q_proj(x)), heads(attn.k_proj(x)), heads(attn.v_proj(x))
    scores = q @ k.transpose(-2, -1) / math.sqrt(hd)
    allowed = mask[:, None, None, :]
    if attn.causal:
        allowed = allowed & torch.ones(x.shape[1], x.shape[1], dtype=torch.bool).tril()
    scores = scores.masked_fill(~allowed, float("-inf"))
    y = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape_as(x)
    return attn.o_proj(y)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_matches_hand_written_softmax(causal):
    torch.manual_seed(0)
    attn = MultiHeadAttention(32, 4, causal=causal)
    x = torch.randn(B, T, 32)
    _, mask = padded_batch()
    out = attn(x, mask)
    # padded queries are don't-cares (nothing reads them); compare the real ones
    torch.testing.assert_close(
        out[mask], reference_attention(attn, x, mask)[mask], atol=1e-5, rtol=0
    )
    full = torch.ones(B, T, dtype=torch.bool)
    torch.testing.assert_close(attn(x), reference_attention(attn, x, full), atol=1e-5, rtol=0)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("use_mask", [False, True])
def test_causal_block_never_looks_ahead(use_mask):
    torch.manual_seed(0)
    block = TransformerBlock(32, 4, 64, causal=True).eval()
    x = torch.randn(B, T, 32)
    mask = torch.ones(B, T, dtype=torch.bool) if use_mask else None
    for t in range(T):
        changed = x.clone()
        changed[:, t] += torch.randn(B, 32)
        before, after = block(x, mask), block(changed, mask)
        torch.testing.assert_close(before[:, :t], after[:, :t], atol=0, rtol=0)
        assert not torch.allclose(before[:, t], after[:, t])


def test_bad_n_heads_names_the_key():
    with pytest.raises(ValueError, match=r"model\.n_heads"):
        tiny(d_model=30, n_heads=4)


def test_too_long_sequence_and_unknown_pooling_name_their_keys():
    with pytest.raises(ValueError, match=r"model\.max_len"):
        tiny(max_len=8)(torch.ones(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match=r"model\.pooling"):
        tiny(pooling="max")


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    model, (ids, mask) = tiny(), padded_batch()
    path = tmp_path / "sub" / "backbone.safetensors"
    size = save_backbone(model, path, {"model": {"d_model": 32}})
    assert size == path.stat().st_size > 0
    assert [p.name for p in path.parent.iterdir()] == ["backbone.safetensors"]  # no temp files
    assert read_metadata(path) == {"model": {"d_model": 32}}
    torch.manual_seed(123)
    fresh = TransformerEncoderClassifier(VOCAB, 4, d_model=32, n_heads=4, n_layers=2, d_ff=64)
    assert load_backbone(fresh, path) is fresh
    torch.testing.assert_close(fresh.eval()(ids, mask), model(ids, mask), atol=0, rtol=0)


def test_save_overwrites_atomically(tmp_path):
    path = tmp_path / "backbone.safetensors"
    save_backbone(tiny(), path)
    save_backbone(tiny(d_model=64), path)
    assert [p.name for p in tmp_path.iterdir()] == ["backbone.safetensors"]
    load_backbone(tiny(d_model=64), path)


def test_skip_loads_everything_but_the_head(tmp_path):
    pretrained, path = tiny(), tmp_path / "backbone.safetensors"
    save_backbone(pretrained, path)
    torch.manual_seed(5)
    fresh = TransformerEncoderClassifier(VOCAB, 2, d_model=32, n_heads=4, n_layers=2, d_ff=64)
    head = fresh.classifier.weight.clone()
    build_backbone(fresh, str(path), skip=["classifier"])
    for name, tensor in fresh.state_dict().items():
        if not name.startswith("classifier"):
            assert torch.equal(tensor, pretrained.state_dict()[name]), name
    assert torch.equal(fresh.classifier.weight, head)
    with pytest.raises(BackboneCheckpointError, match=r"weight .classifier\."):
        load_backbone(tiny(num_classes=2), path)  # the head differs and is not skipped


def test_build_backbone_without_checkpoint_returns_the_net():
    net = tiny()
    assert build_backbone(net, None) is net and build_backbone(net, "") is net


def test_wrong_d_model_names_key_and_shapes(tmp_path):
    path = tmp_path / "backbone.safetensors"
    save_backbone(tiny(d_model=64), path)
    with pytest.raises(BackboneCheckpointError) as info:
        load_backbone(tiny(d_model=32), path, skip=["classifier"])
    message = str(info.value)
    assert "weight 'layers." in message and "(64,)" in message and "(32,)" in message
    assert "model.*" in message and "make pretrain" not in message  # the user's own file


def test_missing_or_extra_layers_name_the_key(tmp_path):
    path = tmp_path / "backbone.safetensors"
    save_backbone(tiny(n_layers=1), path)
    with pytest.raises(BackboneCheckpointError, match=r"'layers\.1\..*missing"):
        load_backbone(tiny(n_layers=2), path)
    save_backbone(tiny(n_layers=3), path)
    with pytest.raises(BackboneCheckpointError, match=r"'layers\.2\..*lacks"):
        load_backbone(tiny(n_layers=2), path)


def test_missing_or_corrupt_file_says_make_pretrain_only_for_the_makefiles_files(tmp_path):
    made = tmp_path / "checkpoints" / "tiny_encoder.safetensors"
    with pytest.raises(FileNotFoundError, match="run `make pretrain` first") as info:
        load_backbone(tiny(), made)
    assert "model.checkpoint" in str(info.value)
    made.parent.mkdir()
    made.write_bytes(b"not a safetensors file")
    with pytest.raises(BackboneCheckpointError, match="re-run `make pretrain`"):
        load_backbone(tiny(), made)
    charlm = tmp_path / "checkpoints" / "tiny_gpt.safetensors"
    with pytest.raises(FileNotFoundError, match="run `make pretrain-charlm` first"):
        load_backbone(tiny(), charlm)

    # the user's own files get advice about their own files
    with pytest.raises(FileNotFoundError, match="point model.checkpoint at an existing file"):
        load_backbone(tiny(), tmp_path / "absent.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(BackboneCheckpointError, match="that `save_backbone` wrote") as info:
        load_backbone(tiny(), tmp_path / "bad.safetensors")
    assert "make" not in str(info.value)


def test_an_existing_backbone_file_is_replaced_only_with_overwrite(tmp_path):
    path = tmp_path / "base.safetensors"
    check_backbone_target(path, overwrite=False)  # nothing there yet
    save_backbone(tiny(), path)
    with pytest.raises(BackboneCheckpointError, match=r"save_backbone: .* overwrite=true"):
        check_backbone_target(path, overwrite=False)
    check_backbone_target(path, overwrite=True)
