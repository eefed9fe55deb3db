"""Which rows of a text-classification source a run reads, chosen before any split is carved.

Two choices, both applied to the source's own splits in the order train, val, test:

- `keep_rows`: only the rows whose column holds one of the given values, e.g.
  `{source: [imdb]}` keeps the IMDB reviews of a file that also holds other sources;
- `dedupe`: exact duplicates dropped, keeping the first copy. Two rows are duplicates when
  their texts (and text pairs) are equal, whatever their labels; a text met in an earlier
  split is dropped from the later one, so no text is in two splits.

Deciding before val and test are carved out of train is what keeps a duplicate from landing
on both sides of the split.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from loralab.data.text_checks import cells
from loralab.errors import ConfigError

log = logging.getLogger(__name__)


def allowed_values(keep_rows: Mapping[str, Any]) -> dict[str, set[Any]]:
    """`{column: value or [values]}` as `{column: {values}}`."""
    allowed = {}
    for column, values in keep_rows.items():
        values = list(values) if isinstance(values, list | tuple) else [values]
        if not values:
            raise ConfigError(
                f"data.keep_rows.{column} is an empty list, which keeps no row; give at least "
                "one value or drop the key."
            )
        allowed[column] = set(values)
    return allowed


def keep_indices(ds: Any, origin: str, allowed: Mapping[str, set[Any]]) -> list[int]:
    """Indices of the rows of `ds` whose columns hold allowed values."""
    keep = list(range(len(ds)))
    for column, values in allowed.items():
        if column not in ds.column_names:
            raise ConfigError(
                f"data.keep_rows names the column {column!r}, which {origin} lacks (columns: "
                f"{', '.join(ds.column_names)}); set data.keep_rows to its columns or null."
            )
        values_of_rows = cells(ds, column)
        keep = [i for i in keep if values_of_rows[i] in values]
        if not keep:
            found = sorted({str(cell) for cell in values_of_rows})[:10]
            raise ConfigError(
                f"data.keep_rows.{column}={sorted(map(str, values))} keeps no row of {origin} "
                f"(its values: {', '.join(found)}); set data.keep_rows.{column} to some of them."
            )
    return keep


def select_rows(
    splits: Mapping[str, Any],
    origins: Mapping[str, str],
    keep_rows: Mapping[str, Any] | None,
    dedupe_fields: Sequence[str] | None,
) -> dict[str, Any]:
    """The splits (in order) with only the kept rows, and without duplicates of
    `dedupe_fields` (None: duplicates stay); `origins` name each split in error messages."""
    allowed = allowed_values(keep_rows or {})
    seen: set[tuple[Any, ...]] = set()
    chosen, dropped = {}, 0
    for name, ds in splits.items():
        keep = keep_indices(ds, origins.get(name, f"split {name!r}"), allowed)
        if dedupe_fields:
            columns = [cells(ds, field) for field in dedupe_fields]
            unique = []
            for i in keep:
                key = tuple(column[i] for column in columns)
                if key not in seen:
                    seen.add(key)
                    unique.append(i)
            dropped += len(keep) - len(unique)
            keep = unique
        chosen[name] = ds if len(keep) == len(ds) else ds.select(keep)
    if dedupe_fields:
        log.info("text data: dropped %d exact duplicate texts (first copies kept)", dropped)
    return chosen
