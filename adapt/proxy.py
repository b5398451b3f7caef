"""A navigation proxy: a coarse stand-in for a large model, drawn while the camera moves.

On a model of millions of Gaussians the per-Gaussian stages of a frame (projection,
sorting, tile lists) cost the same at any resolution, so lowering the resolution while
dragging does not bring the frame rate up; drawing fewer Gaussians does. The proxy is
the model merged on a voxel grid: all Gaussians smaller than a cell whose centres fall in
the same cell become one Gaussian with their moments (mass-weighted centre, covariance
sum_k m_k (Sigma_k + d_k d_k^T) / M, mass-weighted SH, opacity from the mass spread on
the merged footprint) -- adapt.merge's moment matching taken from pairs to whole cells,
at the coarser radius a moving view can afford. Gaussians larger than a cell stay as they
are. The cell is chosen so that about `target` Gaussians remain.

Built once per model (seconds for millions, in the viewer's background thread) and cached
as an INRIA .ply in the model's cache folder (adapt.cache.cache_dir_for), under a name
holding a key of the model file (name, size, mtime) and the proxy settings; written
atomically (render.io.atomic), so a crash never leaves half a proxy.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch
from torch import Tensor

from adapt.merge import footprint_mass, rotmat_to_quat
from render.gaussians import Gaussians
from render.rasterize.project import quat_to_rotmat

log = logging.getLogger("mipview.adapt")

PROXY_MIN_GAUSSIANS = 600_000  # models above this get a proxy while moving
PROXY_TARGET = 250_000  # Gaussians in the proxy (about 15-20 ms of per-Gaussian work)
PROXY_VERSION = 1  # bump when the construction changes: old cached proxies are ignored
MAX_OPACITY = 0.99
_CHUNK = 1 << 20  # rows accumulated at a time (bounds the [chunk, K, 3] temporaries)


def needs_proxy(n_gaussians: int, threshold: int = PROXY_MIN_GAUSSIANS) -> bool:
    return n_gaussians > threshold


def _cell_keys(means: Tensor, cell: float) -> Tensor:
    """One int64 key per voxel of side `cell` holding each centre. [N]"""
    q = torch.floor((means - means.min(dim=0).values) / cell).long().clamp(0, 2**20 - 1)
    return (q[:, 0] << 40) | (q[:, 1] << 20) | q[:, 2]


def _merged_size(means: Tensor, max_sigma: Tensor, cell: float) -> int:
    """How many Gaussians cluster_merge leaves at `cell`: those larger than a cell, plus
    the occupied cells of the others."""
    big = max_sigma > cell
    return int(big.sum()) + int(torch.unique(_cell_keys(means[~big], cell)).numel())


def choose_cell(means: Tensor, max_sigma: Tensor, target: int, iterations: int = 6) -> float:
    """A voxel side (world units) at which cluster_merge leaves about `target` Gaussians
    (means [N, 3], max_sigma [N]: each Gaussian's largest standard deviation).

    Starts from the robust bounding box shared out in `target` cells and corrects by the
    measured count (occupied cells go as cell^-2 on a surface, cell^-3 in a volume: the
    square root of the ratio converges for either within a few steps).
    """
    sample = means[:: max(1, len(means) // 1_000_000)]
    q = torch.tensor([0.01, 0.99])
    lo_hi = torch.quantile(sample, q, dim=0)
    size = (lo_hi[1] - lo_hi[0]).clamp_min(1e-6)
    cell = float((size.prod() / target) ** (1.0 / 3.0))
    for _ in range(iterations):
        n = _merged_size(means, max_sigma, cell)
        ratio = n / target
        if 0.85 <= ratio <= 1.15:
            break
        cell *= ratio ** 0.5
    return cell


def cluster_merge(g: Gaussians, cell: float) -> Gaussians:
    """Merge the Gaussians smaller than `cell` by voxel (see the module docstring).

    g: the set, on the CPU. cell: voxel side, world units. Returns the merged set (the
    Gaussians larger than a cell first, unchanged, then one per occupied voxel).
    """
    g = g.detach().to("cpu")
    sig = torch.exp(g.log_scales)
    big = sig.max(dim=1).values > cell
    small = torch.nonzero(~big).squeeze(1)
    keys = _cell_keys(g.means[small], cell)
    _, inv = torch.unique(keys, return_inverse=True)
    m_cells = int(inv.max()) + 1 if len(inv) else 0
    mass = footprint_mass(g)[small].clamp_min(1e-30)  # [S]
    w_sum = torch.zeros(m_cells).index_add_(0, inv, mass)
    mu = torch.zeros(m_cells, 3, dtype=torch.float64).index_add_(
        0, inv, mass.double()[:, None] * g.means[small].double())
    mu = (mu / w_sum.double()[:, None]).float()
    k = g.sh.shape[1]
    cov = torch.zeros(m_cells, 3, 3)
    sh = torch.zeros(m_cells, k, 3)
    for s in range(0, len(small), _CHUNK):  # bounded temporaries for millions of rows
        idx = small[s:s + _CHUNK]
        ci = inv[s:s + _CHUNK]
        mc = mass[s:s + _CHUNK]
        rot = quat_to_rotmat(g.quats[idx])
        sg = sig[idx]
        c = rot @ torch.diag_embed(sg**2) @ rot.transpose(1, 2)
        d = g.means[idx] - mu[ci]
        c = c + d[:, :, None] * d[:, None, :]
        cov.index_add_(0, ci, mc[:, None, None] * c)
        sh.index_add_(0, ci, mc[:, None, None] * g.sh[idx])
    cov /= w_sum[:, None, None]
    sh /= w_sum[:, None, None]
    evals, evecs = torch.linalg.eigh(cov.double())
    evecs = evecs.float()
    flip = torch.linalg.det(evecs) < 0  # a rotation, not a reflection
    evecs[flip, :, 0] = -evecs[flip, :, 0]
    scales = torch.sqrt(evals.float().clamp_min(1e-20))
    top = torch.sort(scales, dim=-1, descending=True).values
    o = (w_sum / (top[:, 0] * top[:, 1]).clamp_min(1e-30)).clamp(1e-4, MAX_OPACITY)
    return Gaussians(
        means=torch.cat([g.means[big], mu]),
        quats=torch.cat([g.quats[big], rotmat_to_quat(evecs)]),
        log_scales=torch.cat([g.log_scales[big], torch.log(scales)]),
        opacity_logits=torch.cat([g.opacity_logits[big], torch.log(o / (1 - o))]),
        sh=torch.cat([g.sh[big], sh]),
    )


def importance_subset(g: Gaussians, target: int) -> Gaussians:
    """The `target` Gaussians of largest footprint mass (opacity x area): the
    alternative the proxy was measured against (benchmarks/viewer.py --big)."""
    g = g.detach().to("cpu")
    keep = torch.topk(footprint_mass(g), min(target, len(g))).indices.sort().values
    return g._map(lambda t: t[keep])


def build_proxy(g: Gaussians, target: int = PROXY_TARGET) -> Gaussians:
    """The navigation proxy of a set: about `target` Gaussians (see module docstring)."""
    if len(g) <= target:
        return g.detach().to("cpu")
    g = g.detach().to("cpu")
    cell = choose_cell(g.means.float(), torch.exp(g.log_scales.max(dim=1).values), target)
    return cluster_merge(g, cell)


# -- the cache ----------------------------------------------------------------------------

def proxy_key(model_path: str | Path, target: int = PROXY_TARGET) -> str:
    """A key that changes with the model file (name, size, mtime) and the settings."""
    st = Path(model_path).stat()
    text = f"{Path(model_path).name}|{st.st_size}|{st.st_mtime_ns}|{target}|v{PROXY_VERSION}"
    return hashlib.sha256(text.encode()).hexdigest()


def _proxy_name(key: str) -> str:
    return f"proxy_{key[:16]}.ply"


def cached_proxy_path(model_path: str | Path, target: int = PROXY_TARGET) -> Path | None:
    """The cached proxy of a model file if one exists (nothing is created looking)."""
    from adapt.cache import user_cache_dir

    p = Path(model_path)
    key = proxy_key(p, target)
    for folder in (p.with_name(p.name + ".mipview"), user_cache_dir() / key[:32]):
        f = folder / _proxy_name(key)
        if f.is_file():
            return f
    return None


def load_or_build_proxy(g: Gaussians, model_path: str | Path | None,
                        target: int = PROXY_TARGET) -> tuple[Gaussians, str]:
    """(proxy, where it came from: "cache" or "built"); a built proxy of a model file is
    written to its cache folder (a failure to write is logged, the proxy still returned).
    """
    from render.io import GaussianFileError, load_model

    path = None if model_path is None else Path(model_path)
    if path is not None and path.is_file():
        cached = cached_proxy_path(path, target)
        if cached is not None:
            try:
                return load_model(cached, find_cameras=False).gaussians, "cache"
            except GaussianFileError as exc:  # damaged: rebuilt and rewritten below
                log.warning("ignoring a damaged proxy: %s", exc)
    proxy = build_proxy(g, target)
    if path is not None and path.is_file():
        save_proxy(proxy, path, target)
    return proxy, "built"


def save_proxy(proxy: Gaussians, model_path: Path, target: int = PROXY_TARGET) -> Path | None:
    """Write the proxy into the model's cache folder, atomically; None when it cannot."""
    from adapt.cache import cache_dir_for
    from render.io.atomic import atomic_write_bytes
    from render.io.inria_ply import encode_inria

    key = proxy_key(model_path, target)
    try:
        folder = cache_dir_for(model_path, key)
        return atomic_write_bytes(folder / _proxy_name(key), encode_inria(proxy))
    except OSError as exc:
        log.warning("could not cache the navigation proxy of %s: %s", model_path, exc)
        return None
