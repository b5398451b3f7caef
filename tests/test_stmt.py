"""The single-scale-train / multi-scale-test protocol: a miniature of the whole run on the
real lego images (tiny scales, few steps), and its parts."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import data_file
from PIL import Image

from adapt import stmt
from adapt.metrics import psnr, ssim
from adapt.train import carve_to_foreground, photometric_loss, random_init
from render import Camera, Gaussians


@pytest.fixture(scope="module")
def mini_report(tmp_path_factory):
    """`mipview eval` on lego at 1/16 -> 1/32 (zoom-out) and 1/32 -> 1/16 (zoom-in)."""
    from viewer.cli import main

    lego = data_file("lego/transforms_train.json").parent
    out = tmp_path_factory.mktemp("stmt")
    rc = main(["eval", str(lego), "--out", str(out), "--out-scale", "1/16",
               "--out-tests", "1/32", "--in-scale", "1/32", "--in-tests", "1/16",
               "--train-iters", "25", "--train-init", "1500", "--adapt-iters", "8",
               "--adapt-views", "2", "--test-limit", "2", "--quiet"])
    return rc, out


@pytest.mark.slow
def test_miniature_protocol_writes_a_complete_report(mini_report):
    rc, out = mini_report
    assert rc == 0
    for name in ("results.json", "table.md", "psnr_vs_scale.png", "grid.png"):
        assert (out / name).is_file(), name
    res = json.loads((out / "results.json").read_text())
    keys = [m["key"] for m in res["methods"]]
    assert keys == [m.key for m in stmt.default_methods()]
    assert keys[:7] == ["3dgs", "mip", "adaptive", "blend", "mipmap_train", "mipmap_test",
                        "mipmap_blend_train"]
    # every zoom-in pseudo-GT candidate is a row, alone and as a Mipmap-GS target
    assert {"mipmap_bicubic_train", "pseudo_gt", "pseudo_gt_adaptive"} <= set(keys)
    zoom_in_only = {m["key"] for m in res["methods"] if m["zoom_in_only"]}
    assert "mipmap_bicubic_train" in zoom_in_only and "mipmap_train" not in zoom_in_only
    cols = [(s["name"], t) for s in res["settings"] for t in s["test_scales"]]
    assert cols == [("zoom-out", 1 / 32), ("zoom-in", 1 / 16)]
    # one finite score per method and scale (zoom-in only rows: zoom-in scales), PSNR per
    # view for each scored view
    assert len(res["scores"]) == 2 * len(keys) - len(zoom_in_only)
    assert not [sc for sc in res["scores"] if sc["method"] in zoom_in_only
                and sc["setting"] == "zoom-out"]
    for sc in res["scores"]:
        assert 5.0 < sc["psnr"] < 60.0 and math.isfinite(sc["psnr"])
        assert 0.0 < sc["ssim"] <= 1.0
        assert len(sc["psnr_per_view"]) == res["n_test_views"] == 2
        assert sc["psnr"] == pytest.approx(np.mean(sc["psnr_per_view"]))
    # adapted methods have a timing per level, against a real base training time
    adapted_in = {k for k in keys if k.startswith("mipmap_")}
    assert {(a["setting"], a["method"]) for a in res["adaptation"]} == {
        (s, m) for s in ("zoom-out", "zoom-in") for m in adapted_in
        if s == "zoom-in" or m not in zoom_in_only}
    for a in res["adaptation"]:
        if a["setting"] == "zoom-in":
            want = {m["key"]: m["upsampler"] for m in res["methods"]}[a["method"]]
            assert a["upsampler"] == want
    assert {a["antialias"] for a in res["adaptation"] if a["method"] == "mipmap_blend_train"} \
        == {"blend"}
    for a in res["adaptation"]:
        assert a["seconds"] > 0 and math.isfinite(a["ratio_to_base"])
        assert a["level"] == (-1 if a["setting"] == "zoom-out" else 1)
    for name in ("zoom-out", "zoom-in"):
        b = res["base"][name]
        assert b["seconds"] > 0 and math.isfinite(b["psnr"]) and b["psnr"] > 10.0
    assert res["base"]["zoom-out"]["size"] == [50, 50]
    assert res["lpips_skipped"] is None or "lpips" in res["lpips_skipped"].lower()


@pytest.mark.slow
def test_miniature_table_plot_and_grid_are_well_formed(mini_report):
    _, out = mini_report
    table = (out / "table.md").read_text()
    for label in ("3DGS (classic)", "Mip-Splatting 2D filter", "Mipmap-GS (train views;",
                  "pseudo-GT (adaptive render)", "zoom-in pseudo-GT",
                  "×1/2 (1/32)", "×2 (1/16)", "**PSNR**", "**SSIM**", "Base models"):
        assert label in table
    assert "nan" not in table.lower() and "inf" not in table.lower()
    plot = Image.open(out / "psnr_vs_scale.png")
    assert plot.size[0] > 400 and plot.size[1] > 200
    grid = np.asarray(Image.open(out / "grid.png").convert("RGB"))
    # ground truth + one row a method, 128-pixel cells under an 18-pixel header
    assert grid.shape[0] == 18 + (1 + len(stmt.default_methods())) * 128
    # the ground-truth cell of the first column shows the object, not blank canvas
    cell = grid[18:18 + 128, 150:150 + 128].astype(float)
    assert cell.std() > 10


@pytest.mark.slow
def test_miniature_bases_are_saved_with_their_training_record(mini_report):
    from render.io import load_model

    _, out = mini_report
    model = out / "base_zoom-in" / "point_cloud.ply"
    g = load_model(model).gaussians
    assert len(g) > 100
    summary = json.loads((out / "base_zoom-in" / "train_summary.json").read_text())
    assert summary["size"] == [25, 25] and summary["iters"] == 25
    cams = json.loads((out / "base_zoom-in" / "cameras.json").read_text())
    assert len(cams) == 100 and cams[0]["width"] == 25


@pytest.mark.slow
def test_reports_merge_into_one(mini_report, tmp_path):
    from viewer.cli import main

    _, out = mini_report
    rc = main(["eval", "--merge", str(out), "--out", str(tmp_path), "--quiet"])
    assert rc == 0
    assert (tmp_path / "table.md").read_text() == (out / "table.md").read_text()
    assert (tmp_path / "grid.png").is_file()


# -- parts ------------------------------------------------------------------------------------

def test_settings_are_the_papers_zooms():
    assert stmt.ZOOM_OUT.zooms() == (0.5, 0.25)
    assert stmt.ZOOM_IN.zooms() == (2.0, 4.0, 8.0)


def test_methods_render_with_their_own_dilation():
    m = {x.key: x for x in stmt.default_methods()}
    assert stmt.method_options(m["3dgs"], 0.25).dilation() == (0.3, False)
    assert stmt.method_options(m["mip"], 0.25).dilation() == (0.1, True)
    assert stmt.method_options(m["adaptive"], 0.25).dilation()[0] == pytest.approx(0.3 / 16)
    assert stmt.method_options(m["adaptive"], 4.0).dilation()[0] == pytest.approx(0.3 * 16)
    assert stmt.method_options(m["mipmap_train"], 4.0).dilation() == (0.3, False)
    assert stmt.method_options(m["blend"], 0.25).dilation()[0] == pytest.approx(0.3 / 16)
    assert stmt.method_options(m["blend"], 0.25).antialias == "blend"
    assert m["mipmap_train"].upsampler == m["mipmap_test"].upsampler
    from adapt.upsample import default_zoom_in_pseudo_gt

    assert m["mipmap_train"].upsampler == default_zoom_in_pseudo_gt()
    assert m["pseudo_gt_adaptive"].zoom_in_only and not m["pseudo_gt"].zoom_in_only
    with_sr = {x.key: x for x in stmt.default_methods("x.pth")}
    assert set(with_sr) - set(m) == {"mipmap_sr_train", "pseudo_gt_sr"}
    assert with_sr["pseudo_gt_sr"].upsampler == "x.pth"


def test_evenly_spreads_views():
    assert stmt.evenly(list(range(10)), 3) == [0, 4, 9]
    assert stmt.evenly([1, 2], 5) == [1, 2]


def test_grid_crop_shows_the_same_region_at_every_scale():
    big = torch.zeros(80, 80, 3)
    big[32:48, 32:48] = 1.0  # a white square in the middle
    small = torch.nn.functional.avg_pool2d(big.permute(2, 0, 1)[None], 4)[0].permute(1, 2, 0)
    crop = (0.25, 0.25, 0.75, 0.75)
    a = stmt.crop_for_grid(big, crop, 40).astype(float) / 255
    b = stmt.crop_for_grid(small, crop, 40).astype(float) / 255
    assert a.shape == b.shape == (40, 40, 3)
    assert abs(a.mean() - b.mean()) < 0.02  # same content, same place
    assert a[20, 20, 0] == 1.0 and a[2, 2, 0] == 0.0


def test_table_has_one_row_per_method_and_a_column_per_scale():
    res = stmt.StmtResults(data="x", n_test_views=1,
                           settings=[{"name": "zoom-out", "base_scale": 0.25,
                                      "test_scales": [0.125, 0.0625]}],
                           methods=[{"key": "3dgs", "label": "3DGS"},
                                    {"key": "mip", "label": "Mip"}],
                           lpips_skipped="no weights")
    res.scores = [stmt.Score("zoom-out", "3dgs", 0.125, 0.5, 20.0, 0.8),
                  stmt.Score("zoom-out", "mip", 0.0625, 0.25, 21.5, 0.9)]
    table = stmt.table_markdown(res)
    assert "| 3DGS | 20.00 | – |" in table
    assert "| Mip | – | 21.50 |" in table
    assert "×1/2 (1/8)" in table and "×1/4 (1/16)" in table
    assert "LPIPS skipped: no weights" in table


def test_ssim_metric():
    a = torch.rand(32, 32, 3)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-5)
    assert ssim(a, torch.rand(32, 32, 3)) < 0.2
    assert ssim(a, a * 0.9) > ssim(a, a * 0.5)


def test_photometric_loss_is_zero_only_for_the_target():
    a = torch.rand(24, 24, 3)
    assert float(photometric_loss(a, a)) == pytest.approx(0.0, abs=1e-5)
    b = a.clone().requires_grad_(True)
    loss = photometric_loss(b, (a + 0.1).clamp(0, 1))
    loss.backward()
    assert float(loss.detach()) > 0 and b.grad.abs().sum() > 0


def test_random_init_fills_the_box_seeded():
    lo, hi = torch.full((3,), -1.5), torch.full((3,), 1.5)
    g = random_init(lo, hi, 2000, sh_degree=1, seed=3)
    assert isinstance(g, Gaussians) and len(g) == 2000 and g.sh_degree == 1
    assert (g.means >= lo).all() and (g.means <= hi).all()
    assert torch.allclose(g.opacities, torch.full((2000,), 0.1), atol=1e-5)
    # sized by the neighbours: about the mean spacing of 2000 points in a 3-unit cube
    spacing = (27.0 / 2000) ** (1 / 3)
    assert 0.2 * spacing < float(g.scales.median()) < 2.0 * spacing
    assert torch.equal(random_init(lo, hi, 2000, 1, seed=3).means, g.means)
    assert not torch.equal(random_init(lo, hi, 2000, 1, seed=4).means, g.means)


def test_carving_keeps_points_the_views_see_on_the_object():
    # two cameras looking at the origin; the object is a disc in the middle of each image
    cams = [Camera.look_at(eye, (0, 0, 0), width=32, height=32, fov_y_deg=40)
            for eye in ((0, 0, -4), (4, 0, 0))]
    imgs = torch.ones(2, 32, 32, 3)
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    disc = ((yy - 15.5) ** 2 + (xx - 15.5) ** 2) < 36
    imgs[:, disc] = 0.3
    pts = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.1, 0.1], [1.2, 1.2, 1.2], [0.0, 1.4, 0.0]])
    keep = carve_to_foreground(pts, cams, imgs, dilate=0)
    assert keep.tolist() == [True, True, False, False]


def test_psnr_of_a_render_against_itself_is_infinite():
    a = torch.rand(8, 8, 3)
    assert psnr(a, a) == math.inf


def test_merge_joins_settings_and_methods_of_separate_runs():
    def run(setting, scale, methods):
        r = stmt.StmtResults(data="lego", n_test_views=3,
                             settings=[{"name": setting, "base_scale": 0.25,
                                        "test_scales": [scale]}],
                             methods=[{"key": k, "label": k.upper()} for k in methods],
                             base={setting: {"scale": 0.25, "size": [8, 8], "n_gaussians": 5,
                                             "seconds": 1.0, "psnr": 30.0, "ssim": 0.9}})
        r.scores = [stmt.Score(setting, k, scale, scale / 0.25, 20.0 + i, 0.8)
                    for i, k in enumerate(methods)]
        return r, {(setting, "gt", scale): np.zeros((4, 4, 3), np.uint8)}

    res, grid = stmt.merge_results([run("zoom-out", 0.125, ["3dgs", "mip"]),
                                    run("zoom-in", 0.5, ["3dgs", "mip"]),
                                    run("zoom-in", 0.5, ["pseudo_gt"])])
    assert [s["name"] for s in res.settings] == ["zoom-out", "zoom-in"]
    assert [m["key"] for m in res.methods] == ["3dgs", "mip", "pseudo_gt"]
    assert res.score("zoom-in", "pseudo_gt", 0.5).psnr == 20.0
    assert res.score("zoom-out", "pseudo_gt", 0.125) is None
    assert len(grid) == 2
    table = stmt.table_markdown(res)
    assert "| PSEUDO_GT | – | 20.00 |" in table
    with pytest.raises(ValueError, match="different data"):
        other, g = run("zoom-in", 0.5, ["3dgs"])
        other.data = "chair"
        stmt.merge_results([run("zoom-out", 0.125, ["3dgs"]), (other, g)])


def test_neighbour_scale_without_scipy_matches(monkeypatch):
    import sys

    from adapt.train import nearest_neighbour_scale

    pts = np.random.default_rng(0).random((500, 3)).astype(np.float32)
    with_scipy = nearest_neighbour_scale(pts)
    monkeypatch.setitem(sys.modules, "scipy.spatial", None)  # import now fails
    brute = nearest_neighbour_scale(pts, chunk=128)
    assert np.allclose(with_scipy, brute, rtol=1e-4, atol=1e-6)
    # one point on a regular grid of spacing 0.1 has its 3 nearest others at 0.1
    grid = np.stack(np.meshgrid(*[np.arange(5) * 0.1] * 3), -1).reshape(-1, 3)
    assert nearest_neighbour_scale(grid.astype(np.float32), chunk=50)[62] == \
        pytest.approx(0.1, rel=1e-4)


def test_deep_zoom_in_levels_come_from_one_x2_level_per_method(monkeypatch):
    """x4 and x8 are the method's x2 level (finetuned once, on the same views at x2) with
    the finer grids' dilation baked in; a method with chain=False finetunes each level."""
    import adapt.finetune as ft

    gen = torch.Generator().manual_seed(3)
    n = 120
    means = torch.cat([torch.rand(n, 2, generator=gen) - 0.5, torch.zeros(n, 1)], 1)
    base = Gaussians.from_colors(means, torch.rand(n, 3, generator=gen),
                                 torch.full((n, 3), 0.02), torch.full((n,), 0.8))

    def cameras(split: str, scale: float) -> list[Camera]:
        side = round(64 * scale)
        return [Camera.look_at((x, 0.0, -2.5), (0, 0, 0), width=side, height=side,
                               fov_y_deg=40) for x in (-0.4, 0.0, 0.4)]

    levels = []
    real = ft.finetune
    monkeypatch.setattr(ft, "finetune", lambda b, level, *a, **k: levels.append(level)
                        or real(b, level, *a, **k))
    settings = stmt.LevelSettings(iters=4, views=stmt.ViewSettings(n_views=3))
    adapt = stmt.mipmap_adapter(settings, cameras, log=lambda s: None)
    setting = stmt.Setting("zoom-in", 1 / 8, (1 / 4, 1 / 2, 1.0))
    chained = stmt.Method("m", "m", "classic", "train", "bicubic")
    x2, _, info2 = adapt(base, setting, 2.0, chained, cameras("train", 1 / 4))
    x4, secs4, info4 = adapt(base, setting, 4.0, chained, cameras("train", 1 / 2))
    x8, _, info8 = adapt(base, setting, 8.0, chained, cameras("train", 1.0))
    assert levels == [1], "one finetune: the x2 level"
    assert info2["iters"] == 4 and info4["iters"] == info8["iters"] == 0
    assert info4["from_level"] == info8["from_level"] == 1 and info4["parent_seconds"] > 0
    for g in (x4, x8):
        assert torch.equal(g.means, x2.means) and torch.equal(g.sh, x2.sh)
    assert bool((x8.log_scales > x4.log_scales).all() and (x4.log_scales > x2.log_scales).all())
    per_level = stmt.Method("p", "p", "classic", "train", "bicubic", chain=False)
    adapt(base, setting, 4.0, per_level, cameras("train", 1 / 2))
    assert levels == [1, 2]
