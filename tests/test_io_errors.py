"""Bad model files: every one is a GaussianFileError that names the file and the problem.

Ends with a property-based test (hypothesis) that mutates the real files: truncations,
byte flips in the header and the body, header line edits. Loading must then either
succeed with finite tensors or raise GaussianFileError; nothing else may escape.
"""

from __future__ import annotations

import json
import os
import re
import struct
import zipfile
import zlib

import numpy as np
import pytest
import torch
from conftest import data_dir, data_file
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_io_ply import random_gaussians

from render.io import GaussianFileError, load_model, save_ply


def header_of(fields: list[tuple[str, str]], n: int, fmt: str = "binary_little_endian") -> bytes:
    lines = ["ply", f"format {fmt} 1.0", f"element vertex {n}"]
    lines += [f"property {t} {name}" for t, name in fields]
    return ("\n".join(lines + ["end_header"]) + "\n").encode()


INRIA14 = [("float", p) for p in ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
                                  "scale_0", "scale_1", "scale_2",
                                  "rot_0", "rot_1", "rot_2", "rot_3")]


def expect_error(path, *fragments: str) -> GaussianFileError:
    with pytest.raises(GaussianFileError) as info:
        load_model(path)
    e = info.value
    assert e.path == path and str(e).startswith(f"{path}: ")
    for f in fragments:
        assert f.lower() in e.reason.lower(), (f, e.reason)
    return e


@pytest.fixture
def good(tmp_path):
    """The bytes of a valid small SH-1 INRIA file."""
    return save_ply(random_gaussians(20, 1), tmp_path / "good.ply").read_bytes()


def edit_header(data: bytes, old: bytes, new: bytes) -> bytes:
    end = data.index(b"end_header")
    assert old in data[:end]
    return data[:end].replace(old, new, 1) + data[end:]


def test_error_type_and_message():
    e = GaussianFileError("/a/b.ply", "broken")
    assert isinstance(e, ValueError)
    assert str(e) == "/a/b.ply: broken" and e.reason == "broken" and str(e.path) == "/a/b.ply"


def test_missing_file(tmp_path):
    expect_error(tmp_path / "nope.ply", "not found")


def test_directory(tmp_path):
    out = tmp_path / "output"
    (out / "point_cloud" / "iteration_7000").mkdir(parents=True)
    save_ply(random_gaussians(3, 0), out / "point_cloud" / "iteration_7000" / "point_cloud.ply")
    e = expect_error(out, "directory")
    assert "iteration_7000/point_cloud.ply" in e.reason  # says which file was meant


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path, good):
    path = tmp_path / "secret.ply"
    path.write_bytes(good)
    path.chmod(0)
    expect_error(path, "permission denied")


def test_read_error_is_reported(tmp_path, good, monkeypatch):
    """Whoever runs the tests (root reads anything), a failing read is reported."""
    import render.io.files as files

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    path = tmp_path / "locked.ply"
    path.write_bytes(good)
    monkeypatch.setattr(files, "open", refuse, raising=False)
    expect_error(path, "permission denied")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.ply")
    expect_error(tmp_path / "pipe.ply", "not a regular file")


def test_empty_file(tmp_path):
    (tmp_path / "empty.ply").write_bytes(b"")
    expect_error(tmp_path / "empty.ply", "empty")


def test_not_a_ply(tmp_path):
    (tmp_path / "notes.ply").write_text("these are my notes about splats\n")
    expect_error(tmp_path / "notes.ply", "not a Gaussian-splat model")
    (tmp_path / "image.ply").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    expect_error(tmp_path / "image.ply", "not a Gaussian-splat model")


def test_damaged_magic(tmp_path, good):
    (tmp_path / "m.ply").write_bytes(b"plx" + good[3:])
    expect_error(tmp_path / "m.ply", "damaged PLY")


@pytest.mark.parametrize("cut", [10, 200, -1, -100])
def test_truncated(tmp_path, good, cut):
    (tmp_path / "t.ply").write_bytes(good[:cut])
    expect_error(tmp_path / "t.ply")


def test_truncated_body_says_how_much(tmp_path, good):
    (tmp_path / "t.ply").write_bytes(good[:-5])
    expect_error(tmp_path / "t.ply", "truncated", "20 x vertex")


def test_absurd_element_count_is_refused_before_allocating(tmp_path):
    data = header_of(INRIA14, 10**12) + bytes(1000)
    (tmp_path / "huge.ply").write_bytes(data)
    expect_error(tmp_path / "huge.ply", "1000000000000 x vertex")
    ascii_data = header_of(INRIA14, 10**12, fmt="ascii") + b"1 2 3\n" * 100
    (tmp_path / "huge_ascii.ply").write_bytes(ascii_data)
    expect_error(tmp_path / "huge_ascii.ply", "1000000000000 x vertex")


def test_zero_gaussians(tmp_path):
    (tmp_path / "zero.ply").write_bytes(header_of(INRIA14, 0))
    expect_error(tmp_path / "zero.ply", "zero Gaussians")


def test_missing_property(tmp_path):
    fields = [f for f in INRIA14 if f[1] != "opacity"]
    (tmp_path / "m.ply").write_bytes(header_of(fields, 2) + bytes(2 * 4 * len(fields)))
    expect_error(tmp_path / "m.ply", "lacks opacity")


def test_misnamed_property(tmp_path, good):
    (tmp_path / "m.ply").write_bytes(edit_header(good, b"scale_1", b"scale_y"))
    expect_error(tmp_path / "m.ply", "lacks scale_1")


@pytest.mark.parametrize("count", [1, 8, 10, 27, 48])
def test_wrong_f_rest_count(tmp_path, count):
    fields = INRIA14 + [("float", f"f_rest_{i}") for i in range(count)]
    (tmp_path / "r.ply").write_bytes(header_of(fields, 3) + bytes(3 * 4 * len(fields)))
    expect_error(tmp_path / "r.ply", f"{count} f_rest_* properties", "0, 9, 24 or 45")


def test_f_rest_numbering_gap(tmp_path):
    fields = INRIA14 + [("float", f"f_rest_{i}") for i in range(10) if i != 4]
    (tmp_path / "r.ply").write_bytes(header_of(fields, 3) + bytes(3 * 4 * len(fields)))
    expect_error(tmp_path / "r.ply", "f_rest_4 is missing")


@pytest.mark.parametrize("old,new,fragment", [
    (b"format binary_little_endian 1.0", b"format binary_middle_endian 1.0", "format"),
    (b"property float x", b"property flaot x", "unknown property type 'flaot'"),
    (b"element vertex 20", b"element vertex -3", "negative element count"),
    (b"element vertex 20", b"element vertex 2e1", "not an integer"),
    (b"property float y", b"property float x", "more than once"),
    (b"property float z", b"property list uchar float z", "list"),
    (b"property float z", b"propertee float z", "unknown header keyword"),
])
def test_bad_header_lines(tmp_path, good, old, new, fragment):
    (tmp_path / "h.ply").write_bytes(edit_header(good, old, new))
    expect_error(tmp_path / "h.ply", fragment)


def test_no_vertex_element(tmp_path, good):
    (tmp_path / "v.ply").write_bytes(edit_header(good, b"element vertex", b"element face"))
    expect_error(tmp_path / "v.ply", "no 'vertex' element")


def test_ascii_body_with_junk(tmp_path):
    body = " ".join(["0.5"] * 13 + ["zebra"]) + "\n"
    (tmp_path / "a.ply").write_bytes(header_of(INRIA14, 1, fmt="ascii") + body.encode())
    expect_error(tmp_path / "a.ply", "not numbers")


def test_float64_overflow_rows_are_dropped(tmp_path):
    fields = [("double", n) for _, n in INRIA14]
    rows = np.full((3, 14), 0.5)
    rows[1, 0] = 1e300  # finite in the file, infinite as float32
    (tmp_path / "d.ply").write_bytes(header_of(fields, 3) + rows.astype("<f8").tobytes())
    m = load_model(tmp_path / "d.ply")
    assert m.n_dropped == 1 and len(m.gaussians) == 2


def test_header_without_end(tmp_path):
    (tmp_path / "h.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 1\n")
    expect_error(tmp_path / "h.ply", "end_header")


# -- property-based: mutated real files ---------------------------------------------------------

_WORDS = ["ascii", "binary_big_endian", "binary_little_endian", "f_rest_3", "x", "chunk",
          "packed_position", "element sh 5", "property uchar f_rest_0"]
_TYPES = ["char", "uchar", "short", "ushort", "int", "uint", "float", "double", "float128"]


@st.composite
def mutations(draw, size: int, header_len: int):
    """A list of edits to apply to a file of `size` bytes with a header of `header_len`."""
    ops = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["truncate", "flip_header", "flip_body", "line"]))
        if kind == "truncate":
            ops.append(("truncate", draw(st.integers(0, size - 1))))
        elif kind == "flip_header":
            ops.append(("flip", draw(st.integers(0, header_len - 1)),
                        draw(st.integers(1, 255))))
        elif kind == "flip_body":
            ops.append(("flip", draw(st.integers(header_len, size - 1)),
                        draw(st.integers(1, 255))))
        else:
            ops.append(("line", draw(st.integers(0, 80)), draw(st.sampled_from(
                ["delete", "duplicate", "count", "type", "rename", "junk", "format"])),
                draw(st.integers(-(2**40), 2**63)), draw(st.sampled_from(_TYPES)),
                draw(st.sampled_from(_WORDS) | st.text("abcxyz_019 ", max_size=12))))
    return ops


def apply(data: bytes, ops) -> bytes:
    for op in ops:
        if op[0] == "truncate":
            data = data[: op[1]]
        elif op[0] == "flip":
            if op[1] < len(data):
                b = bytearray(data)
                b[op[1]] ^= op[2]
                data = bytes(b)
        else:
            data = edit_line(data, *op[1:])
    return data


def edit_line(data: bytes, index: int, how: str, number: int, ptype: str, word: str) -> bytes:
    end = data.find(b"end_header")
    if end < 0:
        return data
    lines = data[:end].split(b"\n")
    i = index % len(lines)
    line = lines[i]
    if how == "delete":
        del lines[i]
    elif how == "duplicate":
        lines.insert(i, line)
    elif how == "count":
        lines[i] = re.sub(rb"-?\d+$", str(number).encode(), line) if line.startswith(
            b"element") else f"element vertex {number}".encode()
    elif how == "type":
        parts = line.split()
        if len(parts) == 3 and parts[0] == b"property":
            lines[i] = b"property " + ptype.encode() + b" " + parts[2]
    elif how == "rename":
        parts = line.split()
        if parts:
            lines[i] = b" ".join(parts[:-1] + [word.encode()])
    elif how == "junk":
        lines.insert(i, word.encode())
    elif how == "format":
        lines[i] = b"format " + word.encode() + b" 1.0"
    return b"\n".join(lines) + data[end:]


def check_mutant(path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        m = load_model(path)
    except GaussianFileError as e:
        assert e.path == path and str(e).startswith(str(path))
        assert "internal error" not in e.reason, e.reason  # the safety net was not needed
        return
    g = m.gaussians
    assert len(g) > 0
    for name, t in g.tensors().items():
        assert t.dtype == torch.float32 and torch.isfinite(t).all(), name
    assert torch.allclose(g.quats.norm(dim=1), torch.ones(len(g)), atol=1e-5)


def _fuzz(real_name: str, tmp_path_factory, data_ops) -> None:
    data = data_file(real_name).read_bytes()
    folder = tmp_path_factory.mktemp("fuzz")
    check_mutant(folder / real_name, apply(data, data_ops))


def _strategy(real_name: str):
    path = data_dir() / real_name
    if not path.exists():
        return st.just([])  # the test body skips with the reason
    data = path.read_bytes()
    return mutations(len(data), data.index(b"end_header") + 11)


_FUZZ = settings(max_examples=75, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.function_scoped_fixture,
                                        HealthCheck.too_slow, HealthCheck.data_too_large])


@_FUZZ
@given(ops=_strategy("donut_mipsplat_sh0.ply"))
def test_mutated_donut_never_raises_anything_else(tmp_path_factory, ops):
    _fuzz("donut_mipsplat_sh0.ply", tmp_path_factory, ops)


@_FUZZ
@given(ops=_strategy("inria_iter7000_sh3.ply"))
def test_mutated_sh3_never_raises_anything_else(tmp_path_factory, ops):
    _fuzz("inria_iter7000_sh3.ply", tmp_path_factory, ops)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(blob=st.binary(min_size=1, max_size=4096))
def test_random_bytes_never_raise_anything_else(tmp_path_factory, blob):
    folder = tmp_path_factory.mktemp("blob")
    for name in ("x.ply", "x.splat"):
        check_mutant(folder / name, blob)
        check_mutant(folder / name, b"ply\nformat binary_little_endian 1.0\n" + blob)
    check_mutant(folder / "x.spz", b"NGSP" + blob)  # .spz magic, v4 body
    check_mutant(folder / "y.spz", zlib.compress(b"NGSP" + blob, wbits=31))  # v2/v3 gzip


def test_mutation_helpers_do_edit(tmp_path):
    """The fuzz edits must reach the loader as real changes (else the test proves nothing)."""
    data = save_ply(random_gaussians(4, 0), tmp_path / "a.ply").read_bytes()
    assert b"element vertex 999" in edit_line(data, 2, "count", 999, "float", "")
    assert b"property double y" in edit_line(data, 4, "type", 0, "double", "")
    assert apply(data, [("truncate", 10)]) == data[:10]
    flipped = apply(data, [("flip", len(data) - 1, 0x80)])  # the sign bit of the last float
    assert struct.unpack("<f", flipped[-4:])[0] == -struct.unpack("<f", data[-4:])[0]


# -- property-based: mutated .spz and SOG files ------------------------------------------------

@st.composite
def binary_mutations(draw, size: int, header_len: int):
    """Truncations and byte flips, in the header or the body, of a binary file."""
    ops = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["truncate", "flip_header", "flip_body"]))
        if kind == "truncate":
            ops.append(("truncate", draw(st.integers(0, size - 1))))
        else:
            lo, hi = (0, header_len - 1) if kind == "flip_header" else (header_len, size - 1)
            ops.append(("flip", draw(st.integers(lo, hi)), draw(st.integers(1, 255))))
    return ops


def _binary_strategy(real_name: str, header_len: int):
    path = data_dir() / real_name
    if not path.exists():
        return st.just([])
    return binary_mutations(path.stat().st_size, header_len)


_FUZZ_SMALL = settings(_FUZZ, max_examples=40)


@_FUZZ_SMALL
@given(ops=_binary_strategy("inria_iter7000_sh3.spz", 32 + 6 * 16))
def test_mutated_spz_never_raises_anything_else(tmp_path_factory, ops):
    _fuzz("inria_iter7000_sh3.spz", tmp_path_factory, ops)


@_FUZZ_SMALL
@given(ops=_binary_strategy("inria_iter7000_sh3.sog", 512))
def test_mutated_sog_zip_never_raises_anything_else(tmp_path_factory, ops):
    _fuzz("inria_iter7000_sh3.sog", tmp_path_factory, ops)


_META_KEYS = [("count",), ("version",), ("model",), ("means", "mins"), ("means", "maxs"),
              ("means", "files"), ("scales", "codebook"), ("quats", "files"),
              ("sh0", "codebook"), ("shN", "count"), ("shN", "bands"), ("shN", "codebook"),
              ("shN", "files"), ("shN",), ("sh0",)]
_META_VALUES = st.one_of(
    st.integers(-(2**40), 2**63), st.floats(allow_nan=True, allow_infinity=True),
    st.none(), st.text(max_size=8), st.just([]), st.just({}),
    st.lists(st.integers(-300, 2**40), max_size=4), st.just("means_l.webp"),
    st.just(["quats.webp", "quats.webp"]), st.just(["shN_labels.webp", "shN_centroids.webp"]))


@st.composite
def meta_mutations(draw):
    """Edits of a SOG meta.json: a key set to another value or deleted, or bytes flipped."""
    ops = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["set", "delete", "flip"]))
        if kind == "flip":
            ops.append(("flip", draw(st.integers(0, 20_000)), draw(st.integers(1, 255))))
        else:
            ops.append((kind, draw(st.sampled_from(_META_KEYS)), draw(_META_VALUES)))
    return ops


def apply_meta(text: bytes, ops) -> bytes:
    meta = json.loads(text)
    flips = []
    for op in ops:
        if op[0] == "flip":
            flips.append(op)
            continue
        *parents, key = op[1]
        node = meta
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            continue
        if op[0] == "delete":
            node.pop(key, None)
        else:
            node[key] = op[2]
    return apply(json.dumps(meta).encode(), flips)


@_FUZZ_SMALL
@given(ops=meta_mutations())
def test_mutated_sog_meta_never_raises_anything_else(tmp_path_factory, ops):
    src = data_file("inria_iter7000_sh3.sog")
    folder = tmp_path_factory.mktemp("sogmeta")
    with zipfile.ZipFile(src) as z:
        files = {i.filename: z.read(i) for i in z.infolist()}
    files["meta.json"] = apply_meta(files["meta.json"], ops)
    with zipfile.ZipFile(folder / "m.sog", "w") as z:
        for name, blob in files.items():
            z.writestr(name, blob)
    check_mutant(folder / "m.sog", (folder / "m.sog").read_bytes())


def test_meta_mutation_helper_does_edit():
    meta = b'{"count": 5, "means": {"mins": [0, 0, 0]}}'
    assert json.loads(apply_meta(meta, [("set", ("count",), 7)]))["count"] == 7
    edited = json.loads(apply_meta(meta, [("delete", ("means", "mins"), None)]))
    assert "mins" not in edited["means"]
