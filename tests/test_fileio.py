"""Atomic writes: the target is replaced whole or not at all, and no temporary file is left."""

import json

import pytest

from emclip.fileio import atomic_write, atomic_write_json, atomic_write_text, temporary_path


def test_text_and_json_round_trip(tmp_path):
    path = atomic_write_text(tmp_path / "a" / "b.txt", "hello")
    assert path.read_text() == "hello"
    atomic_write_json(tmp_path / "r.json", {"b": 1, "a": [1, 2]})
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": [1, 2], "b": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "r.json"]


def test_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_write(target) as tmp:
        tmp.write_text("half a tab")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert not temporary_path(target).exists()
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_temporary_keeps_the_suffix_and_is_per_process(tmp_path):
    tmp = temporary_path(tmp_path / "x.npz")
    assert tmp.suffix == ".npz" and tmp.parent == tmp_path and tmp.name.startswith(".x.npz.")
