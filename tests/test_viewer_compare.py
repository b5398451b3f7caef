"""Comparison sources and the numpy twin of the present shader (no window needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from render.camera import Camera
from render.options import RenderOptions
from viewer.compare import (
    DIVIDER_RGB,
    Comparison,
    Source,
    compose,
    divider_px,
    pane_cameras,
    pane_sizes,
)


def _solid(h, w, rgb, dtype=np.uint8):
    return np.broadcast_to(np.asarray(rgb, dtype), (h, w, 3)).copy()


def test_split_compose_puts_a_left_b_right_and_a_line():
    a, b = _solid(4, 10, (255, 0, 0)), _solid(4, 10, (0, 0, 255))
    out = compose(a, b, "split", 0.3)
    d = divider_px(0.3, 10)
    assert d == 3
    assert (out[:, : d - 1] == (255, 0, 0)).all()
    assert (out[:, d + 1 :] == (0, 0, 255)).all()
    assert (out[:, d - 1 : d + 1] == DIVIDER_RGB).all()  # 2 px line centred on the split


def test_split_compose_float_input_keeps_dtype():
    a, b = _solid(2, 8, (1.0, 0, 0), np.float32), _solid(2, 8, (0, 1.0, 0), np.float32)
    out = compose(a, b, "split", 0.5)
    assert out.dtype == np.float32
    assert out[0, 3, 0] == pytest.approx(DIVIDER_RGB[0] / 255)


def test_side_by_side_compose_and_pane_sizes():
    assert pane_sizes("side_by_side", 11, 5) == [(5, 5), (6, 5)]
    a, b = _solid(5, 5, (1, 2, 3)), _solid(5, 6, (4, 5, 6))
    out = compose(a, b, "side_by_side")
    assert out.shape == (5, 11, 3)
    assert (out[:, :5] == (1, 2, 3)).all() and (out[:, 5:] == (4, 5, 6)).all()
    with pytest.raises(ValueError):
        compose(a, _solid(4, 6, (0, 0, 0)), "side_by_side")


def test_single_compose_drops_alpha():
    rgba = np.zeros((3, 4, 4), np.uint8)
    rgba[..., 1] = 7
    out = compose(rgba, None, "single")
    assert out.shape == (3, 4, 3) and (out[..., 1] == 7).all()


def test_side_by_side_panes_keep_the_vertical_field_of_view():
    cam = Camera.look_at((0, 0, -3), (0, 0, 0), width=640, height=480)
    left, right = pane_cameras("side_by_side", cam)
    assert (left.width, right.width) == (320, 320)
    assert left.fy == cam.fy and left.fov_y == pytest.approx(cam.fov_y)
    assert left.cx == 160.0


def test_default_b_is_the_other_antialias_mode_and_b_is_pluggable():
    g = object()
    a = Source(g, "model")
    cmp = Comparison()
    ui = RenderOptions(antialias="classic")
    b = cmp.source_b(a, ui)
    assert b.gaussians is g and b.options(ui).antialias == "mip"
    assert cmp.source_b(a, ui.replace(antialias="mip")).options(ui).antialias == "classic"
    adapted = Source(object(), "Mipmap-GS (x1/4)")
    cmp.set_source_b(adapted)
    assert cmp.source_b(a, ui) is adapted
    assert adapted.options(ui) == ui  # a plugged-in B follows the UI's options
    cmp.set_source_b(None)
    assert cmp.source_b(a, ui).label == "model (mip)"


def test_modes_and_flip():
    a = Source(torch.zeros(1), "A")
    cmp = Comparison()
    ui = RenderOptions()
    assert [s.label for s in cmp.visible_sources(a, ui)] == ["A"]
    cmp.cycle_mode()
    assert cmp.mode == "split" and len(cmp.visible_sources(a, ui)) == 2
    cmp.flip()
    assert cmp.mode == "single" and cmp.shown == "B"
    assert cmp.visible_sources(a, ui)[0].label == "A (mip)"
