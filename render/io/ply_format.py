"""A small, strict reader and writer for the PLY container (ASCII and binary, both endians).

Gaussian-splat files are PLY files with one or more fixed-size elements. This module
knows nothing about Gaussians: it parses the header into elements and properties and
returns each wanted element as columns of numpy arrays. Everything it cannot read
becomes a :class:`GaussianFileError` naming the file; sizes declared in the header are
checked against the bytes actually present before anything is allocated, so a header
that claims 10^12 vertices in a 1 kB file is refused at once.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from render.io.errors import GaussianFileError

# PLY scalar type names (both the original and the sized spellings) -> numpy type codes.
PLY_TYPES: dict[str, str] = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
# numpy type code -> the PLY name writers use.
PLY_NAMES: dict[str, str] = {
    "i1": "char", "u1": "uchar", "i2": "short", "u2": "ushort",
    "i4": "int", "u4": "uint", "f4": "float", "f8": "double",
}
FORMATS = ("ascii", "binary_little_endian", "binary_big_endian")
MAX_HEADER_BYTES = 1 << 20  # a real header is a few kB; anything bigger is not a PLY header


@dataclass
class PlyProperty:
    """One property of an element: a scalar of numpy type `dtype` ("f4", "u1", ...),
    or a list (count type `count_dtype`, item type `dtype`)."""

    name: str
    dtype: str
    count_dtype: str | None = None

    @property
    def is_list(self) -> bool:
        return self.count_dtype is not None


@dataclass
class PlyElement:
    """An element as the header declares it: `count` rows of `properties`."""

    name: str
    count: int
    properties: list[PlyProperty] = field(default_factory=list)

    @property
    def has_list(self) -> bool:
        return any(p.is_list for p in self.properties)

    @property
    def property_names(self) -> list[str]:
        return [p.name for p in self.properties]

    def row_bytes(self) -> int:
        """Bytes per row in a binary file (fixed-size elements only)."""
        return sum(np.dtype(p.dtype).itemsize for p in self.properties)


@dataclass
class PlyHeader:
    """A parsed header: the storage format, the elements in file order, the comments,
    and the byte offset where the body starts."""

    format: str
    elements: list[PlyElement]
    comments: list[str]
    data_offset: int

    def element(self, name: str) -> PlyElement | None:
        for e in self.elements:
            if e.name == name:
                return e
        return None

    @property
    def byte_order(self) -> str:
        return ">" if self.format == "binary_big_endian" else "<"


def is_ply(data: bytes) -> bool:
    """Whether the bytes start with the PLY magic line."""
    head = data[:5]  # a slice, so that a memory map works as well as bytes
    return head.startswith(b"ply\n") or head.startswith(b"ply\r\n")


def parse_header(path: Path, data: bytes) -> PlyHeader:
    """Parse the PLY header at the start of `data` (the whole file's bytes)."""
    if not is_ply(data):
        raise GaussianFileError(path, "not a PLY file (it does not start with the 'ply' line)")
    end = data.find(b"end_header", 0, MAX_HEADER_BYTES)
    if end < 0:
        why = ("the header has no 'end_header' line" if len(data) < MAX_HEADER_BYTES
               else f"no 'end_header' in the first {MAX_HEADER_BYTES} bytes")
        raise GaussianFileError(path, f"not a valid PLY file: {why}")
    # the body starts after the end_header line's newline (\n or \r\n)
    nl = data.find(b"\n", end)
    if nl < 0:
        raise GaussianFileError(path, "truncated PLY file: it ends right after 'end_header'")
    if data[end:nl].rstrip(b"\r") != b"end_header":
        raise GaussianFileError(path, "malformed PLY header: text after 'end_header'")
    text = data[:end].decode("utf-8", errors="replace")
    lines = [ln.strip() for ln in text.replace("\r", "").split("\n")]

    fmt: str | None = None
    elements: list[PlyElement] = []
    comments: list[str] = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        words = line.split()
        key = words[0]
        where = f"PLY header line {lineno} ({line[:60]!r})"
        if key in ("comment", "obj_info"):
            comments.append(line[len(key):].strip())
        elif key == "format":
            if fmt is not None:
                raise GaussianFileError(path, f"{where}: a second 'format' line")
            if len(words) != 3 or words[1] not in FORMATS:
                raise GaussianFileError(
                    path, f"{where}: format must be one of {', '.join(FORMATS)} with a version")
            if words[2] not in ("1.0", "1"):
                raise GaussianFileError(path, f"{where}: unsupported PLY version {words[2]}")
            fmt = words[1]
        elif key == "element":
            if len(words) != 3:
                raise GaussianFileError(path, f"{where}: expected 'element NAME COUNT'")
            try:
                count = int(words[2])
            except ValueError:
                raise GaussianFileError(
                    path, f"{where}: element count {words[2]!r} is not an integer") from None
            if count < 0:
                raise GaussianFileError(path, f"{where}: negative element count {count}")
            if any(e.name == words[1] for e in elements):
                raise GaussianFileError(path, f"{where}: element {words[1]!r} declared twice")
            elements.append(PlyElement(words[1], count))
        elif key == "property":
            if not elements:
                raise GaussianFileError(path, f"{where}: property before any element")
            elements[-1].properties.append(_parse_property(path, where, words))
        else:
            raise GaussianFileError(path, f"{where}: unknown header keyword {key!r}")
    if fmt is None:
        raise GaussianFileError(path, "malformed PLY header: no 'format' line")
    for e in elements:
        dup = sorted(n for n, k in Counter(e.property_names).items() if k > 1)
        if dup:
            raise GaussianFileError(
                path, f"element {e.name!r} declares property {dup[0]!r} more than once")
    return PlyHeader(fmt, elements, comments, nl + 1)


def _parse_property(path: Path, where: str, words: list[str]) -> PlyProperty:
    if len(words) >= 2 and words[1] == "list":
        if len(words) != 5:
            raise GaussianFileError(path, f"{where}: expected 'property list COUNT ITEM NAME'")
        count_t, item_t = PLY_TYPES.get(words[2]), PLY_TYPES.get(words[3])
        if count_t is None or item_t is None:
            bad = words[2] if count_t is None else words[3]
            raise GaussianFileError(path, f"{where}: unknown property type {bad!r}")
        if count_t[0] == "f":
            raise GaussianFileError(path, f"{where}: a list count must be an integer type")
        return PlyProperty(words[4], item_t, count_t)
    if len(words) != 3:
        raise GaussianFileError(path, f"{where}: expected 'property TYPE NAME'")
    t = PLY_TYPES.get(words[1])
    if t is None:
        raise GaussianFileError(path, f"{where}: unknown property type {words[1]!r}")
    return PlyProperty(words[2], t)


def read_elements(
    path: Path, header: PlyHeader, data: bytes, wanted: Iterable[str]
) -> dict[str, dict[str, np.ndarray]]:
    """Read the wanted elements of the body as columns: {element: {property: [count]}}.

    Elements before the last wanted one are skipped (they must have fixed-size rows in a
    binary file); elements after it are never looked at. Binary columns are read-only
    views into `data`, in the file's byte order; ASCII columns are parsed arrays.
    """
    wanted = set(wanted)
    missing = wanted - {e.name for e in header.elements}
    if missing:
        raise GaussianFileError(path, f"the PLY has no {sorted(missing)[0]!r} element")
    last = max(i for i, e in enumerate(header.elements) if e.name in wanted)
    needed = header.elements[: last + 1]
    for e in needed:
        if e.has_list:
            raise GaussianFileError(
                path, f"element {e.name!r} has list properties, which a Gaussian-splat file "
                "does not use and this reader does not support before the Gaussians")
    if header.format == "ascii":
        return _read_ascii(path, header, data, needed, wanted)
    return _read_binary(path, header, data, needed, wanted)


def _read_binary(path, header, data, needed, wanted):
    order = header.byte_order
    offset = header.data_offset
    # check the sizes with Python integers first: nothing is allocated for absurd counts
    total = sum(e.count * e.row_bytes() for e in needed)
    available = len(data) - offset
    if total > available:
        counts = ", ".join(f"{e.count} x {e.name}" for e in needed)
        raise GaussianFileError(
            path, f"truncated or inconsistent PLY: the header declares {counts} "
            f"({total} bytes) but only {available} bytes follow the header")
    out = {}
    for e in needed:
        nbytes = e.count * e.row_bytes()
        if e.name in wanted:
            if e.properties:
                dt = np.dtype([(p.name, order + p.dtype) for p in e.properties])
                rows = np.frombuffer(data, dtype=dt, count=e.count, offset=offset)
                out[e.name] = {p.name: rows[p.name] for p in e.properties}
            else:
                out[e.name] = {}
        offset += nbytes
    return out


def _read_ascii(path, header, data, needed, wanted):
    body = data[header.data_offset:]
    n_tokens = sum(e.count * len(e.properties) for e in needed)
    # every value takes at least one character and one separator
    if n_tokens > len(body) // 2 + 1:
        counts = ", ".join(f"{e.count} x {e.name}" for e in needed)
        raise GaussianFileError(
            path, f"truncated or inconsistent ASCII PLY: the header declares {counts} "
            f"({n_tokens} values) but only {len(body)} bytes follow the header")
    tokens = body.split(None, n_tokens)[:n_tokens]  # what follows is not our business
    if len(tokens) < n_tokens:
        raise GaussianFileError(
            path, f"truncated ASCII PLY: {n_tokens} values declared, {len(tokens)} present")
    values = _parse_numbers(path, b" ".join(tokens))
    if values.size != n_tokens:
        raise GaussianFileError(path, "ASCII PLY: the body holds values that are not numbers")
    out = {}
    pos = 0
    for e in needed:
        n = e.count * len(e.properties)
        if e.name in wanted:
            table = values[pos:pos + n].reshape(e.count, len(e.properties))
            out[e.name] = {p.name: _typed_column(path, e, p, table[:, j])
                           for j, p in enumerate(e.properties)}
        pos += n
    return out


def _parse_numbers(path: Path, text: bytes) -> np.ndarray:
    """Whitespace-separated numbers -> float64 [M], in C (no Python loop per value)."""
    with warnings.catch_warnings():
        # numpy < 2.3 warns and stops at the first bad token; make that an error too
        warnings.simplefilter("error", DeprecationWarning)
        try:
            return np.fromstring(text.decode("latin-1"), dtype=np.float64, sep=" ")
        except (ValueError, DeprecationWarning):
            raise GaussianFileError(
                path, "ASCII PLY: the body holds values that are not numbers") from None


def _typed_column(path, element, prop, values: np.ndarray) -> np.ndarray:
    """A float64 column of an ASCII body cast to the property's declared type."""
    if prop.dtype[0] == "f":
        with np.errstate(over="ignore", invalid="ignore"):
            return values.astype(prop.dtype)
    info = np.iinfo(prop.dtype)
    if not (np.all(np.isfinite(values)) and np.all(values == np.round(values))
            and values.min(initial=info.min) >= info.min
            and values.max(initial=info.max) <= info.max):
        raise GaussianFileError(
            path, f"ASCII PLY: {element.name}.{prop.name} holds a value that is not a "
            f"{PLY_NAMES[prop.dtype]}")
    return values.astype(prop.dtype)


# -- writing ----------------------------------------------------------------------------------

def ply_bytes(elements: list[tuple[str, np.ndarray]], comments: Iterable[str] = ()) -> bytes:
    """A binary little-endian PLY file holding the given elements.

    Args:
        elements: (name, rows) pairs in file order; rows is a structured array whose
            fields are the properties (scalar types only).
        comments: header comment lines.
    """
    lines = ["ply", "format binary_little_endian 1.0"]
    lines += [f"comment {c}" for c in comments]
    bodies = []
    for name, rows in elements:
        lines.append(f"element {name} {len(rows)}")
        le = []
        for fname in rows.dtype.names:
            ft = rows.dtype[fname]
            code = f"{ft.kind}{ft.itemsize}"
            lines.append(f"property {PLY_NAMES[code]} {fname}")
            le.append((fname, "<" + code))
        bodies.append(np.ascontiguousarray(rows, dtype=np.dtype(le)).tobytes())
    lines.append("end_header")
    return ("\n".join(lines) + "\n").encode("ascii") + b"".join(bodies)
