"""`mipview info` on an INRIA .ply runs without torch (importing it takes longer than
scanning a 700 MB file), prints what the full load reports, and the lazy exports of
`render` and `render.io` still give everyone else the names they import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import REPO
from test_io_ply import random_gaussians

from render.io import load_model, save_ply
from render.io.describe import centre_bounds
from render.io.summary import model_summary

HEAVY = ("torch", "numba", "imgui_bundle", "moderngl", "glfw")


def _python(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def _cameras_json(n: int) -> str:
    return json.dumps([{"id": i, "img_name": f"v{i}", "width": 64, "height": 48,
                        "position": [0.0, 0.0, -5.0 - i],
                        "rotation": [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
                        "fx": 60.0, "fy": 60.0} for i in range(n)])


def test_info_imports_no_torch_and_prints_what_the_full_load_reports(tmp_path):
    out_dir = tmp_path / "output"
    g = random_gaussians(2000, 3, seed=4)
    g.means[7, 1] = float("nan")  # one dropped row
    g.quats[9] = 0.0  # one zero rotation
    ply = save_ply(g, out_dir / "point_cloud" / "iteration_30" / "point_cloud.ply")
    (out_dir / "cameras.json").write_text(_cameras_json(3))

    run = _python("-X", "importtime", "-m", "viewer.cli", "info", str(ply))
    assert run.returncode == 0, run.stderr[-2000:]
    imported = {line.split("|")[-1].strip().split(".")[0]
                for line in run.stderr.splitlines() if line.startswith("import time:")}
    assert "numpy" in imported and "render" in imported  # the trace is the one we mean
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))

    expected = load_model(ply).summary()  # the full load, through torch
    assert json.loads(run.stdout) == expected
    assert run.stdout == json.dumps(expected, indent=2) + "\n"
    assert expected["n_dropped"] == 1 and expected["n_zero_quats"] == 1
    assert expected["training_cameras"] == {"count": 3, "path": str(out_dir / "cameras.json")}
    lo, hi = load_model(ply).gaussians.bounds()
    assert expected["bounds"] == {"min": lo.tolist(), "max": hi.tolist()}


def test_info_without_torch_warns_of_a_broken_cameras_json_as_the_load_does(tmp_path):
    ply = save_ply(random_gaussians(300, 1, seed=5), tmp_path / "model.ply")
    (tmp_path / "cameras.json").write_text('[{"id": 0, "img_name": "a"}]')
    summary = model_summary(ply)
    assert summary == load_model(ply).summary()
    assert summary["training_cameras"] is None
    assert len(summary["warnings"]) == 1
    assert "training cameras not loaded" in summary["warnings"][0]
    assert "lacks 'width'" in summary["warnings"][0]


def test_centre_bounds_are_the_sets_bounds_and_extent():
    """The numpy figures `info` prints are those torch computes for the set: the box
    exactly, the extent up to float32 rounding."""
    rng = np.random.default_rng(11)
    for n in (1, 2, 3, 17, 150, 4000, 2_100_000):  # the last one is sampled with a stride
        scale = 10.0 ** rng.uniform(-2, 3)
        means = (rng.standard_normal((n, 3)) * scale + rng.uniform(-9, 9, 3)).astype(np.float32)
        g = replace(random_gaussians(n, 0), means=torch.from_numpy(means))
        lo, hi, extent = centre_bounds(means)
        t_lo, t_hi = g.bounds()
        assert np.array_equal(lo, t_lo.numpy()) and np.array_equal(hi, t_hi.numpy())
        assert extent == pytest.approx(g.extent(), rel=1e-5), n


def test_render_and_render_io_exports_still_import():
    code = """
import sys
import render, render.io
assert "torch" not in sys.modules  # the packages alone load nothing heavy
from render import Camera, Gaussians, RenderOptions, RenderResult, render as render_fn
from render.io import GaussianFileError, load_model, save_ply, CameraRecord, FORMATS
import render.camera, render.rasterize, render.io.model, render.io.errors
assert render_fn is render.rasterize.render and Camera is render.camera.Camera
assert load_model is render.io.model.load_model
assert GaussianFileError is render.io.errors.GaussianFileError
ns = {}
exec("from render.io import *", ns)
assert set(render.io.__all__) <= set(ns), set(render.io.__all__) - set(ns)
exec("from render import *", ns)
assert ns["render"] is render_fn and ns["RenderResult"] is RenderResult
assert set(render.__all__) <= set(dir(render))
for pkg in (render, render.io):
    try:
        pkg.no_such_name
    except AttributeError as e:
        assert "no_such_name" in str(e)
    else:
        raise AssertionError("an unknown name must raise AttributeError")
print("ok")
"""
    run = _python("-c", code)
    assert run.returncode == 0 and run.stdout == "ok\n", run.stderr[-3000:]
