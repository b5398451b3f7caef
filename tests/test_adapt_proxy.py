"""adapt.proxy: the voxel moment merge keeps the mass and centre of what it merges, leaves
large Gaussians alone, reaches its target, and caches the proxy beside the model."""

from __future__ import annotations

import os

import torch
from viewer_support import tiny_scene

from adapt.merge import footprint_mass
from adapt.proxy import (
    _cell_keys,
    build_proxy,
    cached_proxy_path,
    cluster_merge,
    load_or_build_proxy,
)
from render.gaussians import Gaussians
from render.io import save_ply


def test_cluster_merge_gives_each_cell_its_mass_weighted_moments():
    g = tiny_scene()
    cell = 0.5
    p = cluster_merge(g, cell)  # every card splat (sigma 0.05) is smaller than a cell
    keys = _cell_keys(g.means, cell)
    cells = torch.unique(keys)
    assert len(p) == len(cells) < len(g) // 4
    m = footprint_mass(g)
    for key in cells:  # each merged Gaussian: its cell's mass-weighted centre and colour
        inside = keys == key
        w = m[inside] / m[inside].sum()
        centre = (w[:, None] * g.means[inside]).sum(0)
        j = int(torch.argmin((p.means - centre).norm(dim=1)))
        assert torch.allclose(p.means[j], centre, atol=1e-5)
        assert torch.allclose(p.sh[j], (w[:, None, None] * g.sh[inside]).sum(0), atol=1e-5)
    assert torch.allclose(p.quats.norm(dim=1), torch.ones(len(p)), atol=1e-5)
    # a merged splat spans its members: at least as wide as the widest of them
    assert (p.log_scales.max(dim=1).values >= g.log_scales.max() - 1e-4).all()


def test_gaussians_larger_than_a_cell_stay_as_they_are():
    g = tiny_scene()
    big = Gaussians.from_colors(torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[1.0, 0, 0]]),
                                torch.tensor([[2.0, 2.0, 0.1]]), torch.tensor([0.8]))
    both = Gaussians(*[torch.cat([getattr(big, f), getattr(g, f)])
                       for f in ("means", "quats", "log_scales", "opacity_logits", "sh")])
    p = cluster_merge(both, 0.5)
    assert torch.equal(p.means[0], big.means[0]) and torch.equal(p.sh[0], big.sh[0])


def test_build_proxy_reaches_about_its_target():
    g = tiny_scene(n_side=60)  # 3,640 Gaussians
    p = build_proxy(g, target=500)
    assert 250 <= len(p) <= 1000


def test_proxy_is_cached_beside_the_model_and_rebuilt_when_it_changes(tmp_path):
    model = tmp_path / "m.ply"
    g = tiny_scene()
    save_ply(g, model)
    p1, origin = load_or_build_proxy(g, model, target=100)
    assert origin == "built"
    cached = cached_proxy_path(model, target=100)
    assert cached is not None and cached.parent == tmp_path / "m.ply.mipview"
    p2, origin = load_or_build_proxy(g, model, target=100)
    assert origin == "cache" and torch.equal(p1.means, p2.means)
    st = model.stat()
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the model changed
    assert cached_proxy_path(model, target=100) is None
    _, origin = load_or_build_proxy(g, model, target=100)
    assert origin == "built"
    assert not list((tmp_path / "m.ply.mipview").glob("*.tmp"))
