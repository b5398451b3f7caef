"""Interop with an independent implementation: PlayCanvas splat-transform (npm
`@playcanvas/splat-transform`, run with node).

It reads every file mipview writes (converting it to a .ply that mipview then compares
with its own reading of the same file: count, SH bands, tag and values), and mipview
reads what it writes (count, SH degree, tag, renders within 30 dB of the source).

The tool is found through $MIPVIEW_SPLAT_TRANSFORM (the `splat-transform` script or its
cli.mjs), `splat-transform` on PATH, or node_modules/.bin in the repository, beside it
(../_npm) or in $HOME; without node or the package the tests skip saying so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from test_io_ply import random_gaussians

from render import render
from render.io import load_model, save_model, save_spz
from render.options import RenderOptions

REPO = Path(__file__).resolve().parents[1]
_BIN = Path("node_modules") / ".bin" / "splat-transform"


def find_splat_transform() -> tuple[list[str] | None, str]:
    """(the command that runs splat-transform, or None; why not)."""
    node = shutil.which("node")
    if node is None:
        return None, "node is not installed"
    env = os.environ.get("MIPVIEW_SPLAT_TRANSFORM")
    candidates = [Path(env)] if env else []
    on_path = shutil.which("splat-transform")
    candidates += [Path(on_path)] if on_path else []
    candidates += [REPO / _BIN, REPO.parent / "_npm" / _BIN, Path.home() / _BIN]
    for c in candidates:
        if c.is_file():
            return [node, str(c.resolve())], ""
    return None, ("@playcanvas/splat-transform not found (npm install it and set "
                  "MIPVIEW_SPLAT_TRANSFORM, or put it on PATH)")


_CMD, _WHY = find_splat_transform()
pytestmark = pytest.mark.skipif(_CMD is None, reason=_WHY)


def splat_transform(*args: str | Path) -> None:
    r = subprocess.run([*_CMD, "-q", "-w", *map(str, args)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def assert_same_values(ours, theirs, sh_atol: float) -> None:
    """Two decodings of the same quantised file: equal up to float rounding."""
    a, b = ours.gaussians, theirs.gaussians
    assert len(a) == len(b) and a.sh_degree == b.sh_degree
    span = float(a.means.abs().max())
    assert (a.means - b.means).abs().max() <= 1e-5 * span + 1e-6
    assert (a.quats * b.quats).sum(1).abs().min() > 1 - 1e-4
    assert (a.log_scales - b.log_scales).abs().max() < 1e-4
    op = torch.sigmoid
    assert (op(a.opacity_logits) - op(b.opacity_logits)).abs().max() <= 1.0 / 255
    assert (a.sh[:, 0] - b.sh[:, 0]).abs().max() < 1e-4
    assert (a.sh - b.sh).abs().max() <= sh_atol


@pytest.mark.parametrize("name,degree,sh_atol", [
    ("ours.ply", 3, 1e-6),
    ("ours.compressed.ply", 2, 1e-5),
    ("ours_v4.spz", 3, 1e-5),
    ("ours_v3.spz", 1, 1e-5),
    ("ours.sog", 3, 1e-5),
])
def test_splat_transform_reads_what_mipview_writes(tmp_path, name, degree, sh_atol):
    g = random_gaussians(1500, degree)
    g.sh = g.sh.clamp(-2, 2)
    # an alpha byte of 0 reads as opacity logit -inf in splat-transform's compressed .ply
    g.opacity_logits = g.opacity_logits.clamp(-5, 5)
    ours = tmp_path / name
    if name == "ours_v3.spz":
        save_spz(g, ours, model="antialiased", version=3)
    else:
        save_model(g, ours, model="antialiased")
    splat_transform(ours, tmp_path / "theirs.ply")
    theirs = load_model(tmp_path / "theirs.ply")
    assert theirs.splat_model == "antialiased"  # it read the tag and wrote it back
    assert_same_values(load_model(ours), theirs, sh_atol)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A tagged SH-1 model with real structure: a few blobs of small Gaussians."""
    gen = torch.Generator().manual_seed(5)
    n = 3000
    g = random_gaussians(n, 1, seed=5)
    g.means = torch.randn(n, 3, generator=gen) * 0.5
    g.log_scales = torch.randn(n, 3, generator=gen) * 0.3 - 3.5
    g.sh = g.sh.clamp(-1.5, 1.5) * 0.5
    return save_model(g, tmp_path_factory.mktemp("src") / "src.ply", model="antialiased")


# its SOG writer clusters SH on the CPU slowly (~10 s here): that one drops the SH bands
# (`-H 0`); the shared inria_iter7000_sh3.sog covers its SH-3 SOG (test_io_spz_sog)
@pytest.mark.parametrize("name,actions,degree", [
    ("theirs_v4.spz", [], 1),
    ("theirs_v3.spz", ["--spz-version", "3"], 1),
    ("theirs.compressed.ply", [], 1),
    ("theirs.sog", ["-H", "0", "-g", "cpu"], 0),
])
def test_mipview_reads_what_splat_transform_writes(source, tmp_path, name, actions, degree):
    from adapt.metrics import psnr
    from adapt.scale import virtual_base_cameras

    splat_transform(source, *actions[:2], tmp_path / name, *actions[2:])
    m = load_model(tmp_path / name)
    src = load_model(source).gaussians
    assert (len(m.gaussians), m.gaussians.sh_degree, m.splat_model) == \
        (len(src), degree, "antialiased")
    if degree == 0:
        src.sh = src.sh[:, :1].contiguous()
    opts = RenderOptions(backend="cpu", antialias=m.antialias)
    with torch.no_grad():
        scores = [psnr(render(src, c, opts).rgb, render(m.gaussians, c, opts).rgb)
                  for c in virtual_base_cameras(src, 128, 128, n=2)]
    assert min(scores) >= 30.0, scores
