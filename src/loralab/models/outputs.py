"""What a backbone returns, as one tensor: our backbones return logits, Hugging Face models
an object (or dict) holding `.logits`, some modules a tuple whose first entry is the output."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor


def logits_of(output: Any) -> Tensor:
    """The output tensor itself, its `logits`, or the first entry of a tuple."""
    if isinstance(output, Mapping) and "logits" in output:
        output = output["logits"]
    elif hasattr(output, "logits"):
        output = output.logits
    elif isinstance(output, tuple | list) and output:
        output = output[0]
    if not isinstance(output, Tensor):
        raise TypeError(f"expected a tensor output (or one with .logits), got {type(output)}")
    return output
