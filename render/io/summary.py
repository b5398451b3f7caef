"""`model_summary`: what `mipview info` prints, without building the whole set.

For a binary INRIA .ply (the big files: 3 M Gaussians at SH degree 3 are ~700 MB) the
file is scanned in row blocks straight from its memory map: the counts of rows dropped
(NaN/Inf or values beyond to_gaussians' bounds) and of zero rotations, and the kept
centres for the bounds. The SH coefficients, which are most of the file, are only
checked, never copied. Every other file goes through `load_model`. Both give the same JSON
(built by :mod:`render.io.describe`).

The scan imports neither torch nor the readers that need it: importing torch alone takes
longer than scanning a 700 MB file. Only the `load_model` fallback imports them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from render.io.compressed_ply import is_compressed_layout
from render.io.describe import camera_count, load_warnings, summary_dict
from render.io.errors import GaussianFileError
from render.io.files import map_file_bytes
from render.io.gaussian_arrays import LOG_SCALE_RANGE, MAX_ABS_CENTRE, MAX_ABS_COEFF
from render.io.inria_ply import inria_sh_coeffs
from render.io.ply_format import is_ply, parse_header, read_elements
from render.io.splat_model import model_from_ply_comments

_BLOCK_ROWS = 16384  # rows checked together (~4 MB of an SH-3 file)


def model_summary(path: str | Path, find_cameras: bool = True) -> dict:
    """`load_model(path).summary()`, computed faster for binary INRIA .ply files.

    Raises:
        GaussianFileError: for a file that cannot be loaded, as `load_model` would.
    """
    path = Path(path)
    data = map_file_bytes(path, what="model file")
    scan = _scan_inria(path, data) if is_ply(data) else None
    if scan is None:  # another format, or a file load_model must explain
        del data
        from render.io.model import load_model  # imports torch

        return load_model(path, find_cameras=find_cameras).summary()
    means, sh_degree, n_dropped, n_zero, tag = scan
    n_cameras, cameras_path, cam_warnings = camera_count(path) if find_cameras else (
        None, None, [])
    warnings = load_warnings(n_dropped, n_zero, tag) + cam_warnings
    return summary_dict(path, "inria_ply", means, sh_degree, n_cameras, cameras_path,
                        n_dropped, n_zero, warnings, tag)


def _scan_inria(path: Path, data) -> tuple[np.ndarray, int, int, int, str] | None:
    """(kept centres [M, 3] float32, SH degree, rows dropped, zero rotations, tag), or
    None when the file is not a binary INRIA .ply that load_model would accept."""
    try:
        header = parse_header(path, data)
        if header.format == "ascii" or is_compressed_layout(header) \
                or header.element("vertex") is None:
            return None
        columns = read_elements(path, header, data, ["vertex"])["vertex"]
        k = inria_sh_coeffs(path, header, columns)
    except GaussianFileError:
        return None  # load_model gives the same error, with its full handling
    n = header.element("vertex").count
    names = [p for p in header.element("vertex").property_names
             if p in columns and (p in _SCANNED or p.startswith("f_rest_"))]
    kept, n_zero = [], 0
    with np.errstate(over="ignore", invalid="ignore"):
        for s in range(0, n, _BLOCK_ROWS):
            e = min(n, s + _BLOCK_ROWS)
            finite = np.ones(e - s, dtype=bool)
            for p in names:  # as to_gaussians: float32 values, NaN/Inf rows dropped
                finite &= _valid(p, columns[p][s:e].astype(np.float32))
            q = np.stack([columns[f"rot_{i}"][s:e][finite].astype(np.float32)
                          for i in range(4)], axis=1)
            n_zero += int((np.square(q.astype(np.float64)).sum(axis=1) == 0.0).sum())
            kept.append(np.stack([columns[c][s:e][finite].astype(np.float32)
                                  for c in ("x", "y", "z")], axis=1))
    means = np.concatenate(kept) if kept else np.empty((0, 3), np.float32)
    if len(means) == 0 or (n - len(means)) * 2 > n:
        return None  # load_model says why (no rows, none valid, or mostly absurd)
    tag = model_from_ply_comments(header.comments)
    return means, int(round(np.sqrt(k))) - 1, n - len(means), n_zero, tag


def _valid(name: str, v: np.ndarray) -> np.ndarray:
    """[B] bool: a column's values finite and within to_gaussians' bounds."""
    if name in ("x", "y", "z"):
        return np.abs(v) <= MAX_ABS_CENTRE
    if name.startswith("scale_"):
        return (v >= LOG_SCALE_RANGE[0]) & (v <= LOG_SCALE_RANGE[1])
    if name.startswith("rot_"):
        return np.abs(v) <= 1e18
    return np.abs(v) <= MAX_ABS_COEFF  # opacity and SH


_SCANNED = {"x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
            "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"}
