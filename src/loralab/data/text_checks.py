"""Checks of raw text rows, each failing in one sentence that names the `data.*` key.

A missing column, an empty split, a label outside `data.num_classes`, an empty text cell, a
file `datasets` cannot parse: rows are checked in the file (or dataset split) they came from,
before any shuffling, subsampling or carving, and counted from 1 without the header; a byte
that is not UTF-8 is given by its offset in the file and its line.
"""

from __future__ import annotations

import codecs
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from loralab.errors import ConfigError


def cells(ds: Any, name: str) -> list[Any]:
    """Every cell of one column, read at once (a `Column` indexed cell by cell reads the Arrow
    table once per cell: 6 s instead of milliseconds for the 33,530 movie reviews)."""
    return ds[name][:]


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


def readable(error: Exception, files: Sequence[tuple[str, str]]) -> ConfigError:
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
