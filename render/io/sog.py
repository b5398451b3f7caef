"""PlayCanvas SOG (version 2): lossless WebP images plus a meta.json, zipped or in a folder.

Every Gaussian owns one texel (row-major, in the writer's order) of each W x H RGBA image:

- means_l, means_u: low and high bytes of x, y, z as 16-bit fractions of
  `means.mins..maxs` in log space, v = sign(p) * ln(1 + abs(p));
- quats: smallest three of the unit quaternion (w, x, y, z), made positive: the three
  others as (c * sqrt 2 * 0.5 + 0.5) * 255, alpha = 252 + the index of the largest;
- scales: three indices into `scales.codebook` (log scales);
- sh0: three indices into `sh0.codebook` (f_dc), alpha = sigmoid(opacity) * 255;
- shN_labels (SH > 0): a 16-bit index (R low, G high) into a palette of `shN.count`;
- shN_centroids: the palette, 64 entries a row: entry i at row i // 64, texels
  (i % 64) * C .. + C for its C = 3, 8 or 15 coefficients; R, G, B index `shN.codebook`
  for that coefficient of each colour.

meta.json also holds `count`, `version` 2, and `model` (`antialiased`, `2dgs`; absent for
`default`), see :mod:`render.io.splat_model`. Sizes the file declares (the count, the
images' dimensions, zip entries' sizes) are checked before anything of that size is
decoded, so a crafted file cannot make the reader allocate gigabytes.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from render.io.errors import GaussianFileError
from render.io.gaussian_arrays import GaussianArrays
from render.io.limits import available_memory, check_count
from render.io.splat_model import SPLAT_MODELS

ZIP_MAGIC = b"PK\x03\x04"
META_NAME = "meta.json"
MAX_META_BYTES = 64 << 20  # a meta.json holds a few codebooks: some kB
MAX_TEXTURE_SIDE = 16383  # the WebP limit
SH_COEFFS = {1: 3, 2: 8, 3: 15}
PALETTE_WIDTH = 64


def is_sog_zip(data: bytes) -> bool:
    """Whether the bytes are a zip archive with a meta.json (a bundled SOG)."""
    if not data.startswith(ZIP_MAGIC):
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return any(PurePosixPath(n).name == META_NAME for n in z.namelist())
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError):
        return False


def is_sog_meta(data: bytes) -> bool:
    """Whether the bytes are a SOG meta.json (the folder form's entry point)."""
    head = data[:4096].lstrip()
    return head.startswith(b"{") and b'"means"' in data[:MAX_META_BYTES] and \
        b'"quats"' in data[:MAX_META_BYTES]


# -- where the files come from ------------------------------------------------------------------

class _Zip:
    """Named entries of a zip, each read no larger than it declares (zip-bomb safe)."""

    def __init__(self, path: Path, data: bytes):
        self.path = path
        try:
            self.zip = zipfile.ZipFile(io.BytesIO(data))
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
            raise GaussianFileError(path, f"damaged .sog zip archive ({e})") from None
        self.by_name = {PurePosixPath(i.filename).name: i for i in self.zip.infolist()}

    def read(self, name: str, limit: int) -> bytes:
        info = self.by_name.get(PurePosixPath(name).name)
        if info is None:
            raise GaussianFileError(self.path, f".sog: the archive has no {name!r}")
        if info.file_size > limit:
            raise GaussianFileError(
                self.path, f".sog: zip entry {name!r} declares {info.file_size:,} bytes, more "
                f"than such an entry can need ({limit:,}); a zip bomb or a damaged archive")
        try:
            with self.zip.open(info) as f:
                blob = f.read(info.file_size + 1)
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError,
                RuntimeError) as e:
            raise GaussianFileError(self.path, f".sog: cannot read {name!r} ({e})") from None
        if len(blob) != info.file_size:
            raise GaussianFileError(
                self.path, f".sog: zip entry {name!r} inflates to more than the "
                f"{info.file_size:,} bytes it declares; a zip bomb or a damaged archive")
        return blob


class _Folder:
    """Files next to a meta.json."""

    def __init__(self, meta_path: Path):
        self.path = meta_path
        self.folder = meta_path.parent

    def read(self, name: str, limit: int) -> bytes:
        rel = PurePosixPath(name)
        if rel.is_absolute() or ".." in rel.parts:
            raise GaussianFileError(self.path, f".sog: image path {name!r} leaves the folder")
        file = self.folder / rel
        try:
            size = file.stat().st_size
            if size > limit:
                raise GaussianFileError(
                    self.path, f".sog: {file.name} is {size:,} bytes, more than such an "
                    f"image can need ({limit:,})")
            return file.read_bytes()
        except FileNotFoundError:
            raise GaussianFileError(self.path, f".sog: {name!r} is missing") from None
        except OSError as e:
            raise GaussianFileError(self.path, f".sog: cannot read {name!r} ({e})") from None


# -- meta.json ----------------------------------------------------------------------------------

@dataclass
class SogMeta:
    """The checked content of a meta.json."""

    count: int
    model: str
    means_min: np.ndarray  # [3], log space
    means_max: np.ndarray  # [3]
    means_files: list[str]
    scales_codebook: np.ndarray  # [<=256] float32
    scales_file: str
    quats_file: str
    sh0_codebook: np.ndarray
    sh0_file: str
    sh_bands: int = 0
    palette_count: int = 0
    sh_codebook: np.ndarray | None = None
    sh_files: list[str] | None = None


def parse_meta(path: Path, blob: bytes) -> SogMeta:
    """Check a meta.json's structure and values; refuse what the reader cannot use."""
    try:
        meta = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise GaussianFileError(path, f".sog: meta.json is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise GaussianFileError(path, ".sog: meta.json is not a JSON object")
    version = meta.get("version")
    if version != 2:
        what = "no version (the legacy SOG 1 layout)" if version is None else f"version {version!r}"
        raise GaussianFileError(path, f".sog: meta.json has {what}; version 2 is supported")
    count = meta.get("count")
    if not isinstance(count, int) or isinstance(count, bool):
        raise GaussianFileError(path, ".sog: meta.json 'count' is not an integer")
    model = meta.get("model", "default")
    if model not in SPLAT_MODELS:
        model = "default"  # as splat-transform: an unknown model reads as untagged
    sh = meta.get("shN")
    bands = 0
    if sh is not None:
        bands = sh.get("bands") if isinstance(sh, dict) else None
        if bands not in (0, 1, 2, 3) or isinstance(bands, bool):
            raise GaussianFileError(path, f".sog: shN.bands is {bands!r}, not 0 to 3")
    check_count(path, count, bands, ".sog", extra_bytes_each=6 * 4 * 4)

    def section(name: str, n_files: int) -> dict:
        s = meta.get(name)
        files = s.get("files") if isinstance(s, dict) else None
        if not (isinstance(files, list) and len(files) >= n_files
                and all(isinstance(f, str) for f in files[:n_files])):
            raise GaussianFileError(
                path, f".sog: meta.json '{name}' lacks its {n_files} image file name(s)")
        return s

    def numbers(s: dict, key: str, where: str, length: int | None = None) -> np.ndarray:
        v = s.get(key)
        ok = isinstance(v, list) and (len(v) == length if length else 0 < len(v) <= 256)
        if ok:
            try:
                arr = np.array(v, dtype=np.float64)
                ok = arr.ndim == 1 and bool(np.isfinite(arr).all())
            except (TypeError, ValueError, OverflowError):
                ok = False
        if not ok:
            want = f"{length} finite numbers" if length else "1 to 256 finite numbers"
            raise GaussianFileError(path, f".sog: meta.json {where}.{key} is not {want}")
        return arr

    means = section("means", 2)
    scales = section("scales", 1)
    quats = section("quats", 1)
    sh0 = section("sh0", 1)
    out = SogMeta(
        count=count, model=model,
        means_min=numbers(means, "mins", "means", 3), means_max=numbers(means, "maxs", "means", 3),
        means_files=means["files"][:2],
        scales_codebook=numbers(scales, "codebook", "scales").astype(np.float32),
        scales_file=scales["files"][0], quats_file=quats["files"][0],
        sh0_codebook=numbers(sh0, "codebook", "sh0").astype(np.float32),
        sh0_file=sh0["files"][0])
    if bands:
        shn = section("shN", 2)
        palette = shn.get("count")
        if not isinstance(palette, int) or isinstance(palette, bool) or \
                not 0 < palette <= 1 << 16:
            raise GaussianFileError(
                path, f".sog: shN.count is {palette!r}, not a palette size of 1 to 65536")
        out.sh_bands, out.palette_count = bands, palette
        out.sh_codebook = numbers(shn, "codebook", "shN").astype(np.float32)
        out.sh_files = shn["files"][:2]
    return out


# -- images ---------------------------------------------------------------------------------------

def _image(path: Path, source, name: str, max_texels: int,
           width: int | None = None) -> np.ndarray:
    """An RGBA image [H, W, 4] uint8, its size checked before it is decoded."""
    # a lossless WebP of W x H texels cannot need more than ~4.2 bytes a texel, plus headers
    blob = source.read(name, 5 * max_texels + (1 << 20))
    try:
        im = Image.open(io.BytesIO(blob), formats=["WEBP"])
        w, h = im.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise GaussianFileError(path, f".sog: {name} is not a WebP image ({e})") from None
    if w < 1 or h < 1 or w > MAX_TEXTURE_SIDE or h > MAX_TEXTURE_SIDE or w * h > max_texels:
        raise GaussianFileError(
            path, f".sog: {name} declares {w} x {h} texels, more than the "
            f"{max_texels:,} the file's count can use")
    if width is not None and w != width:
        raise GaussianFileError(path, f".sog: {name} is {w} wide, expected {width}")
    if 4 * w * h > available_memory():
        raise GaussianFileError(path, f".sog: not enough memory to decode {name}")
    try:
        rgba = np.asarray(im.convert("RGBA"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise GaussianFileError(path, f".sog: {name} cannot be decoded ({e})") from None
    return rgba


def _texels(path: Path, source, name: str, count: int) -> np.ndarray:
    """The first `count` texels [count, 4] of a per-Gaussian image."""
    rgba = _image(path, source, name, 4 * count + 4096)
    flat = rgba.reshape(-1, 4)
    if len(flat) < count:
        h, w = rgba.shape[:2]
        raise GaussianFileError(
            path, f".sog: {name} has {w} x {h} = {len(flat):,} texels for {count:,} Gaussians")
    return flat[:count]


def _lookup(path: Path, codebook: np.ndarray, index: np.ndarray, what: str) -> np.ndarray:
    if int(index.max(initial=0)) >= len(codebook):
        raise GaussianFileError(
            path, f".sog: {what} indexes entry {int(index.max())} of a "
            f"{len(codebook)}-entry codebook")
    return codebook[index]


# -- decoding -------------------------------------------------------------------------------------

def read_sog(path: Path, data: bytes) -> tuple[GaussianArrays, str]:
    """(the Gaussians, the model tag) of a SOG: `data` is a zip archive's bytes or a
    meta.json's (then the images are read from its folder)."""
    if data.startswith(ZIP_MAGIC):
        source = _Zip(path, data)
        meta_blob = source.read(META_NAME, MAX_META_BYTES)
    else:
        source = _Folder(path)
        if len(data) > MAX_META_BYTES:
            raise GaussianFileError(path, f".sog: meta.json is {len(data):,} bytes")
        meta_blob = data
    meta = parse_meta(path, meta_blob)
    n = meta.count
    lo = _texels(path, source, meta.means_files[0], n).astype(np.uint32)
    hi = _texels(path, source, meta.means_files[1], n).astype(np.uint32)
    frac = (lo[:, :3] | (hi[:, :3] << 8)).astype(np.float64) / 65535.0
    span = meta.means_max - meta.means_min
    span = np.where(span != 0, span, 1.0)
    v = meta.means_min + span * frac
    with np.errstate(over="ignore"):
        means = (np.sign(v) * np.expm1(np.abs(v))).astype(np.float32)

    quats = _unpack_quats(_texels(path, source, meta.quats_file, n))
    s = _texels(path, source, meta.scales_file, n)
    log_scales = _lookup(path, meta.scales_codebook, s[:, :3], "scales.webp")
    c = _texels(path, source, meta.sh0_file, n)
    alpha = np.clip(c[:, 3].astype(np.float64) / 255.0, 1e-6, 1 - 1e-6)
    k = (meta.sh_bands + 1) ** 2
    sh = np.zeros((n, k, 3), np.float32)
    sh[:, 0, :] = _lookup(path, meta.sh0_codebook, c[:, :3], "sh0.webp")
    if meta.sh_bands:
        sh[:, 1:, :] = _decode_shn(path, source, meta)
    arrays = GaussianArrays(means, quats, log_scales.astype(np.float32),
                            np.log(alpha / (1.0 - alpha)).astype(np.float32), sh)
    return arrays, meta.model


_QUAT_OTHERS = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])


def _unpack_quats(t: np.ndarray) -> np.ndarray:
    """(w, x, y, z) [N, 4] of the quats texels; a texel without a valid tag is the identity."""
    n = len(t)
    tag = t[:, 3].astype(np.int64)
    valid = (tag >= 252) & (tag <= 255)
    largest = np.where(valid, tag - 252, 0)
    abc = (t[:, :3].astype(np.float64) / 255.0 * 2.0 - 1.0) / math.sqrt(2.0)
    q = np.zeros((n, 4), np.float64)
    rows = np.arange(n)[:, None]
    q[rows, _QUAT_OTHERS[largest]] = abc
    q[np.arange(n), largest] = np.sqrt(np.maximum(0.0, 1.0 - np.square(abc).sum(axis=1)))
    q[~valid] = (1.0, 0.0, 0.0, 0.0)
    return q.astype(np.float32)


def _decode_shn(path: Path, source, meta: SogMeta) -> np.ndarray:
    """Higher-band SH [N, K-1, 3] through the labels, the palette and the codebook."""
    n, c = meta.count, SH_COEFFS[meta.sh_bands]
    labels_t = _texels(path, source, meta.sh_files[1], n).astype(np.int64)
    labels = labels_t[:, 0] | (labels_t[:, 1] << 8)
    rows = -(-meta.palette_count // PALETTE_WIDTH)
    pal = _image(path, source, meta.sh_files[0], PALETTE_WIDTH * c * rows,
                 width=PALETTE_WIDTH * c)
    # entry i: row i // 64, texels (i % 64) * c .. + c; R, G, B are the three colours
    entries = pal.reshape(-1, PALETTE_WIDTH, c, 4).reshape(-1, c, 4)[:, :, :3]
    usable = min(len(entries), meta.palette_count)
    palette = _lookup(path, meta.sh_codebook, entries[:usable], "shN_centroids.webp")
    out = np.zeros((n, c, 3), np.float32)
    ok = labels < usable  # an out-of-range label has no higher bands, as splat-transform reads it
    out[ok] = palette[labels[ok]]
    return out
