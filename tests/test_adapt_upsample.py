"""Upsamplers: bicubic, area filters, and the spandrel path with a small model built here."""

from __future__ import annotations

import pickle

import pytest
import torch

from adapt.upsample import (
    BicubicUpsampler,
    SpandrelUpsampler,
    Upsampler,
    area_downsample,
    import_spandrel,
    make_upsampler,
)


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
    up = make_upsampler(None)
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
