"""What transformer families call their linear layers, in one table.

Our backbones name them `q_proj`, `k_proj`, `v_proj`, `o_proj`, `fc1`, `fc2`; BERT says
`query`, `key`, `value`, `attention.output.dense`, `intermediate.dense`, `output.dense`; Llama
says `q_proj` ... `o_proj`, `gate_proj`, `up_proj`, `down_proj`; GPT-2 fuses q, k and v into
`c_attn` (`qkv`) and says `attn.c_proj`, `mlp.c_fc`, `mlp.c_proj`. Run names, the memory
planner and the rank analysis all read this one table.
"""

from __future__ import annotations

# canonical name -> the names (dotted suffixes of module paths) models give that layer
PROJECTION_ALIASES: dict[str, tuple[str, ...]] = {
    "q": ("q", "q_proj", "query"),
    "k": ("k", "k_proj", "key"),
    "v": ("v", "v_proj", "value"),
    "qkv": ("qkv", "c_attn", "qkv_proj"),
    "o": ("o", "o_proj", "out_proj", "attention.output.dense", "attn.c_proj"),
    "gate": ("gate", "gate_proj"),
    "up": ("up", "up_proj", "fc1", "intermediate.dense", "c_fc"),
    "down": ("down", "down_proj", "fc2", "output.dense", "mlp.c_proj"),
}
ATTENTION = ("q", "k", "v", "o")
# longest alias first, so `attention.output.dense` (o) wins over `output.dense` (down)
_BY_LENGTH = sorted(
    ((alias, name) for name, aliases in PROJECTION_ALIASES.items() for alias in aliases),
    key=lambda pair: -len(pair[0]),
)


def canonical_projection(module: str) -> str | None:
    """q, k, v, o, gate, up or down for a module path or name; None for any other layer."""
    for alias, name in _BY_LENGTH:
        if module == alias or module.endswith("." + alias):
            return name
    return None


def attention_projection(module: str) -> str | None:
    """q, k, v or o for an attention projection's module path; None for any other layer."""
    name = canonical_projection(module)
    return name if name in ATTENTION else None


def known_aliases() -> list[str]:
    return sorted({alias for aliases in PROJECTION_ALIASES.values() for alias in aliases})
