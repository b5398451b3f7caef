"""Fault injection, issue 25: data loss and trust (the level cache, outputs, the loader).

Each test injects one fault a user's machine or a hostile file produces and asserts that it
was handled: nothing outside the cache is read or removed, bad models are refused or
cleaned, outputs are checked before the work, nothing garbage is written.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import random_set

from adapt.cache import LevelCache, file_sha256
from render.gaussians import Gaussians
from render.io import save_ply

pytestmark = pytest.mark.fault


@pytest.fixture
def model(model_file):
    return model_file


def _edit_manifest(cache: LevelCache, level: int, **fields) -> None:
    path = cache.directory / "manifest.json"
    m = json.loads(path.read_text())
    m["levels"][str(level)].update(fields)
    path.write_text(json.dumps(m))


# -- the level cache --------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["absolute", "parent"])
def test_a_manifest_path_outside_the_cache_is_neither_loaded_nor_deleted(model, tmp_path,
                                                                         where):
    c = LevelCache.for_model(random_set(50), "s", model_path=model)
    c.put(-1, random_set(20))
    victim = tmp_path / "precious.ply"
    save_ply(random_set(33, seed=7), victim)
    before = victim.read_bytes()
    name = str(victim) if where == "absolute" else "../precious.ply"
    _edit_manifest(c, -1, file=name, sha256=file_sha256(victim))

    again = LevelCache.for_model(random_set(50), "s", model_path=model)
    assert again.get(-1) is None, "a file outside the cache folder was loaded as a level"
    assert -1 not in again.levels()
    again.delete(-1)
    assert victim.read_bytes() == before, "Delete removed a file that is not the cache's"


def test_a_level_of_another_model_with_its_checksum_edited_is_refused(tmp_path):
    a, b = tmp_path / "a.ply", tmp_path / "b.ply"
    save_ply(random_set(50, seed=1), a)
    save_ply(random_set(50, seed=2), b)
    ca = LevelCache.for_model(random_set(50, seed=1), "s", model_path=a)
    cb = LevelCache.for_model(random_set(50, seed=2), "s", model_path=b)
    ca.put(-1, random_set(20, seed=3))
    cb.put(-1, random_set(25, seed=4))
    # B's level dropped into A's cache, the manifest's checksum edited to match it.
    shutil.copyfile(cb.directory / "level_-1.ply", ca.directory / "level_-1.ply")
    _edit_manifest(ca, -1, sha256=file_sha256(ca.directory / "level_-1.ply"), gaussians=25)
    assert LevelCache.for_model(random_set(50, seed=1), "s", model_path=a).get(-1) is None


def test_a_valid_json_but_malformed_manifest_is_rebuilt(model, caplog):
    c = LevelCache.for_model(random_set(50), "s", model_path=model)
    c.put(-1, random_set(20))
    good = json.loads((c.directory / "manifest.json").read_text())["levels"]["-1"]
    (c.directory / "manifest.json").write_text(json.dumps({
        "version": 1, "model_hash": c.model_hash,
        "levels": {"x": {}, "-2": 5, "2": {"file": 3}, "-1": good, "3": None}}))
    again = LevelCache.for_model(random_set(50), "s", model_path=model)
    assert list(again.levels()) == [-1]  # the good entry survives, the rest is dropped
    again.put(2, random_set(8))
    third = LevelCache.for_model(random_set(50), "s", model_path=model)
    assert sorted(third.levels()) == [-1, 2]
    assert "ignored" in caplog.text


def test_two_viewers_on_one_model_keep_each_others_levels(model):
    one = LevelCache.for_model(random_set(50), "s", model_path=model)
    two = LevelCache.for_model(random_set(50), "s", model_path=model)  # both read an empty cache
    one.put(-1, random_set(20))
    two.put(-2, random_set(15))
    one.put(1, random_set(30))
    later = LevelCache.for_model(random_set(50), "s", model_path=model)
    assert sorted(later.levels()) == [-2, -1, 1]
    two.delete(-1)
    assert sorted(LevelCache.for_model(random_set(50), "s", model_path=model).levels()) == [-2, 1]


def test_opening_a_model_creates_no_cache_folder(model):
    c = LevelCache.for_model(random_set(50), "s", model_path=model)
    assert c.get(-1) is None and c.levels() == {}
    c.delete(-1)
    assert not model.with_name("scene.ply.mipview").exists()
    c.put(-1, random_set(20))
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


# -- outputs: checked before the work, never the input, never garbage ------------------------

def _no_work(*_a, **_k):
    raise AssertionError("the work started before the output path was checked")


def test_adapt_refuses_to_replace_its_input(model, monkeypatch, capsys):
    from viewer import cli
    from viewer.commands import adapt_cmd

    monkeypatch.setattr(adapt_cmd, "adapt_level", _no_work)
    before = model.read_bytes()
    rc = cli.main(["adapt", str(model), "--level", "1/2", "--out", str(model), "--quiet"])
    err = capsys.readouterr().err
    assert rc != 0 and "is the input" in err.splitlines()[-1] and "Traceback" not in err
    assert model.read_bytes() == before
    # The same file through another spelling of its path.
    other = model.parent / "." / model.name
    assert cli.main(["adapt", str(model), "--level", "1/2", "--out", str(other),
                     "--quiet"]) != 0
    assert model.read_bytes() == before


def test_adapt_never_writes_a_nan_model(tmp_path, monkeypatch, capsys):
    from types import SimpleNamespace

    from viewer import cli
    from viewer.commands import adapt_cmd

    def nan_level(base, *_a, **_k):
        g = random_set(40)
        g = Gaussians(**{k: torch.full_like(v, float("nan")) for k, v in g.tensors().items()})
        return SimpleNamespace(gaussians=g, iterations=1, n_views=1, held_out=[],
                               upsampler="bicubic")

    monkeypatch.setattr(adapt_cmd, "adapt_level", nan_level)
    out = tmp_path / "adapted.ply"
    rc = cli.main(["adapt", "demo", "--level", "1/2", "--out", str(out), "--quiet",
                   "--no-eval"])
    assert rc != 0 and not out.exists()
    assert "NaN" in capsys.readouterr().err


def test_train_checks_its_output_before_training(tmp_path, monkeypatch, capsys):
    from viewer import cli
    from viewer.commands import train_cmd

    monkeypatch.setattr(train_cmd, "train_to_file", _no_work)
    rc = cli.main(["train", str(tmp_path), "--iters", "1", "--out", str(tmp_path / "m.png")])
    assert rc == 2 and ".ply" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc = cli.main(["train", str(tmp_path), "--iters", "1", "--out", str(blocker / "m.ply")])
    assert rc == 2 and "not a folder" in capsys.readouterr().err


def test_train_never_writes_a_nan_model(tmp_path, monkeypatch):
    import adapt.train
    from viewer.commands import train_cmd

    def nan_train(*_a, **_k):
        g = random_set(40)
        g.means[3] = float("inf")
        return g, None

    monkeypatch.setattr(adapt.train, "train_base", nan_train)
    monkeypatch.setattr("render.io.nerf_synthetic.load_nerf_synthetic",
                        lambda *_a, **_k: None)
    monkeypatch.setattr("render.io.nerf_synthetic.scene_box", lambda *_a, **_k: None)
    out = tmp_path / "m.ply"
    from viewer.commands.outputs import OutputError

    with pytest.raises(OutputError, match="NaN or infinite"):
        train_cmd.train_to_file(tmp_path, 0.25, 1, out)
    assert not out.exists()


@pytest.mark.parametrize("bad", ["same", "extension"])
def test_snapshot_checks_its_output_before_opening_the_window(model, monkeypatch, capsys,
                                                              bad):
    import viewer.app
    from viewer import cli

    monkeypatch.setattr(viewer.app, "ViewerApp", _no_work)
    before = model.read_bytes()
    out = model if bad == "same" else model.with_suffix(".jpg.ply")
    rc = cli.main([str(model), "--snapshot", str(out)])
    assert rc == 2 and "--snapshot" in capsys.readouterr().err
    assert model.read_bytes() == before


# -- the loader: absurd values are cleaned or refused ------------------------------------------

def _with_rows(path, n_bad: int, field: str, value: float, n: int = 100):
    g = random_set(n, seed=5)
    t = getattr(g, field)
    t[:n_bad] = value
    save_ply(g, path)
    return path


@pytest.mark.parametrize("field,value", [("means", 1e25), ("means", 1e30),
                                         ("log_scales", 100.0), ("log_scales", 3e38)])
def test_rows_with_absurd_centres_or_overflowing_scales_are_dropped(tmp_path, field, value):
    from render.io import load_model

    lm = load_model(_with_rows(tmp_path / "m.ply", 7, field, value))
    assert lm.n_dropped == 7 and len(lm.gaussians) == 93
    assert lm.summary()["n_dropped"] == 7  # `mipview info`'s rows dropped
    assert torch.isfinite(lm.gaussians.log_scales.exp() ** 2).all()
    assert float(lm.gaussians.means.abs().max()) < 1e6


def test_a_model_of_absurd_centres_is_refused(tmp_path):
    from render.io import GaussianFileError, load_model

    with pytest.raises(GaussianFileError, match="absurd"):
        load_model(_with_rows(tmp_path / "m.ply", 100, "means", 1e28))


def test_a_little_endian_body_labelled_big_endian_is_refused(tmp_path):
    from render.io import GaussianFileError, load_model

    path = tmp_path / "m.ply"
    save_ply(random_set(500, seed=3), path)
    data = path.read_bytes()
    path.write_bytes(data.replace(b"binary_little_endian", b"binary_big_endian", 1))
    with pytest.raises(GaussianFileError, match="endianness"):
        load_model(path)


def test_the_real_donut_labelled_big_endian_is_refused(tmp_path):
    from conftest import data_file

    from render.io import GaussianFileError, load_model

    data = data_file("donut_mipsplat_sh0.ply").read_bytes()
    path = tmp_path / "donut_be.ply"
    path.write_bytes(data.replace(b"binary_little_endian", b"binary_big_endian", 1))
    with pytest.raises(GaussianFileError, match=str(path.name)):
        load_model(path)


# -- the recent-files list ---------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ('{"recent": 5}', []),
    ('{"recent": null}', []),
    ('{"recent": "/a.ply"}', []),
    ('{"recent": [1, {"a": 2}, null, "", "/x.ply", ["/y.ply"]]}', ["/x.ply"]),
    ('[' * 100_000 + ']' * 100_000, []),
], ids=["number", "null", "string", "mixed", "deep"])
def test_a_malformed_recent_files_list_never_stops_the_viewer(tmp_path, monkeypatch, text,
                                                              expected):
    from viewer.state import load_recent, push_recent, save_recent

    monkeypatch.setenv("MIPVIEW_CONFIG_DIR", str(tmp_path))
    (tmp_path / "recent.json").write_text(text)
    assert load_recent() == expected
    save_recent(push_recent(load_recent(), tmp_path / "m.ply"))
    assert load_recent()[0] == str((tmp_path / "m.ply").resolve())


# -- a new user's first hour: a missing extra is one clear line --------------------------------

@pytest.mark.parametrize("argv,module,extra", [
    (["train", "{tmp}", "--iters", "1", "--out", "{tmp}/m.ply"], "pytorch_msssim", "-e ."),
    (["eval", "{tmp}", "--out", "{tmp}/report"], "matplotlib", '"mipview[eval]"'),
    (["eval", "{tmp}", "--out", "{tmp}/report"], "pytorch_msssim", '"mipview[eval]"'),
    (["render", "demo", "--path", "{tmp}/p.json", "--out", "{tmp}/v.mp4"], "imageio_ffmpeg",
     '"mipview[video]"'),
], ids=["train-ssim", "eval-plot", "eval-ssim", "render-mp4"])
def test_a_missing_extra_is_named_in_one_line(tmp_path, monkeypatch, capsys, argv, module,
                                              extra):
    import sys

    from viewer import cli

    monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    rc = cli.main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    assert rc != 0 and "Traceback" not in err
    assert f"pip install {extra}" in err.strip().splitlines()[-1]


# -- the up axis of a model without cameras ----------------------------------------------------

def _slab(flat_axis: int, n: int = 3000) -> Gaussians:
    g = random_set(n, seed=9)
    g.means[:, flat_axis] *= 0.1  # a table top / a donut lying flat
    return g


@pytest.mark.parametrize("axis,expected", [(2, "+Z (Blender)"), (1, "-Y (OpenCV / COLMAP)"),
                                           (0, "+X")])
def test_a_flat_model_without_cameras_gets_its_up_axis_guessed(tmp_path, axis, expected):
    from viewer.app import ViewerApp
    from viewer.controls import UP_CHOICES
    from viewer.models import file_model
    from viewer.state import NavState

    path = tmp_path / "flat.ply"
    save_ply(_slab(axis), path)
    model = file_model(path)
    assert model.up is None and model.up_guess == expected
    assert any("guessed" in line for line in model.info)
    nav = NavState(pose=None, home=None, up=None)
    ViewerApp._take_up(nav, model)
    assert tuple(nav.up) == UP_CHOICES[expected] and nav.up_guessed
    assert nav.up_choice == expected  # the menu shows it, and changes it


def test_a_round_model_keeps_the_default_up(tmp_path):
    from viewer.models import file_model

    path = tmp_path / "ball.ply"
    save_ply(random_set(3000, seed=4), path)
    assert file_model(path).up_guess is None


def test_the_real_donut_opens_z_up():
    from conftest import data_file

    from viewer.models import file_model

    model = file_model(data_file("donut_mipsplat_sh0.ply"))
    assert model.up_guess == "+Z (Blender)"


# -- --compare split before any level exists ---------------------------------------------------

@pytest.mark.parametrize("mode", ["split", "side_by_side"])
@pytest.mark.parametrize("aa", ["classic", "mip"])
def test_compare_before_any_level_shows_a_against_the_other_antialias_mode(mode, aa):
    from types import SimpleNamespace

    from render.options import RenderOptions
    from viewer.adaptation import AdaptController
    from viewer.compare import Comparison, Source, other_antialias

    g = random_set(30)
    ctrl = AdaptController(device="cpu")
    ctrl._gaussians = g
    cmp = Comparison(mode=mode)
    app = SimpleNamespace(state=SimpleNamespace(compare=cmp,
                                                render=SimpleNamespace(antialias=aa)))
    ctrl._plug_source(app)
    ui = RenderOptions(antialias=aa)
    a, b = cmp.visible_sources(Source(g, "A"), ui)
    assert a.options(ui).antialias == aa
    assert b.options(ui).antialias == other_antialias(aa), "two identical halves"
    # Back to a single view: it shows the adapted set (the base for now) as the user set it.
    cmp.mode = "single"
    ctrl._plug_source(app)
    (shown,) = cmp.visible_sources(Source(g, "A"), ui)
    assert shown.options(ui).antialias == aa


# -- the viewer survives whatever File > Open brings --------------------------------------------

def _open_and_wait(app, path, timeout_s: float = 120.0) -> None:
    import time

    assert app.open_model(path)
    t_end = time.time() + timeout_s
    while (app.loader.busy() or app.state.ui.loading) and time.time() < t_end:
        app.step()
    for _ in range(3):
        app.step(force_draw=True)  # the modal (or the new model) is drawn: ImGui holds


@pytest.mark.gl
def test_file_open_of_a_bad_model_keeps_the_current_one(tmp_path, monkeypatch):
    from viewer_support import make_app, settle

    monkeypatch.setenv("MIPVIEW_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    swapped = tmp_path / "swapped.ply"
    save_ply(random_set(500, seed=3), swapped)
    swapped.write_bytes(swapped.read_bytes().replace(b"binary_little_endian",
                                                     b"binary_big_endian", 1))
    far = _with_rows(tmp_path / "far.ply", 7, "means", 1e27)
    app = make_app(size=(320, 240))
    try:
        settle(app)
        shown = app.state.model
        _open_and_wait(app, swapped)
        assert app.state.model is shown and "endianness" in app.state.ui.error_text
        app.state.ui.error_text = ""
        # Centres of 1e27: the rows are dropped, the rest opens and draws.
        app.adaptation.auto = False  # no level is built: nothing has to be written
        _open_and_wait(app, far)
        assert app.state.model.name == "far.ply" and not app.state.ui.error_text
        assert any("dropped" in line for line in app.state.model.info)
        assert app.adaptation.wait_ready(app), app.adaptation.error
        settle(app)
        assert app.adaptation.cache.directory == tmp_path / "far.ply.mipview"
        assert not (tmp_path / "far.ply.mipview").exists(), "opening created the cache folder"
        # A model the view cannot frame (whatever the reason): an error, the model stays.
        shown = app.state.model

        def cannot_frame(*_a):
            raise np.linalg.LinAlgError("SVD did not converge")

        monkeypatch.setattr(app, "_initial_pose", cannot_frame)
        _open_and_wait(app, tmp_path / "far.ply")
        assert app.state.model is shown and "SVD" in app.state.ui.error_text
    finally:
        app.close()


def test_a_diverged_level_is_never_cached(model):
    c = LevelCache.for_model(random_set(50), "s", model_path=model)
    bad = random_set(20)
    bad.log_scales[4] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        c.put(-1, bad)
    assert c.get(-1) is None and not model.with_name("scene.ply.mipview").exists()


@pytest.mark.gl
def test_a_model_the_view_cannot_frame_at_start_is_one_line(model, tmp_path, monkeypatch,
                                                            capsys):
    from viewer_support import ensure_display

    import viewer.app
    from viewer import cli

    ensure_display()
    monkeypatch.setenv("MIPVIEW_CONFIG_DIR", str(tmp_path / "config"))

    def cannot_frame(*_a):
        raise np.linalg.LinAlgError("SVD did not converge")

    monkeypatch.setattr(viewer.app.ViewerApp, "_initial_pose", cannot_frame)
    rc = cli.main([str(model), "--snapshot", str(tmp_path / "shot.png"), "--size", "64x48"])
    err = capsys.readouterr().err
    assert rc == 2 and "SVD did not converge" in err.strip().splitlines()[-1]
    assert not (tmp_path / "shot.png").exists()
