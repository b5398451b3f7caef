"""Upsamplers: bicubic, area filters, and the spandrel path with a small model built here."""

from __future__ import annotations

import pickle

import pytest
import torch

from adapt.metrics import psnr
from adapt.upsample import (
    AdaptiveRender,
    BicubicUpsampler,
    SpandrelUpsampler,
    Upsampler,
    Waifu2xUpsampler,
    area_downsample,
    bicubic,
    default_zoom_in_pseudo_gt,
    import_spandrel,
    make_upsampler,
    waifu2x_available,
)

WAIFU2X_MISSING = waifu2x_available()
needs_waifu2x = pytest.mark.skipif(WAIFU2X_MISSING is not None, reason=WAIFU2X_MISSING or "")


def _smooth_image(h: int = 24, w: int = 20) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return torch.stack([xs, ys, 0.5 + 0.3 * torch.sin(6 * xs * ys)], -1)


def test_area_downsample_is_the_block_mean():
    img = torch.rand(8, 12, 3)
    out = area_downsample(img, 4)
    assert out.shape == (2, 3, 3)
    assert torch.allclose(out[1, 2], img[4:8, 8:12].reshape(-1, 3).mean(0), atol=1e-6)
    with pytest.raises(ValueError, match="multiple"):
        area_downsample(torch.rand(9, 12, 3), 4)


def test_bicubic_upsampler_shape_range_and_consistency():
    up = make_upsampler("bicubic")
    assert isinstance(up, BicubicUpsampler) and isinstance(up, Upsampler)
    img = _smooth_image()
    big = up(img, 4)
    assert big.shape == (96, 80, 3) and float(big.min()) >= 0 and float(big.max()) <= 1
    # Shrinking it back with the area filter gives the original back closely.
    assert torch.allclose(area_downsample(big, 4), img, atol=0.02)
    assert up.describe(2) == "bicubic x2"


@pytest.fixture(scope="module")
def esrgan_files(tmp_path_factory):
    """A small randomly initialised ESRGAN (x4) saved as safetensors and as a .pth."""
    spandrel = import_spandrel()  # noqa: F841  (also installs the torchvision stand-in)
    from safetensors.torch import save_file
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    net = ESRGAN(num_filters=8, num_blocks=1, scale=4)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    d = tmp_path_factory.mktemp("sr")
    save_file(state, str(d / "tiny_esrgan_x4.safetensors"))
    torch.save(state, d / "tiny_esrgan_x4.pth")
    return d / "tiny_esrgan_x4.safetensors", d / "tiny_esrgan_x4.pth", net


def test_spandrel_loads_a_safetensors_model_and_runs_it_in_tiles(esrgan_files):
    st, _, net = esrgan_files
    up = SpandrelUpsampler(st, tile=8, overlap=6)
    assert up.model_scale == 4 and "ESRGAN" in up.name
    img = _smooth_image(20, 18)
    out = up(img, 4)
    assert out.shape == (80, 72, 3)
    with torch.no_grad():
        whole = net(img.permute(2, 0, 1)[None]).clamp(0, 1)[0].permute(1, 2, 0)
    # Tiles with enough overlap reproduce the untiled network closely; the residual is
    # only the receptive field beyond the overlap.
    assert float((out - whole).abs().mean()) < 2e-3


def test_spandrel_factor_mismatches(esrgan_files):
    st, _, _ = esrgan_files
    up = SpandrelUpsampler(st, tile=64)
    img = _smooth_image(12, 10)
    assert up.plan(2) == (1, 2.0, 1.0)  # x4 model for x2: run, area-downsample by 2
    x2 = up(img, 2)
    assert x2.shape == (24, 20, 3)
    assert torch.allclose(x2, area_downsample(up(img, 4), 2), atol=1e-6)
    assert up.plan(8) == (1, 1.0, 2.0)  # x4 model for x8: run once, then bicubic x2
    assert up(img, 8).shape == (96, 80, 3)
    assert "bicubic x2" in up.describe(8) and "area-downsample /2" in up.describe(2)


def test_spandrel_pth_loads_with_weights_only(esrgan_files):
    _, pth, _ = esrgan_files
    assert SpandrelUpsampler(pth).model_scale == 4


class _Payload:
    """An object whose unpickling would run code."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_checkpoints_that_need_pickle_trust_are_refused(tmp_path):
    bad = tmp_path / "evil.pth"
    with open(bad, "wb") as f:
        pickle.dump({"weights": _Payload()}, f)
    with pytest.raises(ValueError, match="weights_only"):
        SpandrelUpsampler(bad)
    other = tmp_path / "model.onnx"
    other.write_bytes(b"x")
    with pytest.raises(ValueError, match="unsupported checkpoint"):
        SpandrelUpsampler(other)
    with pytest.raises(FileNotFoundError):
        SpandrelUpsampler(tmp_path / "missing.safetensors")


def test_unrecognised_state_dict_is_a_clear_error(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "mystery.safetensors"
    save_file({"foo.weight": torch.zeros(3, 3)}, str(path))
    with pytest.raises(ValueError, match="does not recognise"):
        SpandrelUpsampler(path)


def _sharp_shapes(n: int = 96) -> torch.Tensor:
    """A disk and a slanted bar with hard edges, area-antialiased from 8x. [n, n, 3]"""
    m = n * 8
    ys, xs = torch.meshgrid(torch.arange(m) / m, torch.arange(m) / m, indexing="ij")
    disk = ((xs - 0.35) ** 2 + (ys - 0.4) ** 2 < 0.2**2).float()
    bar = ((xs + 0.4 * ys - 0.75).abs() < 0.05).float()
    img = torch.stack([0.9 - 0.7 * disk, 0.9 - 0.5 * bar, 0.9 - 0.6 * disk * 0.5 - 0.3 * bar], -1)
    return area_downsample(img, 8)


@needs_waifu2x
def test_waifu2x_doubles_edges_closer_to_the_truth_than_bicubic():
    sharp = _sharp_shapes()
    low = area_downsample(sharp, 2)
    up = Waifu2xUpsampler()
    out = up(low, 2)
    assert out.shape == sharp.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    assert psnr(out, sharp) > psnr(bicubic(low, 2), sharp) + 0.5
    # the same input gives the same output (ncnn must not read a freed buffer)
    assert torch.equal(up(low, 2), out)


@needs_waifu2x
def test_waifu2x_runs_one_pass_then_bicubic_for_larger_factors():
    up = Waifu2xUpsampler()
    assert up.plan(2) == (1, 1) and up.plan(8) == (1, 4)
    assert Waifu2xUpsampler(max_passes=3).plan(8) == (3, 1)
    low = area_downsample(_sharp_shapes(64), 4)
    out = up(low, 8)
    assert out.shape == (128, 128, 3)
    assert torch.allclose(out, bicubic(up.double(low), 4), atol=1e-6)
    assert "waifu2x" in up.describe(8) and "bicubic x4" in up.describe(8)
    assert torch.equal(up(low, 1), low)


def test_named_pseudo_gts_and_the_default():
    assert isinstance(make_upsampler("adaptive"), AdaptiveRender)
    best = default_zoom_in_pseudo_gt()
    assert best == ("waifu2x" if WAIFU2X_MISSING is None else "adaptive")
    assert make_upsampler(None).name == best
    with pytest.raises(TypeError, match="target rate"):
        AdaptiveRender()(_smooth_image(), 2)
    assert "adaptive dilation" in AdaptiveRender().describe(4)
