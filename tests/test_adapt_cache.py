"""The per-level cache: memory + disk, reuse, corrupt / stale entries, failures, threads."""

from __future__ import annotations

import errno
import json
import logging
import os
import threading

import pytest
import torch
from conftest import random_set

import adapt.cache as cache_mod
from adapt.cache import LevelCache, cache_dir_for, gaussians_sha256
from render.io import save_ply


@pytest.fixture
def model(model_file):
    return model_file


def test_a_level_is_reused_when_the_same_model_opens_again(model):
    c = LevelCache.for_model(random_set(50), "settings-a", model_path=model)
    assert c.directory == model.with_name("scene.ply.mipview")
    assert c.get(-2) is None
    adapted = random_set(30, seed=1)
    info = c.put(-2, adapted, seconds=12.5, info={"label": "1/4"})
    assert info.gaussians == 30 and (c.directory / "level_-2.ply").is_file()
    manifest = json.loads((c.directory / "manifest.json").read_text())
    assert manifest["levels"]["-2"]["settings"] == "settings-a"

    again = LevelCache.for_model(random_set(50), "settings-a", model_path=model)
    got = again.get(-2)
    assert got is not None and torch.equal(got.means, adapted.means)
    levels = again.levels()
    assert list(levels) == [-2] and levels[-2].seconds == 12.5
    assert levels[-2].info["label"] == "1/4"


def test_corrupt_stale_or_foreign_entries_are_ignored_with_a_warning(model, caplog):
    c = LevelCache.for_model(random_set(50), "settings-a", model_path=model)
    c.put(-2, random_set(30))
    c.put(1, random_set(40))
    (c.directory / "level_-2.ply").write_bytes(b"ply\nnot really")
    caplog.set_level(logging.WARNING, "mipview.adapt")
    fresh = LevelCache.for_model(random_set(50), "settings-a", model_path=model)
    assert fresh.get(-2) is None and "checksum" in caplog.text
    assert fresh.get(1) is not None
    # Other settings: stale.
    assert LevelCache.for_model(random_set(50), "settings-b", model_path=model).get(1) is None
    assert "other settings" in caplog.text
    # The model file changed: the whole manifest belongs to another model.
    save_ply(random_set(51), model)
    assert LevelCache.for_model(random_set(51), "settings-a", model_path=model).get(1) is None
    assert "another model" in caplog.text
    # A manifest that is not JSON.
    (c.directory / "manifest.json").write_text("{oops")
    assert LevelCache.for_model(random_set(50), "settings-a", model_path=model).get(1) is None
    assert "unreadable" in caplog.text


def test_rebuilt_entry_replaces_the_corrupt_one(model):
    c = LevelCache.for_model(random_set(50), "s", model_path=model)
    c.put(-1, random_set(20))
    (c.directory / "level_-1.ply").write_bytes(b"garbage")
    c2 = LevelCache.for_model(random_set(50), "s", model_path=model)
    assert c2.get(-1) is None
    c2.put(-1, random_set(21))
    assert len(LevelCache.for_model(random_set(50), "s", model_path=model).get(-1)) == 21


def test_failed_write_leaves_the_cache_as_it_was(model, monkeypatch):
    c = LevelCache.for_model(random_set(50), "s", model_path=model)
    c.put(-1, random_set(20))
    manifest_before = (c.directory / "manifest.json").read_bytes()

    def disk_full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_mod, "save_ply", disk_full)
    with pytest.raises(OSError):
        c.put(-2, random_set(30))
    assert c.get(-2) is None and len(c.get(-1)) == 20
    assert (c.directory / "manifest.json").read_bytes() == manifest_before


def test_unwritable_folder_falls_back_to_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    ro = tmp_path / "ro"
    ro.mkdir()
    model = ro / "m.ply"
    save_ply(random_set(5), model)
    os.chmod(ro, 0o555)
    try:
        if os.access(ro, os.W_OK):  # root ignores permissions: simulate the failure
            monkeypatch.setattr(cache_mod, "_writable_dir",
                                lambda p: not str(p).startswith(str(ro)))
        d = cache_dir_for(model, "abc123")
        assert d == tmp_path / "xdg" / "mipview" / "abc123"
    finally:
        os.chmod(ro, 0o755)
    # No model file (the demo): the user cache, keyed by the tensors' hash.
    c = LevelCache.for_model(random_set(5), "s")
    assert c.directory == tmp_path / "xdg" / "mipview" / gaussians_sha256(random_set(5))[:32]


def test_delete_export_and_memory_only(tmp_path, model):
    c = LevelCache.for_model(random_set(50), "s", model_path=model)
    c.put(2, random_set(8))
    out = c.export(2, tmp_path / "x2.ply")
    assert out.is_file()
    c.delete(2)
    assert c.get(2) is None and not (c.directory / "level_2.ply").exists()
    with pytest.raises(KeyError):
        c.export(2, tmp_path / "none.ply")
    mem = LevelCache("hash", "s", directory=None)
    mem.put(-3, random_set(4))
    assert len(mem.get(-3)) == 4


def test_concurrent_puts_and_gets_are_safe(model):
    c = LevelCache.for_model(random_set(50), "s", model_path=model)
    errors = []

    def work(level):
        try:
            for i in range(3):
                c.put(level, random_set(10 + i, seed=level + 5))
                assert c.get(level) is not None
                c.levels()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(lv,)) for lv in (-3, -2, -1, 1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    again = LevelCache.for_model(random_set(50), "s", model_path=model)
    assert sorted(again.levels()) == [-3, -2, -1, 1, 2, 3]
    assert all(info.gaussians == 12 for info in again.levels().values())


def test_a_level_in_memory_is_read_while_another_level_is_being_written(model, monkeypatch):
    # The viewer asks for the level in use every frame on its GL thread; the worker
    # writing the next level's file must not stall it.
    c = LevelCache.for_model(random_set(50), "settings-a", model_path=model)
    shown = random_set(30, seed=1)
    c.put(-2, shown)
    writing, release = threading.Event(), threading.Event()
    real_save = cache_mod.save_ply

    def slow_save(g, path, **kw):
        writing.set()
        release.wait(30)
        return real_save(g, path, **kw)

    monkeypatch.setattr(cache_mod, "save_ply", slow_save)
    writer = threading.Thread(target=c.put, args=(-3, random_set(20, seed=2)))
    writer.start()
    try:
        assert writing.wait(30)
        got = []
        reader = threading.Thread(target=lambda: got.append(c.get(-2)))
        reader.start()
        reader.join(10)
        assert got and got[0] is not None, "get() of a level in memory waited for a write"
        assert torch.equal(got[0].means, shown.means)
    finally:
        release.set()
        writer.join(30)
    assert c.get(-3) is not None
