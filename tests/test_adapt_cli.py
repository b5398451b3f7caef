"""`mipview adapt`: bad input exits 2 with a clear message; a small run prints the summary."""

from __future__ import annotations

import json

import pytest
import torch

from render.gaussians import Gaussians
from render.io import load_model, save_ply
from viewer.cli import main


def _model(path):
    g = torch.Generator().manual_seed(4)
    n = 200
    means = torch.cat([torch.rand(n, 2, generator=g) - 0.5, 0.2 * torch.rand(n, 1, generator=g)],
                      1)
    save_ply(Gaussians.from_colors(means, torch.rand(n, 3, generator=g),
                                   torch.full((n, 3), 0.004), torch.full((n,), 0.9)), path)
    return path


@pytest.mark.parametrize("argv,message", [
    (["--level", "1/3"], "bad level"),
    (["--level", "1"], "nothing to adapt"),
    (["--level", "1/4", "--iters", "0"], "at least 1"),
    (["--level", "1/4", "--sr-model", "/nonexistent/sr.safetensors"], "sr-model"),
    (["--level", "1/4", "--base-size", "big"], "base-size"),
])
def test_bad_arguments_exit_2_with_a_clear_message(tmp_path, capsys, argv, message):
    model = _model(tmp_path / "m.ply")
    rc = main(["adapt", str(model), "--out", str(tmp_path / "o.ply"), *argv])
    assert rc == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "o.ply").exists()


def test_unreadable_model_names_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"not a ply")
    assert main(["adapt", str(bad), "--level", "1/4", "--out", str(tmp_path / "o.ply")]) == 2
    assert "bad.ply" in capsys.readouterr().err


def test_small_run_writes_the_model_and_prints_a_json_summary(tmp_path, capsys):
    model = _model(tmp_path / "m.ply")
    out = tmp_path / "adapted.ply"
    rc = main(["adapt", str(model), "--level", "1/2", "--iters", "15", "--views", "3",
               "--base-size", "64x64", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    summary = json.loads(captured.out)
    assert summary["iterations"] == 15 and summary["level"] == "1/2"
    assert summary["gaussians_before"] == 200
    assert summary["gaussians_after"] == len(load_model(out).gaussians)
    assert load_model(out).splat_model == "antialiased"  # a zoom-out level: drawn with mip
    assert summary["base_cameras"].startswith("virtual")
    assert summary["held_out_views"] > 0
    assert set(summary["psnr"]) == {"vanilla", "mip", "adaptive", "blend", "adapted"}
    assert "finetune" in captured.err  # the progress bar


def test_an_x4_level_is_derived_from_the_x2_level_it_builds_first(tmp_path, capsys):
    model = _model(tmp_path / "m.ply")
    out = tmp_path / "x4.ply"
    rc = main(["adapt", str(model), "--level", "4", "--iters", "10", "--views", "3",
               "--base-size", "64x64", "--sr-model", "bicubic", "--out", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    summary = json.loads(captured.out)
    assert summary["level"] == "x4" and summary["derived_from"] == "x2"
    assert summary["iterations"] == 0 and "none: level x2" in summary["pseudo_gt"]
    assert "bicubic" in summary["reference"]
    g = load_model(out).gaussians
    assert len(g) == summary["gaussians_after"] and bool(torch.isfinite(g.log_scales).all())
    assert load_model(out).splat_model == "default"  # zoom-in levels are drawn classic
