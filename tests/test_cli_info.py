"""`mipview info MODEL`: one JSON object on stdout, or exit 1 with the reason on stderr."""

from __future__ import annotations

import json

from conftest import data_file
from test_io_ply import random_gaussians

from render.io import save_compressed_ply, save_ply, save_splat
from viewer.cli import main


def run_info(capsys, *args) -> tuple[int, str, str]:
    rc = main(["info", *map(str, args)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_info_on_the_real_donut(capsys):
    path = data_file("donut_mipsplat_sh0.ply")
    rc, out, err = run_info(capsys, path)
    assert rc == 0 and err == ""
    info = json.loads(out)  # exactly one JSON object
    assert info["path"] == str(path) and info["format"] == "inria_ply"
    assert info["gaussians"] == 45624 and info["sh_degree"] == 0 and info["n_dropped"] == 0
    lo, hi = info["bounds"]["min"], info["bounds"]["max"]
    assert len(lo) == len(hi) == 3 and all(h - l_ > 0.05 for l_, h in zip(lo, hi, strict=True))
    assert 0.05 < info["extent"] < 0.3
    assert info["training_cameras"] is None


def test_info_on_the_real_sh3_file(capsys):
    rc, out, _ = run_info(capsys, data_file("inria_iter7000_sh3.ply"))
    info = json.loads(out)
    assert rc == 0 and info["gaussians"] == 9080 and info["sh_degree"] == 3


def test_info_reports_cameras_and_formats(tmp_path, capsys):
    out_dir = tmp_path / "output"
    ply = save_ply(random_gaussians(300, 2), out_dir / "point_cloud" / "iteration_100" /
                   "point_cloud.ply")
    (out_dir / "cameras.json").write_text(json.dumps([
        {"id": i, "img_name": f"v{i}", "width": 100, "height": 80, "position": [0, 0, -4],
         "rotation": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "fx": 90.0, "fy": 90.0}
        for i in range(4)]))
    rc, out, _ = run_info(capsys, ply)
    info = json.loads(out)
    assert rc == 0 and info["sh_degree"] == 2
    assert info["training_cameras"] == {"count": 4, "path": str(out_dir / "cameras.json")}
    g = random_gaussians(300, 1)
    for saver, fmt in ((save_compressed_ply, "compressed_ply"), (save_splat, "splat")):
        path = saver(g, tmp_path / f"model.{fmt}")
        rc, out, _ = run_info(capsys, path)
        assert rc == 0 and json.loads(out)["format"] == fmt


def test_info_counts_dropped_gaussians(tmp_path, capsys):
    g = random_gaussians(50, 0)
    g.means[[3, 4], 0] = float("nan")
    rc, out, _ = run_info(capsys, save_ply(g, tmp_path / "nan.ply"))
    info = json.loads(out)
    assert rc == 0 and info["n_dropped"] == 2 and info["gaussians"] == 48


def test_info_on_a_bad_file_exits_1_with_the_reason(tmp_path, capsys):
    bad = tmp_path / "broken.ply"
    bad.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 1000000000000\n"
                    b"property float x\nend_header\n" + bytes(64))
    rc, out, err = run_info(capsys, bad)
    assert rc == 1 and out == ""
    assert str(bad) in err and "1000000000000 x vertex" in err and "Traceback" not in err
    rc, out, err = run_info(capsys, tmp_path / "missing.ply")
    assert rc == 1 and out == "" and "file not found" in err
