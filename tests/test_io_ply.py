"""INRIA .ply reading and writing: the real files, exact round trips, layout variants."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import data_file
from plyfile import PlyData, PlyElement

from render.gaussians import SH_C0, Gaussians
from render.io import GaussianFileError, load_model, save_ply


def random_gaussians(n: int, degree: int, seed: int = 0) -> Gaussians:
    """A set with every parameter random (quats of unit length, as the loader makes them)."""
    gen = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2
    return Gaussians(
        means=torch.randn(n, 3, generator=gen) * 3,
        quats=torch.nn.functional.normalize(torch.randn(n, 4, generator=gen), dim=-1),
        log_scales=torch.randn(n, 3, generator=gen) - 3,
        opacity_logits=torch.randn(n, generator=gen) * 2,
        sh=torch.randn(n, k, 3, generator=gen),
    )


def assert_same(a: Gaussians, b: Gaussians) -> None:
    for name, t in a.tensors().items():
        u = b.tensors()[name]
        assert u.dtype == torch.float32 and u.device.type == "cpu"
        assert torch.equal(t, u), f"{name} differs"


def plyfile_vertex(path) -> np.ndarray:
    """The vertex rows of a file as an independent reader (plyfile) sees them."""
    return PlyData.read(str(path))["vertex"].data


def write_plyfile(rows: np.ndarray, path, text: bool = False, byte_order: str = "<") -> None:
    PlyData([PlyElement.describe(rows, "vertex")], text=text,
            byte_order=byte_order).write(str(path))


# -- the real files ----------------------------------------------------------------------------

def test_real_sh3_file_loads_as_inria_writes_it():
    path = data_file("inria_iter7000_sh3.ply")
    m = load_model(path)
    g = m.gaussians
    assert m.format == "inria_ply" and m.path == path
    assert len(g) == 9080 and g.sh_degree == 3 and g.sh.shape == (9080, 16, 3)
    assert m.n_dropped == 0 and m.cameras is None
    norms = g.quats.norm(dim=1)
    assert torch.all((norms - 1).abs() < 1e-5)
    # against an independent reader: f_rest is channel-grouped (all R, then G, then B)
    v = plyfile_vertex(path)
    rest = np.stack([v[f"f_rest_{i}"] for i in range(45)], axis=1)
    for c in range(3):
        assert np.array_equal(g.sh[:, 0, c].numpy(), v[f"f_dc_{c}"])
        assert np.array_equal(g.sh[:, 1:, c].numpy(), rest[:, c * 15:(c + 1) * 15])
    assert np.array_equal(g.means.numpy(), np.stack([v["x"], v["y"], v["z"]], axis=1))
    assert np.array_equal(g.opacity_logits.numpy(), v["opacity"])
    assert np.array_equal(g.log_scales[:, 2].numpy(), v["scale_2"])
    raw_q = np.stack([v[f"rot_{i}"] for i in range(4)], axis=1).astype(np.float64)
    # the file's quaternions are not unit length; the loader normalises them
    assert np.abs(np.linalg.norm(raw_q, axis=1) - 1).max() > 0.1
    expect = raw_q / np.linalg.norm(raw_q, axis=1, keepdims=True)
    assert np.abs(g.quats.numpy() - expect).max() < 1e-6
    assert g.extent() > 100  # the +-400 scene


def test_real_donut_loads():
    m = load_model(data_file("donut_mipsplat_sh0.ply"))
    g = m.gaussians
    assert len(g) == 45624 and g.sh_degree == 0 and m.n_dropped == 0
    assert all(torch.isfinite(t).all() for t in g.tensors().values())
    lo, hi = g.bounds()
    assert torch.all(hi - lo < 0.3) and torch.all(hi - lo > 0.05)  # extent about 0.2 units
    colour = 0.5 + SH_C0 * g.sh[:, 0]
    assert 0.2 < colour.mean() < 0.9  # a real, coloured model, not zeros


# -- exact round trips ---------------------------------------------------------------------------

@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_save_load_is_exact(tmp_path, degree):
    g = random_gaussians(500, degree, seed=degree)
    path = save_ply(g, tmp_path / "out" / "model.ply")
    m = load_model(path)
    assert m.format == "inria_ply" and m.n_dropped == 0
    assert_same(g, m.gaussians)
    # the layout other tools expect: INRIA property order, 62 floats at degree 3
    names = [p.name for p in PlyData.read(str(path))["vertex"].properties]
    assert names[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    assert names[-8:] == ["opacity", "scale_0", "scale_1", "scale_2",
                          "rot_0", "rot_1", "rot_2", "rot_3"]
    assert len(names) == 17 + 3 * ((degree + 1) ** 2 - 1)
    assert list(tmp_path.joinpath("out").iterdir()) == [path]  # no temporary file left


def test_real_file_round_trips_exactly(tmp_path):
    g = load_model(data_file("inria_iter7000_sh3.ply")).gaussians
    assert_same(g, load_model(save_ply(g, tmp_path / "again.ply")).gaussians)


def test_saved_file_reads_in_plyfile_with_channel_grouping(tmp_path):
    g = random_gaussians(50, 2)
    v = plyfile_vertex(save_ply(g, tmp_path / "g.ply"))
    # red's 8 higher-order coefficients come first, then green's, then blue's
    assert np.array_equal(v["f_rest_0"], g.sh[:, 1, 0].numpy())
    assert np.array_equal(v["f_rest_7"], g.sh[:, 8, 0].numpy())
    assert np.array_equal(v["f_rest_8"], g.sh[:, 1, 1].numpy())
    assert np.array_equal(v["f_rest_23"], g.sh[:, 8, 2].numpy())


def test_save_accepts_gpu_style_inputs(tmp_path):
    """Tensors that need grad (a model being trained) save without fuss."""
    g = random_gaussians(10, 1)
    g = Gaussians(**{k: v.clone().requires_grad_(True) for k, v in g.tensors().items()})
    assert_same(g.detach(), load_model(save_ply(g, tmp_path / "t.ply")).gaussians)


def test_save_replaces_an_existing_file(tmp_path):
    path = tmp_path / "m.ply"
    save_ply(random_gaussians(10, 0, seed=1), path)
    g = random_gaussians(20, 1, seed=2)
    save_ply(g, path)
    assert_same(g, load_model(path).gaussians)


# -- layout variants made by plyfile from the real file --------------------------------------------

@pytest.fixture(scope="module")
def sh3_rows():
    return plyfile_vertex(data_file("inria_iter7000_sh3.ply"))


@pytest.fixture(scope="module")
def sh3_model():
    return load_model(data_file("inria_iter7000_sh3.ply")).gaussians


def test_big_endian_variant(tmp_path, sh3_rows, sh3_model):
    path = tmp_path / "be.ply"
    write_plyfile(sh3_rows, path, byte_order=">")
    assert b"binary_big_endian" in path.read_bytes()[:100]
    assert_same(sh3_model, load_model(path).gaussians)


def test_ascii_variant(tmp_path, sh3_rows, sh3_model):
    path = tmp_path / "ascii.ply"
    write_plyfile(sh3_rows[:1500], path, text=True)
    g = load_model(path).gaussians
    assert len(g) == 1500 and g.sh_degree == 3
    ref = sh3_model.subset(torch.arange(1500))
    for name, t in ref.tensors().items():  # plyfile prints floats with enough digits
        assert torch.allclose(g.tensors()[name], t, rtol=1e-6, atol=1e-6), name


def test_float64_without_normals_with_extras_in_any_order(tmp_path, sh3_rows, sh3_model):
    names = [n for n in sh3_rows.dtype.names if n not in ("nx", "ny", "nz")]
    order = names[::-1]  # reversed property order
    dt = [(n, "<f8") for n in order] + [("filter_3D", "<f4"), ("label", "u1")]
    rows = np.zeros(len(sh3_rows), dtype=dt)
    for n in order:
        rows[n] = sh3_rows[n]
    rows["label"] = 7
    path = tmp_path / "f64.ply"
    write_plyfile(rows, path)
    m = load_model(path)
    assert_same(sh3_model, m.gaussians)  # float32 -> float64 -> float32 is exact


def test_windows_line_endings_in_header(tmp_path):
    g = random_gaussians(30, 1)
    data = save_ply(g, tmp_path / "a.ply").read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    crlf = data[:end].replace(b"\n", b"\r\n") + data[end:]
    (tmp_path / "crlf.ply").write_bytes(crlf)
    assert_same(g, load_model(tmp_path / "crlf.ply").gaussians)


def test_detected_from_content_not_name(tmp_path):
    g = random_gaussians(40, 0)
    data = save_ply(g, tmp_path / "a.ply").read_bytes()
    (tmp_path / "model.splat").write_bytes(data)
    m = load_model(tmp_path / "model.splat")
    assert m.format == "inria_ply"
    assert_same(g, m.gaussians)


# -- values the loader fixes or drops --------------------------------------------------------------

def test_unnormalised_and_zero_quaternions(tmp_path):
    g = random_gaussians(4, 0)
    q = torch.tensor([[2.0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1], [0, -3, 0, 4]])
    g = Gaussians(g.means, q, g.log_scales, g.opacity_logits, g.sh)
    m = load_model(save_ply(g, tmp_path / "q.ply"))
    expect = torch.tensor([[1.0, 0, 0, 0], [1, 0, 0, 0], [0.5, 0.5, 0.5, 0.5], [0, -0.6, 0, 0.8]])
    assert torch.allclose(m.gaussians.quats, expect, atol=1e-7)
    assert m.n_zero_quats == 1 and m.n_dropped == 0
    assert any("zero rotation" in w for w in m.warnings)


def test_nan_and_inf_rows_are_dropped_and_counted(tmp_path):
    g = random_gaussians(10, 1)
    bad = g.clone()
    bad.means[2, 1] = float("nan")
    bad.sh[5, 3, 2] = float("inf")
    bad.opacity_logits[7] = -float("inf")
    m = load_model(save_ply(bad, tmp_path / "nan.ply"))
    assert m.n_dropped == 3 and len(m.gaussians) == 7
    keep = torch.tensor([i not in (2, 5, 7) for i in range(10)])
    assert_same(g.subset(keep), m.gaussians)
    assert any("3 Gaussians" in w for w in m.warnings)


def test_all_rows_invalid_is_an_error(tmp_path):
    g = random_gaussians(5, 0)
    g.log_scales[:, 0] = float("nan")
    path = save_ply(g, tmp_path / "allnan.ply")
    with pytest.raises(GaussianFileError, match="all 5 Gaussians"):
        load_model(path)


def test_other_elements_and_comments_are_ignored(tmp_path, sh3_rows, sh3_model):
    """A mesh-style face element (with list properties) after the vertices does not matter."""
    faces = np.array([([0, 1, 2],), ([2, 3, 4, 5],)], dtype=[("vertex_indices", "O")])
    path = tmp_path / "mesh.ply"
    PlyData([PlyElement.describe(sh3_rows, "vertex"),
             PlyElement.describe(faces, "face", len_types={"vertex_indices": "u1"},
                                 val_types={"vertex_indices": "i4"})],
            comments=["made by a test"], obj_info=["x"]).write(str(path))
    assert b"property list uchar int vertex_indices" in path.read_bytes()[:4000]
    assert_same(sh3_model, load_model(path).gaussians)
    # before the vertices, a list element cannot be skipped in a binary file: a clear error
    path2 = tmp_path / "face_first.ply"
    PlyData([PlyElement.describe(faces, "face", len_types={"vertex_indices": "u1"},
                                 val_types={"vertex_indices": "i4"}),
             PlyElement.describe(sh3_rows[:10], "vertex")]).write(str(path2))
    with pytest.raises(GaussianFileError, match="list properties"):
        load_model(path2)
