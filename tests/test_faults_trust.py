"""Fault injection, issue 25: data loss and trust (the level cache, outputs, the loader).

Each test injects one fault a user's machine or a hostile file produces and asserts that it
was handled: nothing outside the cache is read or removed, bad models are refused or
cleaned, outputs are checked before the work, nothing garbage is written.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from adapt.cache import LevelCache, file_sha256
from render.gaussians import Gaussians
from render.io import save_ply

pytestmark = pytest.mark.fault


def _set(n: int, seed: int = 0) -> Gaussians:
    g = torch.Generator().manual_seed(seed)
    return Gaussians.from_colors(torch.randn(n, 3, generator=g), torch.rand(n, 3, generator=g),
                                 torch.full((n, 3), 0.02), torch.full((n,), 0.7))


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "scene.ply"
    save_ply(_set(50), path)
    return path


def _edit_manifest(cache: LevelCache, level: int, **fields) -> None:
    path = cache.directory / "manifest.json"
    m = json.loads(path.read_text())
    m["levels"][str(level)].update(fields)
    path.write_text(json.dumps(m))


# -- the level cache --------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["absolute", "parent"])
def test_a_manifest_path_outside_the_cache_is_neither_loaded_nor_deleted(model, tmp_path,
                                                                         where):
    c = LevelCache.for_model(_set(50), "s", model_path=model)
    c.put(-1, _set(20))
    victim = tmp_path / "precious.ply"
    save_ply(_set(33, seed=7), victim)
    before = victim.read_bytes()
    name = str(victim) if where == "absolute" else "../precious.ply"
    _edit_manifest(c, -1, file=name, sha256=file_sha256(victim))

    again = LevelCache.for_model(_set(50), "s", model_path=model)
    assert again.get(-1) is None, "a file outside the cache folder was loaded as a level"
    assert -1 not in again.levels()
    again.delete(-1)
    assert victim.read_bytes() == before, "Delete removed a file that is not the cache's"


def test_a_level_of_another_model_with_its_checksum_edited_is_refused(tmp_path):
    a, b = tmp_path / "a.ply", tmp_path / "b.ply"
    save_ply(_set(50, seed=1), a)
    save_ply(_set(50, seed=2), b)
    ca = LevelCache.for_model(_set(50, seed=1), "s", model_path=a)
    cb = LevelCache.for_model(_set(50, seed=2), "s", model_path=b)
    ca.put(-1, _set(20, seed=3))
    cb.put(-1, _set(25, seed=4))
    # B's level dropped into A's cache, the manifest's checksum edited to match it.
    shutil.copyfile(cb.directory / "level_-1.ply", ca.directory / "level_-1.ply")
    _edit_manifest(ca, -1, sha256=file_sha256(ca.directory / "level_-1.ply"), gaussians=25)
    assert LevelCache.for_model(_set(50, seed=1), "s", model_path=a).get(-1) is None


def test_a_valid_json_but_malformed_manifest_is_rebuilt(model, caplog):
    c = LevelCache.for_model(_set(50), "s", model_path=model)
    c.put(-1, _set(20))
    good = json.loads((c.directory / "manifest.json").read_text())["levels"]["-1"]
    (c.directory / "manifest.json").write_text(json.dumps({
        "version": 1, "model_hash": c.model_hash,
        "levels": {"x": {}, "-2": 5, "2": {"file": 3}, "-1": good, "3": None}}))
    again = LevelCache.for_model(_set(50), "s", model_path=model)
    assert list(again.levels()) == [-1]  # the good entry survives, the rest is dropped
    again.put(2, _set(8))
    third = LevelCache.for_model(_set(50), "s", model_path=model)
    assert sorted(third.levels()) == [-1, 2]
    assert "ignored" in caplog.text


def test_two_viewers_on_one_model_keep_each_others_levels(model):
    one = LevelCache.for_model(_set(50), "s", model_path=model)
    two = LevelCache.for_model(_set(50), "s", model_path=model)  # both read an empty cache
    one.put(-1, _set(20))
    two.put(-2, _set(15))
    one.put(1, _set(30))
    later = LevelCache.for_model(_set(50), "s", model_path=model)
    assert sorted(later.levels()) == [-2, -1, 1]
    two.delete(-1)
    assert sorted(LevelCache.for_model(_set(50), "s", model_path=model).levels()) == [-2, 1]


def test_opening_a_model_creates_no_cache_folder(model):
    c = LevelCache.for_model(_set(50), "s", model_path=model)
    assert c.get(-1) is None and c.levels() == {}
    c.delete(-1)
    assert not model.with_name("scene.ply.mipview").exists()
    c.put(-1, _set(20))
    assert (model.with_name("scene.ply.mipview") / "level_-1.ply").is_file()


def test_new_sr_weights_under_the_same_name_and_size_change_the_cache_key(tmp_path):
    from adapt.worker import AdaptSettings

    ckpt = tmp_path / "sr.safetensors"
    ckpt.write_bytes(b"\x01" * 4096)
    old = AdaptSettings(sr_model=str(ckpt)).key()
    ckpt.write_bytes(b"\x02" * 4096)  # retrained weights, same name, same size
    assert AdaptSettings(sr_model=str(ckpt)).key() != old
    ckpt.write_bytes(b"\x01" * 4096)
    assert AdaptSettings(sr_model=str(ckpt)).key() == old
