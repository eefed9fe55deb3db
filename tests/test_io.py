"""`io.atomic_dir`: a folder appears whole or not at all, and only replaces one when asked."""

from __future__ import annotations

import os

import pytest

from loralab.io import PARTIAL_MARK, atomic_dir


def test_a_folder_appears_whole_and_replaces_the_old_one(tmp_path):
    folder = tmp_path / "deep" / "model"
    with atomic_dir(folder) as tmp:
        (tmp / "a.txt").write_text("1")
        assert not folder.exists()  # nothing at the real name while it is written
    assert [p.name for p in folder.iterdir()] == ["a.txt"]
    with atomic_dir(folder) as tmp:
        (tmp / "b.txt").write_text("2")
    assert [p.name for p in folder.iterdir()] == ["b.txt"]  # replaced, not merged
    assert [p.name for p in folder.parent.iterdir()] == ["model"]  # no partial folder left


def test_a_failed_write_leaves_the_old_folder_and_no_partial(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "old.txt").write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_dir(folder) as tmp:
        (tmp / "half.txt").write_text("half")
        raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    assert [p.name for p in folder.iterdir()] == ["old.txt"]


def test_without_replace_a_folder_written_meanwhile_wins(tmp_path):
    folder = tmp_path / "model"
    with pytest.raises(FileExistsError), atomic_dir(folder, replace=False) as tmp:
        (tmp / "mine.txt").write_text("mine")
        folder.mkdir()  # another writer finished first
        (folder / "theirs.txt").write_text("theirs")
    assert [p.name for p in folder.iterdir()] == ["theirs.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_leftovers_of_dead_writers_go_and_those_of_live_ones_stay(tmp_path):
    dead = tmp_path / f".model{PARTIAL_MARK}999999999"  # no process has this pid
    live = tmp_path / f".model{PARTIAL_MARK}abc-{os.getppid()}"
    for partial in (dead, live):
        partial.mkdir()
    with atomic_dir(tmp_path / "model"):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model", live.name])
