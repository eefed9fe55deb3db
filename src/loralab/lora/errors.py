"""The one exception the LoRA core raises for bad input, so callers can catch it in one place."""

from __future__ import annotations


class AdapterConfigError(ValueError):
    """A bad adapter config or adapter file.

    The message is one sentence that names the config key (or file) at fault and how to fix it,
    so a failed run tells the researcher what to change without reading a traceback.
    """
