"""`mipview convert` between every format keeping the tag; the tag as `mipview info`
reports it and as `mipview render` and the viewer use it by default."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_io_ply import random_gaussians

from render import Camera, RenderOptions, render
from render.gaussians import Gaussians
from render.io import CameraRecord, load_model, save_inria_cameras, save_model
from viewer.capture import read_png_metadata, to_uint8
from viewer.cli import main

NAMES = ["a.ply", "a.compressed.ply", "a.splat", "a.spz", "a.sog", "folder/meta.json"]


@pytest.fixture(scope="module")
def tagged(tmp_path_factory):
    """A small SH-1 model saved as a .ply tagged antialiased."""
    folder = tmp_path_factory.mktemp("tagged")
    return save_model(random_gaussians(300, 1), folder / "src.ply", model="antialiased")


@pytest.mark.parametrize("src_name", NAMES)
@pytest.mark.parametrize("dst_name", NAMES)
def test_convert_between_all_formats_keeps_the_tag(tagged, tmp_path, src_name, dst_name, capsys):
    src = tmp_path / "src" / src_name
    src.parent.mkdir(parents=True, exist_ok=True)
    assert main(["convert", str(tagged), str(src), "--quiet"]) == 0
    dst = tmp_path / "dst" / dst_name
    dst.parent.mkdir(parents=True, exist_ok=True)
    assert main(["convert", str(src), str(dst), "--quiet"]) == 0
    err = capsys.readouterr().err
    m = load_model(dst)
    assert len(m.gaussians) == 300
    lossy_tag = "a.splat" in (src_name, dst_name)
    assert m.splat_model == ("default" if lossy_tag else "antialiased")
    assert m.gaussians.sh_degree == (0 if lossy_tag else 1)
    if dst_name == "a.splat":
        assert "cannot hold" in err


def test_convert_sets_another_tag_and_refuses_to_overwrite(tagged, tmp_path, capsys):
    out = tmp_path / "b.spz"
    assert main(["convert", str(tagged), str(out), "--tag", "default", "--quiet"]) == 0
    assert load_model(out).splat_model == "default"
    before = out.read_bytes()
    assert main(["convert", str(tagged), str(out), "--quiet"]) == 2
    assert "--force" in capsys.readouterr().err and out.read_bytes() == before
    assert main(["convert", str(tagged), str(out), "--force", "--quiet"]) == 0
    assert load_model(out).splat_model == "antialiased"


def test_convert_bad_input_and_bad_output_name(tmp_path, capsys):
    (tmp_path / "junk.ply").write_bytes(b"nothing")
    assert main(["convert", str(tmp_path / "junk.ply"), str(tmp_path / "o.spz")]) == 2
    assert "junk.ply" in capsys.readouterr().err
    assert not (tmp_path / "o.spz").exists()
    assert main(["convert", str(tmp_path / "junk.ply"), str(tmp_path / "o.xyz")]) == 2
    assert "format" in capsys.readouterr().err


def test_info_reports_the_tag(tagged, tmp_path, capsys):
    spz = save_model(load_model(tagged).gaussians, tmp_path / "t.spz", model="antialiased")
    assert main(["info", str(spz)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "spz" and info["model"] == "antialiased"
    assert info["antialias"] == "mip"


# -- mipview render: the file's tag is the default mode -------------------------------------

@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    torch.manual_seed(3)
    n = 300
    g = Gaussians.from_colors(torch.randn(n, 3) * 0.6, torch.rand(n, 3),
                              scales=torch.rand(n, 3) * 0.02 + 0.004,
                              opacities=torch.rand(n) * 0.8 + 0.15)
    folder = tmp_path_factory.mktemp("render")
    cam = Camera.look_at((0.0, 0.0, -3.0), (0, 0, 0), fov_y_deg=45, width=40, height=30)
    save_inria_cameras([CameraRecord(0, "v", cam)], folder / "cameras.json")
    return folder, g, cam


@pytest.mark.parametrize("name", ["level.ply", "level.spz", "level.sog"])
def test_render_draws_a_tagged_file_in_mip_by_default(scene, tmp_path, name):
    folder, g, cam = scene
    path = save_model(g, tmp_path / name, model="antialiased")
    loaded = load_model(path, find_cameras=False).gaussians

    def run(*extra) -> tuple[np.ndarray, dict]:
        out = tmp_path / f"out{len(extra)}"
        assert main(["render", str(path), "--cameras", str(folder / "cameras.json"),
                     "--out", str(out), "--backend", "cpu", "--quiet", *extra]) == 0
        return (np.asarray(Image.open(out / "v.png").convert("RGB")),
                read_png_metadata(out / "v.png"))

    def direct(aa: str) -> np.ndarray:
        with torch.no_grad():
            return to_uint8(render(loaded, cam, RenderOptions(backend="cpu", antialias=aa)).rgb)

    img, meta = run()
    assert meta["mipview.antialias"] == "mip" and np.array_equal(img, direct("mip"))
    img, meta = run("--aa", "classic")  # the option overrides the tag
    assert meta["mipview.antialias"] == "classic" and np.array_equal(img, direct("classic"))
    assert not np.array_equal(direct("mip"), direct("classic"))


def test_viewer_model_state_carries_the_tagged_mode(tmp_path):
    from viewer.models import file_model

    g = random_gaussians(50, 0)
    tagged = file_model(save_model(g, tmp_path / "t.sog", model="antialiased"))
    plain = file_model(save_model(g, tmp_path / "p.spz"))
    assert tagged.antialias == "mip" and plain.antialias == "classic"
    assert any("antialiased" in line for line in tagged.info)


# -- adapted levels carry the mode they were finetuned in ------------------------------------

@pytest.mark.parametrize("level,name,tag", [
    (-2, "level.spz", "antialiased"),  # zoom-out: finetuned and drawn with the mip filter
    (-1, "level.sog", "antialiased"),
    (-2, "level.ply", "antialiased"),
    (1, "level.compressed.ply", "default"),  # zoom-in: vanilla 3DGS
])
def test_panel_export_writes_the_level_tagged_in_the_format_asked(tmp_path, level, name, tag):
    from adapt.cache import LevelCache
    from viewer.adaptation import AdaptController

    ctrl = AdaptController()
    ctrl.cache = LevelCache("hash", "settings", None)
    ctrl.cache.put(level, random_gaussians(40, 0))
    ctrl.refresh_levels()
    ctrl.export(level, tmp_path / name).join()
    assert not ctrl.error, ctrl.error
    m = load_model(tmp_path / name)
    assert len(m.gaussians) == 40 and m.splat_model == tag
    ctrl.export(level, tmp_path / "level.txt").join()
    assert "cannot tell the format" in ctrl.error


@pytest.mark.gl
def test_viewer_window_switches_to_each_opened_models_tagged_mode(tmp_path, monkeypatch):
    from viewer_support import make_app, settle, tiny_scene

    monkeypatch.setenv("MIPVIEW_CONFIG_DIR", str(tmp_path / "config"))
    tagged = save_model(tiny_scene(), tmp_path / "level.spz", model="antialiased")
    plain = save_model(tiny_scene(), tmp_path / "plain.sog")
    app = make_app()
    try:
        assert app.state.render.antialias == "classic"
        for path, mode in ((tagged, "mip"), (plain, "classic")):
            assert app.open_model(path)
            app.loader.wait(60)
            settle(app)
            assert app.state.model.name == path.name
            assert app.state.render.antialias == mode
        app.set_antialias("adaptive")  # the panel's choice overrides it
        settle(app)
        assert app.state.render.antialias == "adaptive"
    finally:
        app.close()


def test_convert_shows_progress_on_big_files(tagged, tmp_path, capsys, monkeypatch):
    from viewer.commands import convert_cmd

    assert main(["convert", str(tagged), str(tmp_path / "small.spz")]) == 0
    assert "convert src.ply" not in capsys.readouterr().err  # a small file: one line only
    monkeypatch.setattr(convert_cmd, "BAR_FROM_BYTES", 1000)  # as if it were big
    assert main(["convert", str(tagged), str(tmp_path / "big.spz")]) == 0
    err = capsys.readouterr().err
    assert "convert src.ply" in err and "/2 [" in err and "wrote" in err  # the tqdm bar
