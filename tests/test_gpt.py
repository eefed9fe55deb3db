"""TinyGPT: causal masking, shapes, weight tying, and what LoRA may target in it."""

from __future__ import annotations

import pytest
import torch

from loralab.lora import find_target_modules
from loralab.models import TinyGPT

VOCAB, B, T = 30, 2, 12


def tiny_gpt(**overrides) -> TinyGPT:
    torch.manual_seed(0)
    settings = dict(vocab_size=VOCAB, d_model=32, n_heads=4, n_layers=2, d_ff=64, max_len=16)
    return TinyGPT(**{**settings, **overrides}).eval()


def random_ids(seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (B, T), generator=torch.Generator().manual_seed(seed))


def test_logits_have_one_row_per_position_and_token():
    assert tiny_gpt()(random_ids()).shape == (B, T, VOCAB)


@pytest.mark.parametrize("t", [0, 5, T - 2])
def test_changing_a_future_token_never_changes_earlier_logits(t):
    model, ids = tiny_gpt(), random_ids()
    changed = ids.clone()
    changed[:, t + 1 :] = (changed[:, t + 1 :] + 7) % VOCAB  # every token after t differs
    before, after = model(ids), model(changed)
    torch.testing.assert_close(before[:, : t + 1], after[:, : t + 1], rtol=0, atol=1e-6)
    assert not torch.allclose(
        before[:, t + 1 :], after[:, t + 1 :]
    )  # the mask is not "see nothing"


def test_right_padding_with_a_mask_leaves_real_positions_unchanged():
    model, ids = tiny_gpt(), random_ids()
    mask = torch.arange(T) < torch.tensor([[T], [7]])
    padded = ids.masked_fill(~mask, 0)
    logits = model(padded, attention_mask=mask)
    torch.testing.assert_close(logits[1, :7], model(padded[1:, :7])[0], rtol=0, atol=1e-5)
    # the mask path (explicit boolean mask) agrees with the fused is_causal path
    torch.testing.assert_close(logits[0], model(padded[:1])[0], rtol=0, atol=1e-5)


def test_tied_weights_share_one_matrix_and_untied_do_not():
    tied, untied = tiny_gpt(), tiny_gpt(tie_weights=False)
    assert tied.lm_head.weight is tied.tok_emb.weight
    assert untied.lm_head.weight is not untied.tok_emb.weight
    extra = sum(p.numel() for p in untied.parameters()) - sum(p.numel() for p in tied.parameters())
    assert extra == VOCAB * 32


def test_all_linear_lora_targets_every_projection_but_not_lm_head():
    targets = find_target_modules(tiny_gpt(), "all-linear")
    assert "lm_head" not in targets
    names = {t.rsplit(".", 1)[-1] for t in targets}
    assert names == {"q_proj", "k_proj", "v_proj", "o_proj", "fc1", "fc2"}
    assert len(targets) == 2 * 6


def test_a_sequence_longer_than_max_len_fails_with_the_key_to_change():
    with pytest.raises(ValueError, match="model.max_len=16"):
        tiny_gpt()(torch.zeros(1, 17, dtype=torch.long))
