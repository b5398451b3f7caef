"""SuperSplat / PlayCanvas compressed .ply: the bit layout, round trips within the
quantisation error, and robustness against damaged files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import data_file
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_io_ply import random_gaussians

from render.gaussians import SH_C0, Gaussians
from render.io import GaussianFileError, load_model, save_compressed_ply
from render.io.compressed_ply import CHUNK_BOUNDS, CHUNK_COLOR, morton_order
from render.io.ply_format import ply_bytes

SQRT2 = math.sqrt(2.0)


def hand_made(tmp_path, positions, rotations, colors, scales=None, with_color_bounds=True,
              sh=None):
    """A compressed .ply built from packed words given explicitly (not by our writer)."""
    n = len(positions)
    names = CHUNK_BOUNDS + (CHUNK_COLOR if with_color_bounds else ())
    chunk = np.zeros(1, dtype=[(p, "<f4") for p in names])
    for p, v in zip(CHUNK_BOUNDS, [-1, -2, -3, 1, 2, 3, -5, -6, -7, -1, -2, -3], strict=True):
        chunk[p] = v
    if with_color_bounds:
        for p, v in zip(CHUNK_COLOR, [0.1, 0.2, 0.3, 0.9, 0.8, 0.7], strict=True):
            chunk[p] = v
    vertex = np.zeros(n, dtype=[(p, "<u4") for p in ("packed_position", "packed_rotation",
                                                      "packed_scale", "packed_color")])
    vertex["packed_position"] = positions
    vertex["packed_rotation"] = rotations
    vertex["packed_scale"] = scales if scales is not None else positions
    vertex["packed_color"] = colors
    elements = [("chunk", chunk), ("vertex", vertex)]
    if sh is not None:
        rows = np.zeros(n, dtype=[(f"f_rest_{i}", "u1") for i in range(sh.shape[1])])
        for i in range(sh.shape[1]):
            rows[f"f_rest_{i}"] = sh[:, i]
        elements.append(("sh", rows))
    path = tmp_path / "hand.compressed.ply"
    path.write_bytes(ply_bytes(elements))
    return path


def test_bit_layout_of_positions_scales_colours(tmp_path):
    pos = [(2047 << 21) | (0 << 11) | 0,         # x at max, y and z at min
           (0 << 21) | (1023 << 11) | 2047,      # x at min, y and z at max
           (1023 << 21) | (511 << 11) | 1024]    # near the middle
    identity = (0 << 30) | (512 << 20) | (512 << 10) | 512
    colors = [0xFF0080FF, 0x00FF0000, 0x80808080]
    m = load_model(hand_made(tmp_path, pos, [identity] * 3, colors))
    g = m.gaussians
    assert m.format == "compressed_ply" and len(g) == 3 and g.sh_degree == 0
    expect_means = torch.tensor([[1.0, -2, -3], [-1, 2, 3],
                                 [-1 + 2 * 1023 / 2047, -2 + 4 * 511 / 1023, -3 + 6 * 1024 / 2047]])
    assert torch.allclose(g.means, expect_means, atol=1e-6)
    # scale bounds: min (-5, -6, -7), max (-1, -2, -3), same fractions as the positions
    assert torch.allclose(g.log_scales[0], torch.tensor([-1.0, -6, -7]), atol=1e-6)
    assert torch.allclose(g.log_scales[1], torch.tensor([-5.0, -2, -3]), atol=1e-6)
    # colour: R in the top byte, fractions of the chunk's colour bounds; alpha = opacity
    colour = 0.5 + SH_C0 * g.sh[:, 0]
    assert torch.allclose(colour[0], torch.tensor([0.9, 0.2, 0.3 + 0.4 * 128 / 255]), atol=1e-6)
    assert torch.allclose(colour[1], torch.tensor([0.1, 0.8, 0.3]), atol=1e-6)
    opacity = torch.sigmoid(g.opacity_logits)
    assert opacity[0] > 0.99 and opacity[1] < 0.01
    assert abs(opacity[2] - 128 / 255) < 1e-6


def test_bit_layout_of_rotations(tmp_path):
    def word(largest, a, b, c):
        u = [round((v / SQRT2 + 0.5) * 1023) for v in (a, b, c)]
        return (largest << 30) | (u[0] << 20) | (u[1] << 10) | u[2]

    half = 0.5
    words = [word(0, 0, 0, 0),            # w largest: identity
             word(3, 0, 0, 0),            # z largest: 180 degrees about z
             word(1, half, half, half),   # x largest; w, y, z = 0.5
             word(2, 0.6, 0.0, -0.3)]     # y largest; w=0.6, x=0, z=-0.3
    m = load_model(hand_made(tmp_path, [0] * 4, words, [0] * 4))
    y = math.sqrt(1 - 0.36 - 0.09)
    expect = torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 1], [0.5, 0.5, 0.5, 0.5],
                           [0.6, 0, y, -0.3]])
    assert torch.allclose(m.gaussians.quats, expect, atol=2e-3)


def test_old_files_without_colour_bounds_and_with_sh(tmp_path):
    sh_bytes = np.tile(np.array([0, 255, 128] * 3, dtype=np.uint8), (2, 1))  # 9: degree 1
    m = load_model(hand_made(tmp_path, [0, 0], [0, 0], [0xFF000000, 0x00FF0000],
                             with_color_bounds=False, sh=sh_bytes))
    g = m.gaussians
    colour = 0.5 + SH_C0 * g.sh[:, 0]
    assert torch.allclose(colour, torch.tensor([[1.0, 0, 0], [0, 1, 0]]), atol=1e-6)
    assert g.sh_degree == 1
    # bytes 0 / 255 are the clamped ends (-4, 4); 128 is the bin centre (128.5/256 - .5) * 8
    expect_rest = torch.tensor([-4.0, 4.0, (128.5 / 256 - 0.5) * 8] * 3)
    # f_rest is channel-grouped: sh[:, 1:, c] = rest[:, 3c:3c+3]
    for c in range(3):
        assert torch.allclose(g.sh[0, 1:, c], expect_rest[3 * c:3 * c + 3], atol=1e-6)


def quantisation_bounds(values: torch.Tensor, bits: tuple[int, ...]) -> torch.Tensor:
    """Half a quantisation step per row [N, D] for the chunk of 256 each row falls in."""
    v = values.double()
    n = len(v)
    out = torch.empty_like(v)
    for s in range(0, n, 256):
        span = v[s:s + 256].max(0).values - v[s:s + 256].min(0).values
        steps = torch.tensor([2.0 ** b - 1 for b in bits], dtype=torch.float64)
        out[s:s + 256] = span / (2 * steps) + 1e-6 * (1 + v[s:s + 256].abs().max(0).values)
    return out


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_round_trip_within_quantisation_error(tmp_path, degree):
    g = random_gaussians(1000, degree, seed=degree)  # 4 chunks, the last one partial
    g.sh.clamp_(-3.9, 3.9)  # the SH bytes cover -4..4
    path = save_compressed_ply(g, tmp_path / "g.compressed.ply", sort=False)
    m = load_model(path)
    r = m.gaussians
    assert m.format == "compressed_ply" and len(r) == 1000 and r.sh_degree == degree
    assert path.stat().st_size < 1000 * (16 + 3 * ((degree + 1) ** 2 - 1)) + 4 * 18 * 4 + 2000
    assert torch.all((r.means - g.means).abs() <= quantisation_bounds(g.means, (11, 10, 11)))
    assert torch.all((r.log_scales - g.log_scales).abs()
                     <= quantisation_bounds(g.log_scales, (11, 10, 11)))
    colour, colour_r = 0.5 + SH_C0 * g.sh[:, 0], 0.5 + SH_C0 * r.sh[:, 0]
    assert torch.all((colour_r - colour).abs() <= quantisation_bounds(colour, (8, 8, 8)))
    assert torch.all((r.opacities - g.opacities).abs() <= 0.5 / 255 + 1e-6)
    # rotations: the same up to sign, each stored component within half a 10-bit step
    dot = (r.quats * g.quats).sum(1).abs()
    assert torch.all(dot > 1 - 1e-5) and torch.allclose(r.quats.norm(dim=1), torch.ones(1000))
    if degree:
        err = (r.sh[:, 1:] - g.sh[:, 1:]).abs()
        assert err.max() <= 8 / 256 + 1e-6 and err.mean() < 8 / 256 / 3


def test_sorted_writer_stores_morton_order(tmp_path):
    n = 4096
    g = random_gaussians(n, 0)
    r = load_model(save_compressed_ply(g, tmp_path / "s.ply", sort=True)).gaussians
    order = torch.from_numpy(morton_order(g.means.numpy()))
    assert sorted(order.tolist()) == list(range(n)) and not torch.equal(order, torch.arange(n))
    gs = g.subset(order)
    assert torch.all((r.means - gs.means).abs() <= quantisation_bounds(gs.means, (11, 10, 11)))
    # spatially sorted chunks are tighter than the unsorted ones
    unsorted = load_model(save_compressed_ply(g, tmp_path / "u.ply", sort=False)).gaussians
    err_sorted = (r.means - gs.means).abs().mean()
    assert err_sorted < 0.75 * (unsorted.means - g.means).abs().mean()


def test_real_donut_round_trip(tmp_path):
    g = load_model(data_file("donut_mipsplat_sh0.ply")).gaussians
    r = load_model(save_compressed_ply(g, tmp_path / "donut.compressed.ply")).gaussians
    assert len(r) == len(g)
    # the same cloud: sorted, the positions agree to well under a Gaussian's size
    gs = g.subset(torch.from_numpy(morton_order(g.means.numpy())))
    assert (r.means - gs.means).abs().max() < 1e-3  # extent 0.2: 11 bits of a chunk
    assert (torch.sigmoid(r.opacity_logits) - torch.sigmoid(gs.opacity_logits)).abs().max() \
        <= 0.5 / 255 + 1e-6


def test_broken_compressed_files(tmp_path):
    g = random_gaussians(300, 1)
    data = save_compressed_ply(g, tmp_path / "g.ply", sort=False).read_bytes()
    cases = {
        b"element chunk 2": (b"element chunk 1", "1 chunks cannot hold 300"),
        b"property uint packed_rotation": (b"property uint packed_rot", "lacks packed_rotation"),
        b"property float max_scale_y": (b"property float max_scale_q", "lacks max_scale_y"),
        b"element sh 300": (b"element sh 299", "299 sh rows"),
        b"property uint packed_color": (b"property float packed_color", "must be a uint"),
    }
    for old, (new, fragment) in cases.items():
        end = data.index(b"end_header")
        path = tmp_path / "bad.ply"
        path.write_bytes(data[:end].replace(old, new) + data[end:])
        with pytest.raises(GaussianFileError, match=fragment):
            load_model(path)


_COMPRESSED: dict[str, bytes] = {}


def _compressed_donut() -> bytes:
    if "donut" not in _COMPRESSED:
        import tempfile
        from pathlib import Path

        g = load_model(data_file("donut_mipsplat_sh0.ply")).gaussians
        g = Gaussians(g.means, g.quats, g.log_scales, g.opacity_logits,
                      g.with_sh_degree(1).sh)  # give it an sh element too
        with tempfile.TemporaryDirectory() as d:
            _COMPRESSED["donut"] = save_compressed_ply(g, Path(d) / "c.ply").read_bytes()
    return _COMPRESSED["donut"]


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
                      min_size=1, max_size=8),
       cut=st.none() | st.floats(0, 1))
def test_damaged_compressed_never_raises_anything_else(tmp_path_factory, edits, cut):
    data = bytearray(_compressed_donut())
    for where, xor in edits:
        data[int(where * len(data))] ^= xor
    if cut is not None:
        data = data[: int(cut * len(data))]
    path = tmp_path_factory.mktemp("c") / "c.ply"
    path.write_bytes(bytes(data))
    try:
        m = load_model(path)
    except GaussianFileError as e:
        assert "internal error" not in e.reason, e.reason
        return
    assert all(torch.isfinite(t).all() for t in m.gaussians.tensors().values())
