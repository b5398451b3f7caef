"""A large INRIA .ply (a few hundred thousand rows, memory-mapped): what the block decoder
reads, what `mipview info`'s scan reports, and a model too big for memory refused."""

from __future__ import annotations

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from render.io import GaussianFileError, load_model
from render.io.files import MAP_MIN_BYTES
from render.io.inria_ply import inria_property_names
from render.io.limits import MEMORY_LIMIT_ENV as LIMIT_ENV
from render.io.summary import model_summary

N_ROWS = 300_000


@pytest.fixture(scope="module")
def big_ply(tmp_path_factory):
    """An SH-3 INRIA .ply of N_ROWS random rows (~74 MB), with 3 NaN/Inf rows and 2 zero
    rotations; written by plyfile, an independent writer."""
    names = inria_property_names(3)
    rng = np.random.default_rng(7)
    table = rng.standard_normal((N_ROWS, len(names)), dtype=np.float32)
    col = {p: j for j, p in enumerate(names)}
    table[10, col["f_rest_44"]] = np.nan
    table[20_000, col["x"]] = np.inf
    table[N_ROWS - 1, col["opacity"]] = -np.inf
    for r in (5, 123_456):
        for i in range(4):
            table[r, col[f"rot_{i}"]] = 0.0
    rows = table.view(np.dtype([(p, "<f4") for p in names])).reshape(N_ROWS)
    path = tmp_path_factory.mktemp("big") / "big.ply"
    PlyData([PlyElement.describe(rows, "vertex")]).write(str(path))
    assert path.stat().st_size > MAP_MIN_BYTES  # the memory-mapped path is the one tested
    return path, table, names


def test_big_file_decodes_to_the_files_values(big_ply):
    path, table, names = big_ply
    m = load_model(path)
    g = m.gaussians
    keep = np.isfinite(table).all(axis=1)
    t = table[keep]
    col = {p: j for j, p in enumerate(names)}
    assert len(g) == N_ROWS - 3 and m.n_dropped == 3 and m.n_zero_quats == 2
    assert g.sh_degree == 3
    assert np.array_equal(g.means.numpy(), t[:, [col["x"], col["y"], col["z"]]])
    assert np.array_equal(g.log_scales.numpy(), t[:, [col[f"scale_{i}"] for i in range(3)]])
    assert np.array_equal(g.opacity_logits.numpy(), t[:, col["opacity"]])
    sh = g.sh.numpy()
    for c in range(3):
        assert np.array_equal(sh[:, 0, c], t[:, col[f"f_dc_{c}"]])
        for i in range(15):  # channel-major in the file
            assert np.array_equal(sh[:, 1 + i, c], t[:, col[f"f_rest_{c * 15 + i}"]])
    q = g.quats.numpy()
    assert np.allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-6)


def test_info_scan_matches_the_full_load(big_ply):
    path, _, _ = big_ply
    assert model_summary(path) == load_model(path).summary()


def test_info_scan_drops_absurd_rows_and_reads_the_tag_as_the_load_does(tmp_path):
    """Rows beyond to_gaussians' bounds (a centre at 1e9, a log-scale of 50, an SH
    coefficient of 1e8) are dropped by both, and both report the file's tag."""
    from render.io.splat_model import ply_comments_for

    names = inria_property_names(3)
    n = 40_000  # past MAP_MIN_BYTES: the scan's memory-mapped path
    table = np.random.default_rng(3).standard_normal((n, len(names)), dtype=np.float32)
    col = {p: j for j, p in enumerate(names)}
    table[1, col["x"]] = 1e9
    table[2, col["scale_1"]] = 50.0
    table[3, col["f_rest_7"]] = 1e8
    rows = table.view(np.dtype([(p, "<f4") for p in names])).reshape(n)
    path = tmp_path / "tagged.ply"
    PlyData([PlyElement.describe(rows, "vertex")],
            comments=ply_comments_for("antialiased")).write(str(path))
    summary = model_summary(path)
    assert summary == load_model(path).summary()
    assert summary["n_dropped"] == 3 and summary["gaussians"] == n - 3
    assert summary["model"] == "antialiased" and summary["antialias"] == "mip"


def test_a_model_too_big_for_memory_is_refused_before_allocation(big_ply, monkeypatch):
    path, _, _ = big_ply
    monkeypatch.setenv(LIMIT_ENV, str(10 * 2**20))  # 10 MiB free; the set needs ~61 MB
    with pytest.raises(GaussianFileError) as e:
        load_model(path)
    msg = str(e.value)
    assert str(path) in msg and f"{N_ROWS:,} Gaussians" in msg
    assert "need 0.07 GiB" in msg and "memory" in msg


def test_an_ascii_model_too_big_is_refused_before_its_text_is_parsed(tmp_path, monkeypatch):
    from render.io.ply_format import parse_header

    path = tmp_path / "text.ply"
    names = inria_property_names(0)
    rows = np.zeros(2000, np.dtype([(p, "<f4") for p in names]))
    PlyData([PlyElement.describe(rows, "vertex")], text=True).write(str(path))
    assert len(load_model(path).gaussians) == 2000  # fits without a limit
    # the arrays alone need 2000 x 14 x 4 = 112 kB; parsing the text ~2 MB more
    monkeypatch.setenv(LIMIT_ENV, str(500_000))
    with pytest.raises(GaussianFileError) as e:
        load_model(path)
    assert "2,000 Gaussians" in str(e.value) and str(path) in str(e.value)
    assert parse_header(path, path.read_bytes()).format == "ascii"
