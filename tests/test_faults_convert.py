"""Fault injection, `mipview convert`: a full disk, Ctrl-C and running out of memory while
writing, a folder that is missing, read-only or vanishes mid-job. Expected: a one-line error
(exit 130 for Ctrl-C), no traceback, the output whole or absent, a file that was there
before untouched."""

from __future__ import annotations

import errno
import os
import shutil

import pytest
import torch

import render.io.atomic as atomic
from render.gaussians import Gaussians
from render.io import load_model, save_ply
from viewer.cli import main

pytestmark = pytest.mark.fault

FORMATS = ("out.spz", "out.sog", "out.compressed.ply", "out.ply")


@pytest.fixture
def model(tmp_path):
    g = torch.Generator().manual_seed(2)
    n = 300
    return save_ply(Gaussians.from_colors(torch.randn(n, 3, generator=g),
                                          torch.rand(n, 3, generator=g),
                                          torch.full((n, 3), 0.02), torch.full((n,), 0.7)),
                    tmp_path / "in.ply")


def _convert(src, out, *extra) -> int:
    return main(["convert", str(src), str(out), "--quiet", *extra])


def _visible(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def _fail_in_write(monkeypatch, exc: BaseException) -> None:
    """Every temporary-then-rename write raises `exc` after its first bytes."""
    def fake(fd):
        raise exc

    monkeypatch.setattr(atomic.os, "fsync", fake)


@pytest.mark.parametrize("name", FORMATS)
def test_disk_full_while_writing_leaves_the_old_output_whole(tmp_path, model, capsys,
                                                              monkeypatch, name):
    out = tmp_path / name
    out.write_bytes(b"the user's earlier file")
    _fail_in_write(monkeypatch, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    assert _convert(model, out, "--force") == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err and name in err
    assert out.read_bytes() == b"the user's earlier file"
    assert _visible(tmp_path) == sorted(["in.ply", name])


def test_ctrl_c_while_writing_exits_130_and_writes_nothing(tmp_path, model, capsys,
                                                            monkeypatch):
    _fail_in_write(monkeypatch, KeyboardInterrupt())
    assert _convert(model, tmp_path / "out.spz") == 130
    assert "interrupted" in capsys.readouterr().err
    assert _visible(tmp_path) == ["in.ply"]


def test_out_of_memory_while_writing_is_one_line(tmp_path, model, capsys, monkeypatch):
    _fail_in_write(monkeypatch, MemoryError())
    assert _convert(model, tmp_path / "out.sog") == 1
    err = capsys.readouterr().err
    assert "out of memory" in err and "Traceback" not in err
    assert _visible(tmp_path) == ["in.ply"]


def test_a_missing_folder_is_said_before_reading(tmp_path, model, capsys):
    assert _convert(model, tmp_path / "nowhere" / "out.spz") == 2
    assert "does not exist" in capsys.readouterr().err
    assert _visible(tmp_path) == ["in.ply"]


def test_a_read_only_folder_is_said_before_reading(tmp_path, model, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("root writes into any folder")
        assert _convert(model, locked / "out.spz") == 2
        assert "writable" in capsys.readouterr().err
    finally:
        locked.chmod(0o700)


def test_a_folder_that_vanishes_mid_job_is_made_again_and_the_file_written_whole(
        tmp_path, model, monkeypatch):
    """Writers make their folder when it is missing (render.io.atomic): the output still
    appears whole, never half-written, and the input is untouched."""
    folder = tmp_path / "gone"
    folder.mkdir()
    import render.io as rio

    real = rio.load_model

    def load_then_vanish(*a, **k):  # the folder goes while the model is read
        m = real(*a, **k)
        shutil.rmtree(folder)
        return m

    monkeypatch.setattr(rio, "load_model", load_then_vanish)
    assert _convert(model, folder / "out.spz") == 0
    assert _visible(folder) == ["out.spz"]
    assert len(load_model(folder / "out.spz").gaussians) == 300
    assert len(load_model(model).gaussians) == 300
