"""Fault injection, the level cache the viewer's adaptation and `mipview adapt` share: a
manifest corrupt, truncated, nested deep, malformed, from another model or pointing at a
missing level; two processes writing levels of one model at once. Expected: the entry is
ignored with a warning and rebuilt, never a wrong model, never a crash."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import random_set

from adapt.cache import LevelCache
from render.io import save_ply

pytestmark = pytest.mark.fault

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def model(model_file):
    return model_file


def _open(model) -> LevelCache:
    return LevelCache.for_model(random_set(50), "s", model_path=model)


def _manifest(c: LevelCache) -> Path:
    return c.directory / "manifest.json"


def _rebuilds(model, level: int = -1) -> None:
    """The level is absent, is rebuilt (put), and a fresh cache finds the new one."""
    c = _open(model)
    assert c.get(level) is None
    new = random_set(20, seed=9)
    c.put(level, new)
    got = _open(model).get(level)
    assert got is not None and torch.equal(got.means, new.means)


def test_a_manifest_nested_deep_is_ignored_and_rebuilt(model, caplog):
    c = _open(model)
    c.put(-1, random_set(30))
    _manifest(c).write_text('{"levels": ' + "[" * 100_000 + "]" * 100_000 + "}")
    caplog.set_level(logging.WARNING, "mipview.adapt")
    assert _open(model).levels() == {}
    assert "nested too deeply" in caplog.text
    _rebuilds(model)


def test_malformed_entries_are_dropped_and_good_ones_kept(model, caplog):
    c = _open(model)
    c.put(-1, random_set(30))
    m = json.loads(_manifest(c).read_text())
    m["levels"]["abc"] = m["levels"]["-1"]
    m["levels"]["2"] = "not an entry"
    m["levels"]["3"] = {"file": ["a", "list"]}
    _manifest(c).write_text(json.dumps(m))
    caplog.set_level(logging.WARNING, "mipview.adapt")
    fresh = _open(model)
    assert list(fresh.levels()) == [-1]
    assert fresh.get(2) is None and fresh.get(3) is None
    assert "malformed" in caplog.text


def test_a_truncated_manifest_is_ignored_and_rebuilt(model, caplog):
    c = _open(model)
    c.put(-1, random_set(30))
    text = _manifest(c).read_bytes()
    _manifest(c).write_bytes(text[: len(text) // 2])
    caplog.set_level(logging.WARNING, "mipview.adapt")
    _rebuilds(model)
    assert "unreadable" in caplog.text


def test_a_manifest_of_another_model_never_gives_its_levels(model, tmp_path, caplog):
    c = _open(model)
    c.put(-1, random_set(30, seed=5))
    other = tmp_path / "other.ply"
    save_ply(random_set(50, seed=1), other)
    # the other model's cache folder gets this one's manifest and level file
    theirs = LevelCache.for_model(random_set(50, seed=1), "s", model_path=other)
    theirs.directory.mkdir(exist_ok=True)
    for f in c.directory.iterdir():
        (theirs.directory / f.name).write_bytes(f.read_bytes())
    caplog.set_level(logging.WARNING, "mipview.adapt")
    reopened = LevelCache.for_model(random_set(50, seed=1), "s", model_path=other)
    assert reopened.get(-1) is None and reopened.levels() == {}
    assert "another model" in caplog.text


def test_a_manifest_pointing_at_a_missing_level_is_rebuilt(model, caplog):
    c = _open(model)
    c.put(-1, random_set(30))
    (c.directory / "level_-1.ply").unlink()
    caplog.set_level(logging.WARNING, "mipview.adapt")
    _rebuilds(model)
    assert "missing" in caplog.text


def test_two_caches_of_one_model_keep_each_others_levels(model):
    """Two viewers (or a viewer and `mipview adapt`) open on one model: each read the
    manifest before the other wrote; neither write may drop the other's level."""
    a, b = _open(model), _open(model)
    a.put(-1, random_set(30, seed=1))
    b.put(1, random_set(40, seed=2))
    a.put(-2, random_set(20, seed=3))
    fresh = _open(model)
    assert sorted(fresh.levels()) == [-2, -1, 1]
    b.delete(1)
    assert sorted(_open(model).levels()) == [-2, -1]


_PUT = """
import pathlib, sys, time, torch
from adapt.cache import LevelCache
from render.gaussians import Gaussians

model, level = sys.argv[1], int(sys.argv[2])
g = torch.Generator().manual_seed(0)
base = Gaussians.from_colors(torch.randn(50, 3, generator=g), torch.rand(50, 3, generator=g),
                             torch.full((50, 3), 0.02), torch.full((50,), 0.7))
c = LevelCache.for_model(base, "s", model_path=model)
# both processes have read the (empty) manifest before either writes
ready = pathlib.Path(model).with_name(f"ready{level}")
ready.touch()
while len(list(ready.parent.glob("ready*"))) < 2:
    time.sleep(0.01)
for i in range(15):
    c.put(level, Gaussians.from_colors(torch.randn(30 + i, 3), torch.rand(30 + i, 3),
                                       torch.full((30 + i, 3), 0.02), torch.full((30 + i,), 0.7)))
"""


def test_two_processes_writing_levels_at_once_keep_both(model):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, "-c", _PUT, str(model), str(level)], env=env,
                              cwd=REPO, stderr=subprocess.PIPE) for level in (-1, 2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    levels = _open(model).levels()
    assert sorted(levels) == [-1, 2]
    assert levels[-1].gaussians == 44 and levels[2].gaussians == 44
