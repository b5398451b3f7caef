"""`load_model`: any supported Gaussian-splat file -> a validated `Gaussians`.

The format is told from the content, not the name: a PLY header with `chunk` and
`packed_*` properties is the SuperSplat compressed layout, any other PLY is read as the
INRIA layout; the `NGSP` magic (plain, or at the start of a gzip stream) is an .spz; a
zip archive holding a meta.json, or a meta.json itself (or a folder holding one), is a
PlayCanvas SOG; a file without a header whose size is a multiple of 32 bytes and whose
records look like Gaussians is an antimatter15 .splat.

Every format's anti-aliasing tag (see :mod:`render.io.splat_model`) is read into
`LoadedModel.splat_model`.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from render.gaussians import Gaussians
from render.io.cameras_json import CameraRecord, load_inria_cameras
from render.io.compressed_ply import compressed_elements, decode_compressed, is_compressed_layout
from render.io.describe import cameras_beside, load_warnings, summary_dict
from render.io.errors import GaussianFileError
from render.io.files import map_file_bytes
from render.io.gaussian_arrays import GaussianArrays, to_gaussians
from render.io.inria_ply import check_ascii_memory, decode_inria
from render.io.ply_format import is_ply, parse_header, read_elements
from render.io.sog import META_NAME, is_sog_meta, is_sog_zip, read_sog
from render.io.splat import RECORD, decode_splat, splat_plausibility
from render.io.splat_model import antialias_for, model_from_ply_comments
from render.io.spz import decode_spz, is_spz

FORMATS = ("inria_ply", "compressed_ply", "splat", "spz", "sog")
_MIN_SPLAT_PLAUSIBILITY = 0.5


@dataclass
class LoadedModel:
    """A model file as loaded.

    Attributes:
        gaussians: the valid Gaussians, float32 on the CPU.
        path: the file read.
        format: "inria_ply", "compressed_ply", "splat", "spz" or "sog".
        n_dropped: rows dropped because they held NaN, Inf or absurd values.
        cameras: the training cameras found next to the model (cameras.json), or None.
        cameras_path: the cameras.json they came from, or None.
        n_zero_quats: all-zero quaternions read as the identity rotation.
        warnings: things the user should know that did not stop the load (e.g. a
            cameras.json next to the model that could not be read).
        splat_model: the file's anti-aliasing tag: "default", "antialiased" (draw with
            the Mip-Splatting filter) or "2dgs" (see render.io.splat_model).
    """

    gaussians: Gaussians
    path: Path
    format: str
    n_dropped: int
    cameras: list[CameraRecord] | None
    cameras_path: Path | None
    n_zero_quats: int = 0
    warnings: list[str] = field(default_factory=list)
    splat_model: str = "default"

    @property
    def antialias(self) -> str:
        """The antialias mode the file asks to be drawn in: "mip" or "classic"."""
        return antialias_for(self.splat_model)

    def summary(self) -> dict:
        """A JSON-ready description (what `mipview info` prints)."""
        g = self.gaussians
        means = g.means.detach().to("cpu").float().numpy()
        n_cameras = None if self.cameras is None else len(self.cameras)
        return summary_dict(self.path, self.format, means, g.sh_degree, n_cameras,
                            self.cameras_path, self.n_dropped, self.n_zero_quats,
                            self.warnings, self.splat_model)


def detect_format(path: Path, data: bytes) -> str:
    """The format of a file's bytes, from the content (see the module docstring)."""
    if is_ply(data):
        header = parse_header(path, data)
        return "compressed_ply" if is_compressed_layout(header) else "inria_ply"
    if is_spz(data):
        return "spz"
    if is_sog_zip(data) or is_sog_meta(data):
        return "sog"
    return _detect_headerless(path, data)


def _detect_headerless(path: Path, data: bytes) -> str:
    if b"end_header" in data[:65536]:
        raise GaussianFileError(path, "damaged PLY file: the first line is not 'ply'")
    if len(data) % RECORD.itemsize == 0 and \
            splat_plausibility(data) >= _MIN_SPLAT_PLAUSIBILITY:
        return "splat"
    if path.suffix.lower() == ".splat":
        why = (f"its size, {len(data)} bytes, is not a multiple of {RECORD.itemsize}"
               if len(data) % RECORD.itemsize else
               "most of its records hold NaN, Inf, zero or absurd positions or scales")
        raise GaussianFileError(path, f"not a valid .splat file: {why}")
    raise GaussianFileError(
        path, "not a Gaussian-splat model: no PLY header, no .spz or SOG signature, and "
        "not .splat records (a .ply, .compressed.ply, .splat, .spz or .sog is expected)")


def decode(path: Path, data: bytes, progress: Callable[[float], None] | None = None
           ) -> tuple[str, GaussianArrays, str]:
    """(format, raw arrays, anti-aliasing tag) of a file's bytes; `progress(fraction)` is
    called as an INRIA .ply's rows are decoded."""
    if not is_ply(data):
        if is_spz(data):
            return ("spz", *decode_spz(path, data))
        if is_sog_zip(data) or is_sog_meta(data):
            return ("sog", *read_sog(path, data))
        return _detect_headerless(path, data), decode_splat(path, data), "default"
    header = parse_header(path, data)
    tag = model_from_ply_comments(header.comments)
    if is_compressed_layout(header):
        elements = read_elements(path, header, data, compressed_elements(header))
        return "compressed_ply", decode_compressed(path, header, elements), tag
    if header.element("vertex") is None:
        names = ", ".join(e.name for e in header.elements) or "none"
        raise GaussianFileError(
            path, f"the PLY has no 'vertex' element holding Gaussians (elements: {names})")
    if header.format == "ascii":
        check_ascii_memory(path, header, len(data) - header.data_offset)
    columns = read_elements(path, header, data, ["vertex"])["vertex"]
    release = _page_release(header, data)
    n = max(1, header.element("vertex").count)

    def done_rows(rows: int) -> None:
        if release is not None:
            release(rows)
        if progress is not None:
            progress(rows / n)

    return "inria_ply", decode_inria(path, header, columns, done_rows), tag


def _page_release(header, data):
    """For a memory-mapped binary file whose vertex element comes first: a callback that
    drops the decoded rows' pages from the process (they stay in the page cache)."""
    vertex = header.element("vertex")
    if not isinstance(data, mmap.mmap) or header.format == "ascii" \
            or header.elements[0] is not vertex or not hasattr(mmap, "MADV_DONTNEED"):
        return None
    row = vertex.row_bytes()
    released = [0]

    def release(rows: int) -> None:
        end = (header.data_offset + rows * row) // mmap.PAGESIZE * mmap.PAGESIZE
        if end > released[0]:
            data.madvise(mmap.MADV_DONTNEED, released[0], end - released[0])
            released[0] = end

    return release


def model_file(path: Path) -> Path:
    """The file to read for `path`: a SOG folder's meta.json, else `path` itself."""
    if path.is_dir() and (path / META_NAME).is_file():
        return path / META_NAME
    return path


def load_model(path: str | Path, find_cameras: bool = True,
               progress: Callable[[float], None] | None = None) -> LoadedModel:
    """Load a Gaussian-splat model file (INRIA .ply, compressed .ply, .splat, .spz, or
    SOG: a .sog zip, a meta.json or the folder holding one).

    Rows with NaN/Inf values are dropped (counted in `n_dropped`); quaternions are
    made unit length. `progress(fraction of the rows decoded)` is called along the way
    for an INRIA .ply (from the loading thread). With `find_cameras`, a cameras.json
    beside the file or in the INRIA output folder above it is loaded too; one that cannot
    be read becomes a warning, not an error, since the model itself is fine.

    Raises:
        GaussianFileError: for every file that cannot be loaded, naming the file and
            the problem; no other exception escapes.
    """
    path = model_file(Path(path))
    data = map_file_bytes(path, what="model file")
    try:
        fmt, arrays, tag = decode(path, data, progress)
        clean = to_gaussians(path, arrays)
    except GaussianFileError:
        raise
    except MemoryError:
        raise GaussianFileError(path, "not enough memory to load this model") from None
    except Exception as e:  # a reader bug must not take the viewer down: report it
        raise GaussianFileError(
            path, f"internal error while reading ({type(e).__name__}: {e})") from e
    model = LoadedModel(clean.gaussians, path, fmt, clean.n_dropped, None, None,
                        clean.n_zero_quats, splat_model=tag)
    model.warnings.extend(load_warnings(clean.n_dropped, clean.n_zero_quats, tag))
    if find_cameras:
        model.cameras, model.cameras_path, cam_warnings = model_cameras(path)
        model.warnings.extend(cam_warnings)
    return model


def model_cameras(path: Path) -> tuple[list[CameraRecord] | None, Path | None, list[str]]:
    """(cameras, cameras.json path, warnings) for a model file: the training cameras
    found beside it or in the INRIA output folder above it; one that cannot be read is a
    warning, not an error."""
    return cameras_beside(path, load_inria_cameras)
