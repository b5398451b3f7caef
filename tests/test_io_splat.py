"""The antimatter15 .splat format: the record layout, round trips, detection."""

from __future__ import annotations

import math
import struct

import pytest
import torch
from conftest import data_file
from test_io_ply import random_gaussians

from render.gaussians import SH_C0, Gaussians
from render.io import GaussianFileError, load_model, save_ply, save_splat


def record(pos, scale, rgba, rot) -> bytes:
    return struct.pack("<3f3f4B4B", *pos, *scale, *rgba, *rot)


def test_record_layout(tmp_path):
    data = (record((1, 2, 3), (0.1, 0.2, 0.3), (255, 0, 128, 255), (255, 128, 128, 128))
            + record((-1, 0, 0), (1, 1, 1), (0, 255, 0, 0), (128, 128, 128, 255)))
    path = tmp_path / "two.splat"
    path.write_bytes(data)
    m = load_model(path)
    g = m.gaussians
    assert m.format == "splat" and len(g) == 2 and g.sh_degree == 0
    assert torch.equal(g.means[0], torch.tensor([1.0, 2, 3]))
    assert torch.allclose(g.log_scales[0], torch.log(torch.tensor([0.1, 0.2, 0.3])))
    colour = 0.5 + SH_C0 * g.sh[:, 0]
    assert torch.allclose(colour[0], torch.tensor([1.0, 0, 128 / 255]), atol=1e-6)
    assert torch.allclose(colour[1], torch.tensor([0.0, 1, 0]), atol=1e-6)
    # alpha 255 / 0: opacity within half a step of 1 / 0, with a finite logit
    assert 0.997 < torch.sigmoid(g.opacity_logits[0]) < 1
    assert 0 < torch.sigmoid(g.opacity_logits[1]) < 0.003
    # rotation bytes are w, x, y, z as q * 128 + 128
    assert torch.allclose(g.quats, torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 1]]))


def test_round_trip_within_quantisation_error(tmp_path):
    g = random_gaussians(2000, 0)
    colour = torch.rand(2000, 3)
    g.sh[:, 0] = (colour - 0.5) / SH_C0
    path = save_splat(g, tmp_path / "g.splat")
    assert path.stat().st_size == 2000 * 32
    r = load_model(path).gaussians
    assert torch.equal(r.means, g.means)
    assert torch.allclose(r.log_scales, g.log_scales, atol=1e-6)
    assert ((0.5 + SH_C0 * r.sh[:, 0]) - colour).abs().max() <= 0.5 / 255 + 1e-6
    assert (r.opacities - g.opacities).abs().max() <= 0.5 / 255 + 1e-6
    # 8-bit quaternion components: the rotation angle error stays below ~1 degree
    dot = (r.quats * g.quats).sum(1).abs().clamp(max=1)
    assert torch.rad2deg(2 * torch.acos(dot)).max() < 1.5


def test_higher_sh_is_reduced_to_band_0(tmp_path):
    g = random_gaussians(10, 3)
    r = load_model(save_splat(g, tmp_path / "g.splat")).gaussians
    assert r.sh_degree == 0 and len(r) == 10


def test_real_donut_as_splat(tmp_path):
    g = load_model(data_file("donut_mipsplat_sh0.ply")).gaussians
    r = load_model(save_splat(g, tmp_path / "donut.splat")).gaussians
    assert len(r) == len(g) and torch.equal(r.means, g.means)
    c, cr = (0.5 + SH_C0 * g.sh[:, 0]).clamp(0, 1), 0.5 + SH_C0 * r.sh[:, 0]
    assert (c - cr).abs().max() <= 0.5 / 255 + 1e-6


def test_detected_by_content_whatever_the_name(tmp_path):
    g = random_gaussians(64, 0)
    data = save_splat(g, tmp_path / "a.splat").read_bytes()
    (tmp_path / "model.ply").write_bytes(data)
    assert load_model(tmp_path / "model.ply").format == "splat"


def test_zero_and_negative_scales_are_dropped(tmp_path):
    data = (record((0, 0, 0), (0.1, 0.1, 0.1), (1, 2, 3, 4), (255, 128, 128, 128))
            + record((0, 0, 0), (0.1, -0.1, 0.1), (1, 2, 3, 4), (255, 128, 128, 128))
            + record((0, 0, 0), (0.1, 0.1, 0.1), (1, 2, 3, 4), (128, 128, 128, 128)))
    (tmp_path / "s.splat").write_bytes(data)
    m = load_model(tmp_path / "s.splat")
    assert len(m.gaussians) == 2 and m.n_dropped == 1 and m.n_zero_quats == 1


@pytest.mark.parametrize("content,fragment", [
    (b"x" * 33, "not a multiple of 32"),
    (b"hello splat world, not really..." * 4, "NaN, Inf, zero or absurd"),
    (struct.pack("<8f", *([math.nan] * 8)) * 3, "NaN, Inf, zero or absurd"),
])
def test_bad_splat_files(tmp_path, content, fragment):
    (tmp_path / "bad.splat").write_bytes(content)
    with pytest.raises(GaussianFileError, match=fragment) as info:
        load_model(tmp_path / "bad.splat")
    assert info.value.path == tmp_path / "bad.splat"


def test_a_ply_renamed_splat_is_still_a_ply(tmp_path):
    g = Gaussians.from_colors(torch.zeros(3, 3), torch.rand(3, 3), torch.ones(3, 3) * 0.1,
                              torch.full((3,), 0.5))
    data = save_ply(g, tmp_path / "x.ply").read_bytes()
    (tmp_path / "x.splat").write_bytes(data)
    assert load_model(tmp_path / "x.splat").format == "inria_ply"
