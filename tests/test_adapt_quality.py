"""What the user checks: on views never adapted on, the adapted level is closer to the
ideal reference than the vanilla, `mip` and `adaptive` renders of the base set (zoom-out),
with fewer Gaussians than the base; and closer than vanilla to the upsampled base render (zoom-in).

Small settings keep CI short (the full 1,000-iteration figures come from
benchmarks/adapt.py): few views, a couple of hundred iterations, small images.
"""

from __future__ import annotations

import pytest
from conftest import data_file

from adapt.finetune import FinetuneConfig
from adapt.pseudo_gt import measure_level
from adapt.scale import virtual_base_cameras
from adapt.upsample import BicubicUpsampler
from adapt.views import ViewSettings
from adapt.worker import AdaptSettings, adapt_level

pytestmark = pytest.mark.slow

ITERS = {-3: 100, -2: 100, 1: 50, 2: 50}


def _demo():
    from render.demo import demo_scene

    d = demo_scene()
    return d.gaussians, list(d.base_cameras)


def _donut():
    from render.io import load_model

    g = load_model(data_file("donut_mipsplat_sh0.ply")).gaussians
    return g, virtual_base_cameras(g, 256, 256, n=24)


SCENES = {"demo": _demo, "donut": _donut}


def _adapt(scene: str, level: int) -> tuple[dict[str, float], int, int]:
    base, cams = SCENES[scene]()
    settings = AdaptSettings(finetune=FinetuneConfig(iters=ITERS[level]),
                             views=ViewSettings(n_views=16, holdout_every=4, crop=128,
                                                max_crop_pixels=128 * 128, crops_per_view=2),
                             use_current_view=False, rival_check=False)  # the method's own level
    up = BicubicUpsampler()
    res = adapt_level(base, cams, level, settings, up)
    held = res.held_out[:2]
    scores = measure_level(base, res.gaussians, held, level, up,
                           settings.finetune.base_options(), settings.views,
                           adapted_options=settings.finetune.render_options(level))
    return scores, len(base), len(res.gaussians)


@pytest.mark.parametrize("scene", ["demo", "donut"])
@pytest.mark.parametrize("level", [-2, -3])
def test_zoom_out_level_beats_vanilla_mip_and_adaptive_on_held_out_views(scene, level):
    scores, n_before, n_after = _adapt(scene, level)
    msg = f"{scene} level {level}: {scores}"
    assert scores["adapted"] > scores["vanilla"] + 1.0, msg
    assert scores["adapted"] > scores["mip"], msg
    assert scores["adapted"] > scores["adaptive"], msg
    # A coarser level needs fewer splats: neighbours well inside one target pixel are
    # merged before the finetune (FinetuneConfig.zoom_out_merge_px), and the faint ones
    # the finetune drives below the 0.005 opacity bar are pruned.
    assert n_after < n_before, f"{msg}: {n_after} Gaussians vs {n_before} in the base"


@pytest.mark.parametrize("scene,level", [("demo", 1), ("donut", 2)])
def test_zoom_in_level_is_closer_than_vanilla_to_the_upsampled_base(scene, level):
    scores, _, _ = _adapt(scene, level)
    assert scores["adapted"] > scores["vanilla"], f"{scene} level {level}: {scores}"
