"""Image quality metrics. Images are [H, W, 3] (or [B, H, W, 3]) float tensors in [0, 1]."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def mse(a: Tensor, b: Tensor) -> float:
    return float(torch.mean((a.float() - b.float()) ** 2))


def psnr(a: Tensor, b: Tensor) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1]; inf for identical images."""
    m = mse(a.clamp(0, 1), b.clamp(0, 1))
    return math.inf if m == 0.0 else -10.0 * math.log10(m)


def _nchw(img: Tensor) -> Tensor:
    """[H, W, 3] or [B, H, W, 3] -> [B, 3, H, W] float32 in [0, 1]."""
    x = img.detach().float().clamp(0, 1)
    if x.ndim == 3:
        x = x[None]
    return x.permute(0, 3, 1, 2).contiguous()


def ssim(a: Tensor, b: Tensor) -> float:
    """Structural similarity (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5), the
    figure 3DGS papers report, through pytorch-msssim. Images smaller than the window
    use a window that fits (odd, at least 3). [H, W, 3] or [B, H, W, 3] in [0, 1].
    """
    from pytorch_msssim import ssim as _ssim

    x, y = _nchw(a), _nchw(b)
    win = min(11, min(x.shape[-2:]) - (1 - min(x.shape[-2:]) % 2))
    if win < 3:
        raise ValueError(f"images of {tuple(x.shape[-2:])} are too small for SSIM")
    return float(_ssim(x, y, data_range=1.0, size_average=True, win_size=win))


def lpips_unavailable_reason() -> str | None:
    """Why LPIPS cannot be computed here (None when it can).

    LPIPS needs the `lpips` package and its backbone's pretrained weights on disk; this
    project never downloads weights behind the user's back, so without them it is skipped.
    """
    try:
        import lpips  # noqa: F401
    except ImportError:
        return "the lpips package is not installed (pip install lpips, with its weights)"
    import torch.hub

    hub = torch.hub.get_dir()
    from pathlib import Path

    if not any(Path(hub).glob("checkpoints/alexnet-*.pth")):
        return f"AlexNet backbone weights for LPIPS are not on disk ({hub}/checkpoints)"
    return None


def lpips(a: Tensor, b: Tensor) -> float:
    """LPIPS (AlexNet) distance, lower is better; only where the weights are on disk."""
    reason = lpips_unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"LPIPS unavailable: {reason}")
    import lpips as _lpips

    global _lpips_net
    if _lpips_net is None:
        _lpips_net = _lpips.LPIPS(net="alex", verbose=False).eval()
    with torch.no_grad():
        return float(_lpips_net(_nchw(a) * 2 - 1, _nchw(b) * 2 - 1).mean())


_lpips_net = None
