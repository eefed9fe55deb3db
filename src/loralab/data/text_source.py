"""Where a text data module's rows come from: one `TextSource`, checked and loaded once.

The three text data modules (text classification, instruction tuning, packed LM text) read
the same settings, given as flat `data.*` keys: local files (`data.train_file`, `val_file`,
`test_file`) or a dataset (`data.dataset_name`, `dataset_config`, `split_names`; or, for LM
text, a bundled `data.corpus`), the fractions carved out of train for a split the source
lacks, `data.n_train` / `n_val` / `n_test` caps and the `datasets` cache. `TextSource` holds
them, checks that exactly one source is given, and loads the raw splits; failures name the
`data.*` key the user typed (a missing file, a file `datasets` cannot parse, a split name
the dataset lacks). Checks of the rows themselves are in `text_checks.py`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loralab.data.text_checks import readable
from loralab.errors import ConfigError, MissingFileError
from loralab.io import to_plain

# our stage names; a dataset's split names are mapped onto them by `data.split_names`
STAGES = ("train", "val", "test")
DEFAULT_SPLITS = {"train": "train", "val": "validation", "test": "test"}
FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
# carving val/test out of train uses a fixed seed (data.split_seed of text classification,
# this by default), not the run's: every run of a comparison tests on the same rows
CARVE_SEED = 0


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
        raise readable(error, named) from None
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
        raise readable(error, [("data.dataset_name", str(p)) for p in data_files]) from None
    except (datasets.exceptions.DatasetNotFoundError, FileNotFoundError, ConnectionError) as error:
        raise MissingFileError(
            f"data.dataset_name: cannot load {name!r} ({error}); give a hub dataset id "
            "(needs network access) or a local folder of data files."
        ) from None


def stage_splits(raw: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, str]:
    """The source split each stage reads (`names` over the defaults), train's checked to exist."""
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
    return source


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
    source = stage_splits(raw, names)
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


# the kinds of source a data module may read, and what each is (for the one-source check)
TABLE_SOURCES = {
    "train_file": "a local CSV/JSONL/Parquet file",
    "dataset_name": "a hub id or a local dataset folder",
}
LM_SOURCES = {
    "train_file": "a local .txt, CSV, JSONL or Parquet file",
    "dataset_name": "a hub id or a local dataset folder",
    "corpus": "a bundled corpus: a, b or shakespeare",
}


@dataclass(frozen=True)
class Loaded:
    """A source's raw splits, the split each stage reads, and how each split is named to the
    user (`data.train_file=x.csv`, `split 'train' of data.dataset_name=y`)."""

    raw: Mapping[str, Any]
    stage_names: Mapping[str, str]
    origins: Mapping[str, str]


@dataclass(frozen=True)
class TextSource:
    """The text a data module reads: files, a dataset or a corpus, its splits and their sizes.

    Built from the flat `data.*` keys (`from_keys`), so every config and command keeps its
    keys; the data module's own settings (fields, lengths, batch size) stay its own.
    """

    train_file: str | None = None
    val_file: str | None = None
    test_file: str | None = None
    dataset_name: str | None = None
    dataset_config: str | None = None
    split_names: Mapping[str, str] | None = None
    corpus: str | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    n_train: int | None = None
    n_val: int | None = None
    n_test: int | None = None
    cache_dir: str | None = None

    @classmethod
    def from_keys(
        cls,
        keys: Mapping[str, Any],
        owner: str,
        kinds: Mapping[str, str] = TABLE_SOURCES,
        **defaults: Any,
    ) -> TextSource:
        """The source of `owner` (a data module's name) from its `data.*` keys, checked."""
        known = cls.keys_for(kinds)
        for key in keys:
            if key not in known:
                raise ConfigError(
                    f"data.{key} is not a setting of {owner}; remove it or correct its name "
                    f"(its text source reads {', '.join(f'data.{k}' for k in known)})."
                )
        source = cls(**{**defaults, **{k: to_plain(v) for k, v in keys.items()}})
        source.check_one(kinds)
        return source

    @classmethod
    def keys_for(cls, kinds: Mapping[str, str]) -> list[str]:
        """The keys a data module reading `kinds` of source takes (`corpus` for LM text only)."""
        unread = set(LM_SOURCES) - set(kinds)
        return [f.name for f in dataclasses.fields(cls) if f.name not in unread]

    def check_one(self, kinds: Mapping[str, str]) -> str:
        """The one kind of source given (a key of `kinds`); none or several fail."""
        given = [kind for kind in kinds if getattr(self, kind)]
        if len(given) != 1:
            named = [f"data.{kind} ({what})" for kind, what in kinds.items()]
            listing = " and ".join(named) if len(named) == 2 else ", ".join(named[:-1])
            listing += f" or {named[-1]}" if len(named) > 2 else ""
            raise ConfigError(
                f"the data needs exactly one text source: give exactly one of {listing}, and "
                f"set {'the other' if len(named) == 2 else 'the others'} to null (given: "
                f"{', '.join(given) or 'none'})."
            )
        return given[0]

    def settings(self, kinds: Mapping[str, str]) -> dict[str, Any]:
        """Every key the data module takes, as a plain value: what its hyper-parameters record."""
        values = dataclasses.asdict(self)
        return {key: values[key] for key in self.keys_for(kinds)}

    @property
    def files(self) -> dict[str, str | None]:
        """The local file of each stage (None: none given)."""
        return {"train": self.train_file, "val": self.val_file, "test": self.test_file}

    @property
    def limits(self) -> dict[str, int | None]:
        """At most this many examples per stage (None: all)."""
        return {"train": self.n_train, "val": self.n_val, "test": self.n_test}

    def load(self) -> Loaded:
        """The raw splits of the files or the dataset (a corpus is its data module's to read)."""
        if self.train_file:
            raw = load_files(self.files, self.cache_dir)
            names = {stage: stage for stage in STAGES}
            origins = {stage: f"data.{stage}_file={self.files[stage]}" for stage in raw}
            return Loaded(raw, names, origins)
        raw = load_named(self.dataset_name, self.dataset_config, self.cache_dir)
        origins = {
            split: f"split {split!r} of data.dataset_name={self.dataset_name}" for split in raw
        }
        return Loaded(raw, dict(self.split_names or {}), origins)

    def pick(self, loaded: Loaded, seed: int = CARVE_SEED) -> dict[str, Any]:
        """Train/val/test of the loaded splits, a missing val/test carved out of train."""
        return pick_splits(
            loaded.raw, loaded.stage_names, self.val_fraction, self.test_fraction, seed
        )

    def cap(self, stage: str, ds: Any, seed: int, shuffle: bool) -> Any:
        """At most `n_<stage>` rows of a split: a seeded sample if `shuffle`, else the first."""
        limit = self.limits[stage]
        if limit is None or limit >= len(ds):
            return ds
        return (ds.shuffle(seed=seed) if shuffle else ds).select(range(limit))
