"""Niantic's .spz (Scaniverse, SuperSplat, Spark, Brush, PlayCanvas splat-transform).

A header, then six attribute blocks, one per attribute, all Gaussians' values of that
attribute in a row (little endian):

- positions, 9 bytes each: x, y, z as 24-bit signed fixed point, `fractional_bits`;
- alphas, 1: sigmoid(opacity) * 255;
- colors, 3: f_dc * 0.15 * 255 + 127.5 (SPZ's own colour scale, not SH_C0);
- scales, 3: (log scale + 10) * 16;
- rotations, 3 (v2): x, y, z of the quaternion with w >= 0, as q * 127.5 + 127.5;
  4 (v3+): "smallest three" in a uint32: the top 2 bits name the largest component of
  (x, y, z, w), made positive, then the other three in order from the high bits, 10 bits
  each: a sign bit, then the magnitude * 511 / sqrt(1/2);
- sh, 3 * (K - 1): coefficient-major, channel-inner, v * 128 + 128.

Header (16 bytes in v2/v3, 32 in v4): magic `NGSP` (0x5053474e), uint32 version,
uint32 count, uint8 SH degree, uint8 fractional bits, uint8 flags (bit 0: trained with
the Mip-Splatting anti-aliasing filter), then in v4: uint8 stream count, uint32 offset of
the table of contents, zeros. v2/v3 files are the header and the blocks in one gzip
stream; v4 files keep the header plain, then a table of (compressed, uncompressed) uint64
sizes, then each block as its own ZSTD frame. Positions are stored raw (no axis change),
as splat-transform reads and writes them.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from render.gaussians import Gaussians
from render.io.atomic import atomic_write_bytes
from render.io.errors import GaussianFileError
from render.io.gaussian_arrays import GaussianArrays, gaussians_to_numpy
from render.io.limits import check_count
from render.io.splat_model import check_model

MAGIC = 0x5053474E
GZIP_MAGIC = b"\x1f\x8b"
VERSIONS = (2, 3, 4)
FLAG_ANTIALIASED = 0x1
COLOR_SCALE = 0.15
_SH_DIM = {0: 0, 1: 3, 2: 8, 3: 15}
_HEADER = struct.Struct("<IIIBBBB")  # magic, version, count, degree, bits, flags, reserved
_TOC_ENTRY = struct.Struct("<QQ")
_SQRT_HALF = math.sqrt(0.5)
_MASK9 = (1 << 9) - 1


def is_spz(data: bytes) -> bool:
    """Whether the bytes are an .spz: the NGSP magic, plain or at the start of a gzip."""
    if data[:4] == struct.pack("<I", MAGIC):
        return True
    if data[:2] != GZIP_MAGIC:
        return False
    try:
        head = zlib.decompressobj(wbits=31).decompress(data[:4096], 4)
    except zlib.error:
        return False
    return head == struct.pack("<I", MAGIC)


def _block_sizes(n: int, degree: int, version: int) -> list[int]:
    sizes = [9 * n, n, 3 * n, 3 * n, (3 if version == 2 else 4) * n]
    if degree:
        sizes.append(3 * _SH_DIM[degree] * n)
    return sizes


def _parse_header(path: Path, head: bytes) -> tuple[int, int, int, int, int]:
    """(version, count, degree, fractional bits, flags) of a header's first 16 bytes."""
    if len(head) < _HEADER.size:
        raise GaussianFileError(path, f".spz: truncated header ({len(head)} of 16 bytes)")
    magic, version, n, degree, bits, flags, _ = _HEADER.unpack_from(head)
    if magic != MAGIC:
        raise GaussianFileError(path, ".spz: the header does not start with 'NGSP'")
    if version not in VERSIONS:
        raise GaussianFileError(path, f".spz: unsupported version {version} (2, 3 and 4 are)")
    if degree not in _SH_DIM:
        raise GaussianFileError(path, f".spz: SH degree {degree}; 0 to 3 are supported")
    if bits > 23:
        raise GaussianFileError(path, f".spz: {bits} fractional bits in a 24-bit position")
    check_count(path, n, degree, ".spz", extra_bytes_each=4 * 3 * (_SH_DIM[degree] + 8))
    return version, n, degree, bits, flags


def _gunzip_blocks(path: Path, data: bytes) -> tuple[tuple, list[bytes]]:
    """Header fields and blocks of a v2/v3 file, inflating no more than they need."""
    d = zlib.decompressobj(wbits=31)
    try:
        head = d.decompress(data, _HEADER.size)
        fields = _parse_header(path, head)
        version, n, degree = fields[:3]
        if version >= 4:
            raise GaussianFileError(path, ".spz: a version-4 header inside a gzip stream")
        sizes = _block_sizes(n, degree, version)
        body = d.decompress(d.unconsumed_tail, sum(sizes))
    except zlib.error as e:
        raise GaussianFileError(path, f".spz: damaged gzip stream ({e})") from None
    if len(body) < sum(sizes):
        raise GaussianFileError(
            path, f".spz: truncated: the header declares {n:,} Gaussians ({sum(sizes):,} "
            f"bytes of attributes), the gzip stream holds {len(body):,}")
    offsets = np.cumsum([0] + sizes)
    return fields, [body[offsets[i]:offsets[i + 1]] for i in range(len(sizes))]


def _zstd_blocks(path: Path, data: bytes) -> tuple[tuple, list[bytes]]:
    """Header fields and blocks of a v4 file; each frame is read up to its expected size."""
    fields = _parse_header(path, data[:_HEADER.size])
    version, n, degree = fields[:3]
    if len(data) < 32:
        raise GaussianFileError(path, f".spz: truncated v4 header ({len(data)} of 32 bytes)")
    n_streams, toc = data[15], struct.unpack_from("<I", data, 16)[0]
    sizes = _block_sizes(n, degree, version)
    if n_streams != len(sizes):
        raise GaussianFileError(
            path, f".spz: {n_streams} streams, SH degree {degree} needs {len(sizes)}")
    start = toc + n_streams * _TOC_ENTRY.size
    if toc < 32 or start > len(data):
        raise GaussianFileError(path, f".spz: table of contents at {toc} is outside the file")
    zstandard = _zstandard(path)
    dctx = zstandard.ZstdDecompressor()
    blocks, offset = [], start
    for i, want in enumerate(sizes):
        packed, unpacked = _TOC_ENTRY.unpack_from(data, toc + i * _TOC_ENTRY.size)
        if unpacked != want:
            raise GaussianFileError(
                path, f".spz: stream {i} declares {unpacked:,} bytes, {n:,} Gaussians need "
                f"{want:,}")
        if offset + packed > len(data):
            raise GaussianFileError(
                path, f".spz: truncated: stream {i} ends at byte {offset + packed:,} of a "
                f"{len(data):,}-byte file")
        try:  # a bounded read: a frame that would inflate past `want` is not inflated
            with dctx.stream_reader(io.BytesIO(data[offset:offset + packed])) as r:
                block = r.read(want + 1)
        except zstandard.ZstdError as e:
            raise GaussianFileError(path, f".spz: damaged ZSTD stream {i} ({e})") from None
        if len(block) != want:
            raise GaussianFileError(
                path, f".spz: ZSTD stream {i} holds {len(block):,} bytes, not {want:,}")
        blocks.append(block)
        offset += packed
    return fields, blocks


def _zstandard(path: Path | None):
    """The zstandard module (imported on first use: only .spz v4 needs it)."""
    try:
        import zstandard
    except ImportError:
        why = "ZSTD streams (.spz version 4) need the zstandard package: pip install zstandard"
        if path is None:
            raise RuntimeError(why) from None
        raise GaussianFileError(path, why) from None
    return zstandard


def decode_spz(path: Path, data: bytes) -> tuple[GaussianArrays, str]:
    """(the Gaussians, the model tag) of an .spz file's bytes."""
    if data[:2] == GZIP_MAGIC:
        fields, blocks = _gunzip_blocks(path, data)
    else:
        fields, blocks = _zstd_blocks(path, data)
    version, n, degree, bits, flags = fields
    pos_b, alpha_b, color_b, scale_b, rot_b = (np.frombuffer(b, np.uint8) for b in blocks[:5])

    p = pos_b.reshape(n, 3, 3).astype(np.int32)
    fixed = p[..., 0] | (p[..., 1] << 8) | (p[..., 2] << 16)
    fixed = np.where(fixed & 0x800000, fixed - (1 << 24), fixed)
    means = (fixed.astype(np.float64) / (1 << bits)).astype(np.float32)

    alpha = np.clip(alpha_b.astype(np.float64) / 255.0, 1e-6, 1 - 1e-6)
    colors = (color_b.reshape(n, 3).astype(np.float32) / 255.0 - 0.5) / COLOR_SCALE
    log_scales = scale_b.reshape(n, 3).astype(np.float32) / 16.0 - 10.0
    quats = _unpack_rotations(rot_b, n, version)

    k = (degree + 1) ** 2
    sh = np.empty((n, k, 3), np.float32)
    sh[:, 0, :] = colors
    if degree:
        rest = np.frombuffer(blocks[5], np.uint8).reshape(n, k - 1, 3)
        sh[:, 1:, :] = (rest.astype(np.float32) - 128.0) / 128.0
    arrays = GaussianArrays(means, quats, log_scales,
                            np.log(alpha / (1.0 - alpha)).astype(np.float32), sh)
    return arrays, "antialiased" if flags & FLAG_ANTIALIASED else "default"


def _unpack_rotations(rot: np.ndarray, n: int, version: int) -> np.ndarray:
    """(w, x, y, z) quaternions [N, 4] of the rotation block."""
    out = np.zeros((n, 4), np.float64)  # SPZ order x, y, z, w
    if version == 2:
        xyz = rot.reshape(n, 3).astype(np.float64) / 127.5 - 1.0
        out[:, :3] = xyz
        out[:, 3] = np.sqrt(np.maximum(0.0, 1.0 - np.square(xyz).sum(axis=1)))
    else:
        words = rot.view("<u4").astype(np.int64)
        largest = words >> 30
        rows = np.arange(n)
        shift = np.zeros(n, np.int64)
        for j in (3, 2, 1, 0):  # the last stored component sits in the lowest bits
            skip = largest == j
            field = (words >> shift) & 0x3FF
            v = _SQRT_HALF * (field & _MASK9) / _MASK9
            v = np.where(field >> 9, -v, v)
            out[:, j] = np.where(skip, 0.0, v)
            shift = np.where(skip, shift, shift + 10)
        out[rows, largest] = np.sqrt(np.maximum(0.0, 1.0 - np.square(out).sum(axis=1)))
    return out[:, [3, 0, 1, 2]].astype(np.float32)


# -- writing ----------------------------------------------------------------------------------

def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def _pack_rotations(quats: np.ndarray, version: int) -> bytes:
    q = quats.astype(np.float64)[:, [1, 2, 3, 0]]  # SPZ order x, y, z, w
    norm = np.linalg.norm(q, axis=1, keepdims=True)
    q = np.where(norm > 0, q / np.where(norm > 0, norm, 1.0), np.array([0.0, 0, 0, 1]))
    if version == 2:
        q = np.where(q[:, 3:] < 0, -q, q)
        return _u8(q[:, :3] * 127.5 + 127.5).tobytes()
    n = len(q)
    largest = np.argmax(np.abs(q), axis=1)
    q = np.where(q[np.arange(n), largest][:, None] < 0, -q, q)
    word = largest.astype(np.uint32)
    for j in range(4):
        mag = np.minimum(np.floor(np.abs(q[:, j]) / _SQRT_HALF * _MASK9 + 0.5), _MASK9)
        field = (((q[:, j] < 0).astype(np.uint32) << 9) | mag.astype(np.uint32))
        word = np.where(largest == j, word, (word << 10) | field)
    return word.astype("<u4").tobytes()


def _quantize_sh(rest: np.ndarray) -> np.ndarray:
    """8-bit SH [N, K-1, 3] as the SPZ reference writes it: band 1 on 5 significant bits,
    higher bands on 4 (the low bits round to buckets, which ZSTD then packs well)."""
    q = np.round(rest.astype(np.float64) * 128.0) + 128.0
    bucket = np.full(rest.shape[1], 16.0)
    bucket[:3] = 8.0
    q = np.floor((q + bucket[None, :, None] / 2) / bucket[None, :, None]) * bucket[None, :, None]
    return np.clip(q, 0, 255).astype(np.uint8)


def encode_spz(gaussians: Gaussians, model: str = "default", version: int = 4) -> bytes:
    """The bytes of an .spz holding the set, tagged with `model` (the flags byte's bit 0
    is set for `antialiased`; SPZ has no `2dgs` flag, so that writes as `default`).

    Lossy: 24-bit positions with as many fractional bits (up to 12) as the extent
    allows, 8-bit everything else.
    """
    check_model(model)
    if version not in VERSIONS:
        raise ValueError(f"SPZ version must be one of {VERSIONS}, got {version}")
    a = gaussians_to_numpy(gaussians)
    n, k = a.sh.shape[:2]
    degree = gaussians.sh_degree
    reach = float(np.abs(a.means).max()) if n else 0.0
    bits = max(0, min(12, 22 - math.ceil(math.log2(reach + 1.0))))
    fixed = np.clip(np.round(a.means.astype(np.float64) * (1 << bits)),
                    -(1 << 23), (1 << 23) - 1).astype(np.int64) & 0xFFFFFF
    pos = np.stack([fixed & 0xFF, (fixed >> 8) & 0xFF, fixed >> 16], axis=-1).astype(np.uint8)
    with np.errstate(over="ignore"):
        alpha = 1.0 / (1.0 + np.exp(-a.opacity_logits.astype(np.float64)))
    blocks = [
        pos.tobytes(),
        _u8(alpha * 255.0).tobytes(),
        _u8(a.sh[:, 0, :].astype(np.float64) * (COLOR_SCALE * 255.0) + 127.5).tobytes(),
        _u8((a.log_scales.astype(np.float64) + 10.0) * 16.0).tobytes(),
        _pack_rotations(a.quats, version),
    ]
    if degree:
        blocks.append(_quantize_sh(a.sh[:, 1:, :]).tobytes())
    flags = FLAG_ANTIALIASED if model == "antialiased" else 0
    head = _HEADER.pack(MAGIC, version, n, degree, bits, flags, 0)
    if version < 4:
        return zlib.compress(head + b"".join(blocks), 6, wbits=31)
    cctx = _zstandard(None).ZstdCompressor(level=9)
    packed = [cctx.compress(b) for b in blocks]
    head = head[:15] + struct.pack("<BI", len(blocks), 32) + bytes(12)
    toc = b"".join(_TOC_ENTRY.pack(len(p), len(b)) for p, b in zip(packed, blocks))
    return head + toc + b"".join(packed)


def save_spz(gaussians: Gaussians, path: str | Path, model: str = "default",
             version: int = 4) -> Path:
    """Save as .spz (version 4 by default: ZSTD; 2 and 3: gzip), tagged with `model`.
    Written to a temporary name and renamed. Returns the path written."""
    return atomic_write_bytes(path, encode_spz(gaussians, model, version))
