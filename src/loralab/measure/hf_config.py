"""A Hugging Face `config.json` as the memory planner's `ModelShape`.

Config families name the same dimensions differently: Llama, Mistral and Qwen say
`hidden_size`, `num_hidden_layers`, `num_attention_heads`, `intermediate_size`; GPT-2 says
`n_embd`, `n_layer`, `n_head`, `n_inner` (null: 4 x n_embd) and fuses q, k and v into one
`c_attn`; BERT-style encoders use the Llama names with a post-LN block, learned positions
and a pooler. A key the family needs and the file lacks is refused in one sentence.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loralab.errors import ConfigError, MissingFileError
from loralab.measure.planner import ModelShape

# the dimension -> the keys families store it under, the common one first
KEYS = {
    "vocab_size": ("vocab_size",),
    "hidden": ("hidden_size", "n_embd", "d_model"),
    "layers": ("num_hidden_layers", "n_layer", "num_layers"),
    "heads": ("num_attention_heads", "n_head", "num_heads"),
    "ffn": ("intermediate_size", "n_inner", "ffn_dim"),
}
ENCODERS = ("bert", "roberta", "electra", "xlm-roberta", "camembert")
FAMILIES = "Llama/Mistral/Qwen-style decoders, GPT-2 and BERT-style encoders"


def read_config(path: str | Path) -> dict[str, Any]:
    """The JSON of a config file, with one-sentence errors."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(
            f"--hf-config: no file at {path}; pass the config.json of a model folder."
        )
    try:
        return json.loads(path.read_text())
    except ValueError as error:
        raise ConfigError(
            f"--hf-config: {path} is not JSON ({error}); pass a config.json."
        ) from None


def dimension(config: Mapping[str, Any], name: str, path: Path) -> int:
    """The first key of `name`'s family names that the config holds."""
    for key in KEYS[name]:
        if config.get(key) is not None:
            return int(config[key])
    if name == "ffn" and config.get("n_embd") is not None:  # GPT-2: n_inner null = 4 x n_embd
        return 4 * int(config["n_embd"])
    keys = " or ".join(KEYS[name])
    raise ConfigError(
        f"--hf-config: {path} has no {keys}, which the planner needs for the model's {name}; "
        f"it reads {FAMILIES}, so pass such a config (model_type {config.get('model_type')!r})."
    )


def shape_from_hf_config(path: str | Path, num_classes: int = 2) -> ModelShape:
    """The shape of the model a Hugging Face config.json describes."""
    path = Path(path)
    config = read_config(path)
    dims = {name: dimension(config, name, path) for name in KEYS}
    name = config.get("_name_or_path") or path.parent.name
    kind = config.get("model_type")
    if kind in ENCODERS:
        return ModelShape(
            name=name,
            **dims,
            max_positions=config.get("max_position_embeddings", 0),
            type_vocab=config.get("type_vocab_size", 0),
            embedding_norm=True,
            final_norm=False,  # post-LN: every block ends with its own norm
            pooler=True,
            num_classes=num_classes,
        )
    if kind == "gpt2" or "n_embd" in config:
        return ModelShape(
            name=name,
            **dims,
            fused_qkv=True,  # c_attn: q, k and v in one layer
            activation_saves=4
            if config.get("activation_function", "gelu_new") == "gelu_new"
            else 1,
            max_positions=config.get("n_positions", 0),
            head="lm",
            tied_embeddings=bool(config.get("tie_word_embeddings", True)),
            padding_mask=False,
        )
    return ModelShape(
        name=name,
        **dims,
        kv_heads=config.get("num_key_value_heads"),
        gated_mlp=config.get("hidden_act") in ("silu", "swiglu"),
        bias=bool(config.get("attention_bias", False)),
        rms_norm="rms_norm_eps" in config,
        head="lm",
        tied_embeddings=bool(config.get("tie_word_embeddings", False)),
        padding_mask=False,
    )
