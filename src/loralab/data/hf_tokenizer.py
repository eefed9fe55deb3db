"""The model's own Hugging Face tokenizer for text data, and the check that a checkpoint kept it.

Text must be tokenised exactly as the model was trained to read it, so every text data
module (`data=text_csv`, `data=lm_text`, `data=instruct`) loads the tokenizer from
`data.tokenizer`: a hub id or a `save_pretrained` folder, the same source as the model (the
run builder refuses a mismatch). Loading never runs code shipped with a checkpoint.
"""

from __future__ import annotations

from typing import Any

from loralab.errors import ConfigError, MissingFileError


def load_tokenizer(source: str, vocab_size: int | None = None, needs_eos: bool = True) -> Any:
    """The tokenizer of `source`, with a pad token (EOS when it has none) and, if `needs_eos`
    (a causal LM's documents and answers end with it), an EOS token."""
    from transformers import AutoTokenizer

    if not source or str(source) == "???":
        raise ConfigError(
            "data.tokenizer is not set; give the model's hub id or save_pretrained folder "
            "(the same as model.pretrained_model_name_or_path)."
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source))
    except OSError as error:
        first = str(error).strip().splitlines()[0]
        raise MissingFileError(
            f"data.tokenizer: cannot load a tokenizer from {source!r} ({first}); give a hub "
            "id (needs network access) or a folder written by save_pretrained."
        ) from None
    if needs_eos and tokenizer.eos_token_id is None:
        raise ConfigError(
            f"data.tokenizer={source} has no EOS token, which ends documents and answers; "
            "use a causal LM's tokenizer."
        )
    if tokenizer.pad_token_id is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token  # decoder-only tokenizers often have none
    if vocab_size is not None and len(tokenizer) > vocab_size:
        raise ConfigError(
            f"data.vocab_size={vocab_size} is smaller than the vocabulary of data.tokenizer "
            f"({len(tokenizer)} tokens); set data.vocab_size={len(tokenizer)} or null."
        )
    return tokenizer


def tokenizer_state(tokenizer: Any) -> dict[str, Any]:
    """What a checkpoint records of the tokenizer its run read: source and vocabulary size."""
    return {"tokenizer": str(tokenizer.name_or_path), "tokenizer_size": len(tokenizer)}


def check_tokenizer_state(saved: dict[str, Any], tokenizer: Any) -> None:
    """A checkpoint trained with another vocabulary must not be read with this one."""
    size = saved.get("tokenizer_size")
    if size is not None and size != len(tokenizer):
        raise ConfigError(
            f"the checkpoint was trained with a {size}-token tokenizer ({saved.get('tokenizer')}) "
            f"but data.tokenizer={tokenizer.name_or_path} has {len(tokenizer)}; set "
            f"data.tokenizer={saved.get('tokenizer')}."
        )
