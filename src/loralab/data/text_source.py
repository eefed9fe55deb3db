"""Raw text splits from local CSV/JSONL/Parquet files or a (hub or local) dataset, checked.

Everything a user can get wrong about their data fails here, in one sentence naming the
`data.*` key: a missing file, an unreadable or non-UTF-8 file, a missing column, an empty
split, a label outside `data.num_classes`, an empty text cell. Places are the user's own:
rows are checked in the file (or dataset split) they came from, before any shuffling,
subsampling or carving, and counted from 1 without the header; a bad byte is given by its
offset in the file and its line.
"""

from __future__ import annotations

import codecs
import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from loralab.errors import ConfigError, MissingFileError

# our stage names; a dataset's split names are mapped onto them by `data.split_names`
STAGES = ("train", "val", "test")
DEFAULT_SPLITS = {"train": "train", "val": "validation", "test": "test"}
FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
# carving val/test out of train uses a fixed seed (data.split_seed of text classification,
# this by default), not the run's: every run of a comparison tests on the same rows
CARVE_SEED = 0


def cells(ds: Any, name: str) -> list[Any]:
    """Every cell of one column, read at once (a `Column` indexed cell by cell reads the Arrow
    table once per cell: 6 s instead of milliseconds for the 33,530 movie reviews)."""
    return ds[name][:]


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """No per-file progress bars from `datasets` in run logs; the old setting comes back after."""
    from datasets.utils import logging as ds_logging

    was_enabled = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            ds_logging.enable_progress_bar()


def file_format(files: Mapping[str, str]) -> str:
    """The `datasets` builder for the files' extension; all files of a dataset share one."""
    formats = set()
    for stage, path in files.items():
        suffix = Path(str(path)).suffix.lower()
        if suffix not in FORMATS:
            raise ConfigError(
                f"data.{stage}_file={path} has an unknown extension; "
                f"use one of {', '.join(FORMATS)}."
            )
        formats.add(FORMATS[suffix])
    if len(formats) > 1:
        raise ConfigError(
            f"data.train_file, val_file and test_file mix file formats "
            f"({', '.join(sorted(formats))}); give every split in the same format."
        )
    return formats.pop()


def load_files(paths: Mapping[str, str | None], cache_dir: str | None) -> Any:
    """A DatasetDict of local files keyed by stage (train/val/test); a None path is skipped."""
    import datasets

    files = {}
    for stage, path in paths.items():
        if path is None:
            continue
        file = Path(str(path)).expanduser()
        if not file.is_file():
            raise MissingFileError(
                f"data.{stage}_file: no file at {file}; point it at a CSV, JSONL or Parquet "
                f"file (or set data.{stage}_file=null to carve {stage} out of train)."
                if stage != "train"
                else f"data.train_file: no file at {file}; point it at a CSV, JSONL or Parquet file."
            )
        files[stage] = str(file)
    fmt = file_format(files)
    tab_separated = fmt == "csv" and next(iter(files.values())).endswith(".tsv")
    kwargs = {"delimiter": "\t"} if tab_separated else {}
    try:
        return datasets.load_dataset(fmt, data_files=files, cache_dir=cache_dir, **kwargs)
    except datasets.exceptions.DatasetGenerationError as error:
        named = [(f"data.{stage}_file", path) for stage, path in files.items()]
        raise _readable(error, named) from None
    except ValueError as error:
        if "corresponds to no data" not in str(error):
            raise
        # `datasets` refuses a split whose files hold a header and no rows
        raise ConfigError(
            f"a split of the data has no rows ({error}); check data.train_file, "
            f"data.val_file and data.test_file: {', '.join(files.values())}."
        ) from None


def load_named(name: str, config: str | None, cache_dir: str | None) -> Any:
    """A DatasetDict from the hub, a local dataset folder, or a `save_to_disk` folder."""
    import datasets

    folder = Path(name).expanduser()
    try:
        if (folder / "dataset_dict.json").is_file():
            return datasets.load_from_disk(str(folder))
        return datasets.load_dataset(str(name), config, cache_dir=cache_dir)
    except datasets.exceptions.DatasetGenerationError as error:
        data_files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in FORMATS)
        raise _readable(error, [("data.dataset_name", str(p)) for p in data_files]) from None
    except (datasets.exceptions.DatasetNotFoundError, FileNotFoundError, ConnectionError) as error:
        raise MissingFileError(
            f"data.dataset_name: cannot load {name!r} ({error}); give a hub dataset id "
            "(needs network access) or a local folder of data files."
        ) from None


def first_bad_byte(path: str | Path, chunk: int = 1 << 20) -> tuple[int, bytes, int] | None:
    """(offset, byte, line) of the first byte of a file that is not UTF-8 text; None if all is."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, line = 0, 1  # of the block being read
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            held = len(decoder.getstate()[0])  # bytes of a character begun in the last block
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as error:
                bad = offset - held + error.start
                f.seek(bad)
                return bad, f.read(1), line + block[: max(0, bad - offset)].count(b"\n")
            if not block:
                return None
            offset += len(block)
            line += block.count(b"\n")


def _readable(error: Exception, files: Sequence[tuple[str, str]]) -> ConfigError:
    """One sentence for data `datasets` could not parse (files: (key, path) pairs), naming the
    file and, for text that is not UTF-8, the first bad byte's offset and line in it."""
    cause = error.__cause__ or error.__context__
    candidates = [
        (key, path)
        for key, path in files
        if Path(path).suffix.lower() != ".parquet" and Path(path).is_file()
    ]
    for key, path in candidates:
        bad = first_bad_byte(path)
        if bad is not None:
            offset, byte, line = bad
            return ConfigError(
                f"{key}: {path} is not UTF-8 text (byte {byte!r} at offset {offset}, line "
                f"{line}); re-save the file as UTF-8."
            )
    where = ", ".join(f"{key}={path}" for key, path in files) or "the data"
    return ConfigError(f"cannot read {where} ({cause or error}); check the file's format.")


def source_splits(raw: Mapping[str, Any], names: Mapping[str, str]) -> list[str]:
    """The splits of the source that train, val and test read (stage -> split name)."""
    wanted = [names.get(stage, DEFAULT_SPLITS[stage]) for stage in STAGES]
    return [split for split in dict.fromkeys(wanted) if split in raw]


def pick_splits(
    raw: Mapping[str, Any],
    names: Mapping[str, str],
    val_fraction: float,
    test_fraction: float,
    seed: int = CARVE_SEED,
) -> dict[str, Any]:
    """Our train/val/test from the source's splits (`names`: stage -> source split name);
    a missing val or test split is carved out of train, shuffled by `seed`."""
    unknown = set(names) - set(STAGES)
    if unknown:
        raise ConfigError(
            f"data.split_names has unknown stage {sorted(unknown)[0]!r}; use train, val, test."
        )
    source = {stage: names.get(stage, DEFAULT_SPLITS[stage]) for stage in STAGES}
    if source["train"] not in raw:
        raise ConfigError(
            f"data.split_names.train={source['train']!r} is not a split of the data "
            f"(splits: {', '.join(raw)}); set data.split_names.train to one of them."
        )
    train = raw[source["train"]]
    picked: dict[str, Any] = {}
    for stage, fraction in (("test", test_fraction), ("val", val_fraction)):
        if source[stage] in raw:
            picked[stage] = raw[source[stage]]
            continue
        if not 0 < fraction < 1:
            raise ConfigError(
                f"the data has no {stage} split and data.{stage}_fraction={fraction}; give one "
                f"(data.{stage}_file, or data.split_names.{stage} for a dataset) or set "
                f"data.{stage}_fraction to a number in (0, 1) to carve it out of train."
            )
        parts = train.train_test_split(test_size=fraction, seed=seed)
        train, picked[stage] = parts["train"], parts["test"]
    picked["train"] = train
    return {stage: picked[stage] for stage in STAGES}


def check_columns(splits: Mapping[str, Any], fields: Mapping[str, str | None]) -> None:
    """Every configured field is a column of every split, and no split is empty."""
    for stage, ds in splits.items():
        if len(ds) == 0:
            raise ConfigError(
                f"the {stage} split of the data has no rows; check data.{stage}_file "
                f"(or data.dataset_name and data.split_names.{stage})."
            )
        for key, column in fields.items():
            if column is not None and column not in ds.column_names:
                raise ConfigError(
                    f"data.{key}={column!r} is not a column of the {stage} split "
                    f"(columns: {', '.join(ds.column_names)}); set data.{key} to one of them."
                )


def check_texts(origin: str, key: str, texts: Sequence[Any]) -> None:
    """A missing or non-string text cell (an empty CSV cell reads as None) fails by row.

    `origin` names where the rows are, e.g. "data.train_file=reviews.csv": the rows of
    that file in its own order, counted from 1 (the header not counted).
    """
    for row, text in enumerate(texts):
        if not isinstance(text, str):
            raise ConfigError(
                f"data.{key}: row {row + 1} of {origin} has no text ({text!r}); "
                "fill or drop that row."
            )


def label_names_of(
    splits: Mapping[str, Any], label_field: str, label_names: Sequence[str] | None, num_classes: int
) -> list[str] | None:
    """Class names for string labels (given, else sorted), the data's names, or None for ints."""
    feature = splits["train"].features[label_field]
    if hasattr(feature, "names"):  # a ClassLabel: ids and names come with the data
        names = list(feature.names)
    elif getattr(feature, "dtype", "").endswith("string"):
        found = sorted(
            {label for ds in splits.values() for label in cells(ds, label_field)} - {None}
        )
        names = list(label_names) if label_names else found
        missing = [label for label in found if label not in names]
        if missing:
            raise ConfigError(
                f"data.label_names {names} lacks the label {missing[0]!r} found in "
                f"data.label_field={label_field!r}; add it or drop those rows."
            )
    else:
        return None
    if len(names) != num_classes:
        raise ConfigError(
            f"data.num_classes={num_classes} but the data has {len(names)} labels "
            f"({', '.join(map(str, names))}); set data.num_classes={len(names)}."
        )
    return names


def label_ids(
    origin: str, labels: Sequence[Any], names: list[str] | None, num_classes: int
) -> list[int]:
    """Labels as ids in [0, num_classes); anything else fails, naming the row of `origin`."""
    index = {name: i for i, name in enumerate(names)} if names is not None else None
    ids = []
    for row, label in enumerate(labels):
        if index is not None and isinstance(label, str):
            label = index.get(label, label)
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < num_classes:
            raise ConfigError(
                f"data.label_field: row {row + 1} of {origin} has label {label!r}, outside "
                f"the data.num_classes={num_classes} classes; fix the row or data.num_classes."
            )
        ids.append(label)
    return ids


def check_rows(
    sources: Mapping[str, Any],
    fields: Mapping[str, str | None],
    names: list[str] | None,
    num_classes: int,
) -> None:
    """Every text and label cell of every source (origin -> its rows, as loaded)."""
    for origin, ds in sources.items():
        for key in ("text_field", "text_pair_field"):
            if fields.get(key) is not None and fields[key] in ds.column_names:
                check_texts(origin, key, cells(ds, fields[key]))
        if fields.get("label_field") in ds.column_names:
            label_ids(origin, cells(ds, fields["label_field"]), names, num_classes)
