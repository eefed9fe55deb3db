"""The errors that mean "the input is wrong", as opposed to a bug in loralab.

Every user-facing error derives from `UserError`. Its message is one sentence that names the
config key (or file) at fault and how to fix it, and the entry points print it as a single
`error: ...` line with a non-zero exit instead of a traceback. A leaf module: it imports
nothing of loralab, so every layer (the LoRA core, data, models, callbacks) can raise these.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input: a config value, a file or an option that can't work as given."""


class ConfigError(UserError, ValueError):
    """A config value that can't work; the message names the key and the fix."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the config points at does not exist."""


class AdapterConfigError(ConfigError):
    """A bad adapter config or adapter file (raised by the LoRA core)."""


class BackboneCheckpointError(ConfigError):
    """A backbone file that does not fit the model it is loaded into."""


def user_error_in(error: BaseException) -> UserError | None:
    """The `UserError` an exception is or wraps (Hydra's instantiate wraps what it calls)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, UserError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
