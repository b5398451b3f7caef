"""A mip-filter level baked for viewers without the tag (adapt.bake, `adapt --bake-filter`):
drawn classic, it looks as the level drawn with the mip filter."""

from __future__ import annotations

import json

import torch
from test_adapt_cli import _model
from test_rasterize import camera

from adapt.bake import bake_mip_filter
from adapt.metrics import psnr
from adapt.views import rescaled_exact
from render import RenderOptions, render
from render.gaussians import Gaussians
from render.io import load_model
from viewer.cli import main


def _small_splats(n: int = 400) -> Gaussians:
    """Sub-pixel splats (0.02-0.3 px) at 64x48 around z = 3: where the dilations differ most."""
    gen = torch.Generator().manual_seed(11)
    means = torch.cat([(torch.rand(n, 2, generator=gen) - 0.5) * 2.4,
                       3.0 + torch.rand(n, 1, generator=gen)], 1)
    return Gaussians.from_colors(means, torch.rand(n, 3, generator=gen),
                                 0.002 + 0.02 * torch.rand(n, 3, generator=gen),
                                 0.3 + 0.6 * torch.rand(n, generator=gen))


def test_baked_level_drawn_classic_looks_as_the_level_drawn_with_the_mip_filter():
    g, cam = _small_splats(), camera(64, 48)
    mip = render(g, cam, RenderOptions(antialias="mip", backend="cpu")).rgb
    unbaked = render(g, cam, RenderOptions(antialias="classic", backend="cpu")).rgb
    baked = render(bake_mip_filter(g, [cam]), cam,
                   RenderOptions(antialias="classic", backend="cpu")).rgb
    # 17.8 dB drawn classic as it is, 41.3 baked (the splats' thin axes hit the floor)
    assert psnr(baked, mip) > psnr(unbaked, mip) + 15.0
    assert psnr(baked, mip) > 36.0
    # the input is not modified
    assert torch.equal(g.opacity_logits, _small_splats().opacity_logits)


def test_adapt_bake_filter_writes_an_untagged_level_and_scores_it(tmp_path, capsys):
    model = _model(tmp_path / "m.ply")
    out = tmp_path / "baked.ply"
    rc = main(["adapt", str(model), "--level", "1/2", "--iters", "5", "--views", "3",
               "--base-size", "64x64", "--bake-filter", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    summary = json.loads(captured.out)
    assert summary["filter_baked"] and summary["tag"] == "default"
    assert load_model(out).splat_model == "default"  # other viewers draw it classic
    assert "adapted_baked_classic" in summary["psnr"]


def test_panel_export_bakes_a_zoom_out_level_when_asked(tmp_path):
    """The panel's "bake the filter" export: untagged, the opacities and scales changed as
    bake_mip_filter makes them at the level's rate; no base cameras is a clear error."""
    from adapt.cache import LevelCache
    from viewer.adaptation import AdaptController

    g, cam = _small_splats(40), camera(64, 48)
    ctrl = AdaptController()
    ctrl.cache = LevelCache("hash", "settings", None)
    ctrl.cache.put(-1, g)
    ctrl.refresh_levels()
    ctrl.options.export_baked = True
    ctrl.export(-1, tmp_path / "none.ply").join()
    assert "base cameras" in ctrl.error and not (tmp_path / "none.ply").exists()
    ctrl._base_cameras = [cam]
    ctrl.export(-1, tmp_path / "baked.spz").join()
    assert not ctrl.error, ctrl.error
    m = load_model(tmp_path / "baked.spz")
    want = bake_mip_filter(g, [rescaled_exact(cam, 0.5)])
    assert m.splat_model == "default" and len(m.gaussians) == 40
    assert torch.allclose(m.gaussians.opacities, want.opacities, atol=0.01)
    assert torch.allclose(m.gaussians.log_scales, want.log_scales, atol=0.05)
