"""Trainable Gaussians: nn.Parameters plus one Adam, with the 3DGS learning rates, and
pruning / appending that keep Adam's moment estimates in step with the parameters."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from render.gaussians import Gaussians

PARAM_NAMES = ("means", "sh_dc", "sh_rest", "opacity_logits", "log_scales", "quats")


@dataclass(frozen=True)
class LearningRates:
    """The 3DGS learning rates (gaussian-splatting/arguments/__init__.py).

    Attributes:
        means_init, means_final: position rate at the start / end, times the scene extent;
            decays exponentially (log-linearly) over `means_decay_iters` iterations.
        sh_dc: SH band 0; sh_rest: the higher bands (3DGS uses sh_dc / 20).
        opacity, scales, rotations: for logits, log scales, quaternions.
    """

    means_init: float = 1.6e-4
    means_final: float = 1.6e-6
    means_decay_iters: int = 30_000
    sh_dc: float = 2.5e-3
    sh_rest: float = 2.5e-3 / 20.0
    opacity: float = 0.05
    scales: float = 0.005
    rotations: float = 0.001

    def for_param(self, name: str) -> float:
        return {"means": self.means_init, "sh_dc": self.sh_dc, "sh_rest": self.sh_rest,
                "opacity_logits": self.opacity, "log_scales": self.scales,
                "quats": self.rotations}[name]


def exp_decay(step: int, lr_init: float, lr_final: float, max_steps: int) -> float:
    """Log-linear interpolation from lr_init (step 0) to lr_final (step >= max_steps)."""
    if max_steps <= 0:
        return lr_final
    t = min(max(step / max_steps, 0.0), 1.0)
    return math.exp(math.log(lr_init) * (1.0 - t) + math.log(lr_final) * t)


class _JoinSH(torch.autograd.Function):
    """torch.cat([sh_dc, sh_rest], dim=1) ([N, 1, 3], [N, K-1, 3] -> [N, K, 3]) written
    into `out` (a buffer kept across steps), whose backward hands each part a contiguous
    gradient. At 276k Gaussians of SH degree 3 on 2 cores, torch.cat along that axis and
    AccumulateGrad's copies of the strided slices its backward gives cost 30-45 ms a
    step, mostly faulting in fresh 52 MB buffers; this, ~15 ms."""

    @staticmethod
    def forward(ctx, dc: Tensor, rest: Tensor, out: Tensor) -> Tensor:
        k = dc.shape[1]
        out[:, :k] = dc
        out[:, k:] = rest
        ctx.k = k
        ctx.mark_dirty(out)
        return out

    @staticmethod
    def backward(ctx, v: Tensor) -> tuple[Tensor, Tensor, None]:
        k = ctx.k
        return (v.new_empty((v.shape[0], k, 3)).copy_(v[:, :k]),
                v.new_empty((v.shape[0], v.shape[1] - k, 3)).copy_(v[:, k:]), None)


class Trainable:
    """A Gaussian set under optimisation.

    Attributes:
        params: name -> nn.Parameter; means [N, 3], sh_dc [N, 1, 3], sh_rest [N, K-1, 3],
            opacity_logits [N], log_scales [N, 3], quats [N, 4].
        optimizer: one Adam with a param group per tensor (eps 1e-15 as in 3DGS).
        extent: scene radius in world units; scales the position rate and densification.
    """

    def __init__(self, gaussians: Gaussians, lrs: LearningRates | None = None,
                 extent: float | None = None) -> None:
        g = gaussians.detach()
        self.lrs = lrs or LearningRates()
        self.extent = float(extent if extent is not None else gaussians.extent())
        tensors = {"means": g.means, "sh_dc": g.sh[:, :1], "sh_rest": g.sh[:, 1:],
                   "opacity_logits": g.opacity_logits, "log_scales": g.log_scales,
                   "quats": g.quats}
        self.params: dict[str, nn.Parameter] = {
            n: nn.Parameter(t.float().clone().contiguous()) for n, t in tensors.items()}
        groups = [{"params": [p], "name": n, "lr": self._base_lr(n)}
                  for n, p in self.params.items()]
        # fused: one kernel a tensor, 10x faster than the per-tensor loop on the CPU
        # (272k Gaussians at SH 3: 50 -> 5 ms a step; benchmarks/adapt.py), same update
        self.optimizer = torch.optim.Adam(groups, lr=0.0, eps=1e-15, fused=True)
        self._sh_buffer: Tensor | None = None

    @staticmethod
    def from_gaussians(gaussians: Gaussians, lrs: LearningRates | None = None,
                       extent: float | None = None) -> Trainable:
        return Trainable(gaussians, lrs, extent)

    def _base_lr(self, name: str) -> float:
        lr = self.lrs.for_param(name)
        return lr * self.extent if name == "means" else lr

    def __len__(self) -> int:
        return int(self.params["means"].shape[0])

    @property
    def device(self) -> torch.device:
        return self.params["means"].device

    def gaussians(self) -> Gaussians:
        """The current set, differentiable with respect to the parameters. Its sh lives in
        a buffer that the next call overwrites: clone a set kept past that (snapshot)."""
        p = self.params
        dc, rest = p["sh_dc"], p["sh_rest"]
        shape = (dc.shape[0], dc.shape[1] + rest.shape[1], 3)
        buf = self._sh_buffer
        if buf is None or tuple(buf.shape) != shape or buf.device != dc.device:
            buf = self._sh_buffer = torch.empty(shape, dtype=dc.dtype, device=dc.device)
        return Gaussians(means=p["means"], quats=p["quats"], log_scales=p["log_scales"],
                         opacity_logits=p["opacity_logits"],
                         sh=_JoinSH.apply(dc, rest, buf.detach()))

    def snapshot(self) -> Gaussians:
        """A detached copy with normalised quaternions, for saving or showing."""
        g = self.gaussians().clone()
        g.quats = torch.nn.functional.normalize(g.quats, dim=-1)
        return g

    def update_learning_rate(self, step: int) -> float:
        """Exponential position-rate decay (3DGS); returns the position rate now."""
        lr = exp_decay(step, self.lrs.means_init * self.extent,
                       self.lrs.means_final * self.extent, self.lrs.means_decay_iters)
        for group in self.optimizer.param_groups:
            if group["name"] == "means":
                group["lr"] = lr
        return lr

    # -- changing N while keeping Adam's state --------------------------------------------------
    def _swap(self, name: str, new: Tensor, state_fn) -> None:
        """Replace parameter `name` by `new`, mapping its Adam moments with state_fn."""
        old = self.params[name]
        param = nn.Parameter(new.contiguous())
        state = self.optimizer.state.pop(old, None)
        if state:
            state = {k: (state_fn(v) if torch.is_tensor(v) and v.dim() > 0 else v)
                     for k, v in state.items()}
            self.optimizer.state[param] = state
        for group in self.optimizer.param_groups:
            if group["name"] == name:
                group["params"][0] = param
        self.params[name] = param

    def prune(self, keep: Tensor) -> None:
        """Keep only the Gaussians where keep [N] (bool) is True."""
        keep = keep.to(self.device)
        for name in PARAM_NAMES:
            self._swap(name, self.params[name].detach()[keep], lambda v, k=keep: v[k])

    def append(self, new: dict[str, Tensor]) -> None:
        """Add Gaussians given as name -> tensor [M, ...] (all PARAM_NAMES); Adam moments of
        the new ones start at zero."""
        for name in PARAM_NAMES:
            extra = new[name].detach().float().to(self.device)
            self._swap(name, torch.cat([self.params[name].detach(), extra]),
                       lambda v, e=extra: torch.cat([v, torch.zeros_like(e)]))

    def set_tensor(self, name: str, value: Tensor) -> None:
        """Overwrite a parameter's values (same shape) and zero its Adam moments
        (3DGS does this for the opacity reset)."""
        self._swap(name, value.detach().float(), torch.zeros_like)
