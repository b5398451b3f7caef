"""Shared fixtures: where the real data lives, and small synthetic scenes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """$MIPVIEW_DATA, else ../shared/data beside the repository."""
    return Path(os.environ.get("MIPVIEW_DATA", REPO.parent / "shared" / "data"))


def data_file(name: str) -> Path:
    """A file of the real data set, or a pytest skip that says why it is missing."""
    path = data_dir() / name
    if not path.exists():
        pytest.skip(f"real data {name} not found in {data_dir()} (set MIPVIEW_DATA)")
    return path


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def random_set(n: int, seed: int = 0):
    """n small Gaussians scattered around the origin (a cache's level, a model file)."""
    from render.gaussians import Gaussians

    g = torch.Generator().manual_seed(seed)
    return Gaussians.from_colors(torch.randn(n, 3, generator=g), torch.rand(n, 3, generator=g),
                                 torch.full((n, 3), 0.02), torch.full((n,), 0.7))


@pytest.fixture
def model_file(tmp_path) -> Path:
    """A 50-Gaussian INRIA .ply, scene.ply in the test's folder."""
    from render.io import save_ply

    path = tmp_path / "scene.ply"
    save_ply(random_set(50), path)
    return path


# The fault-injection suite (tests marked `fault`): each such test injects one fault a user's
# machine produces (a full disk, a vanished folder, a corrupt cache, a hostile file, a crash
# mid-write) and asserts that it was handled: a clear error or a rebuilt entry, nothing lost.
# The run ends with one line that counts them.
_faults: dict[str, int] = {"injected": 0, "handled": 0, "lost": 0}


def pytest_runtest_logreport(report):
    if report.when != "call" or "fault" not in report.keywords or report.skipped:
        return  # a skipped case injected nothing
    _faults["injected"] += 1
    if report.passed:
        _faults["handled"] += 1
    elif report.failed:
        _faults["lost"] += 1


def pytest_terminal_summary(terminalreporter):
    if _faults["injected"]:
        terminalreporter.write_line(
            f"{_faults['injected']} faults injected, {_faults['handled']} handled, "
            f"{_faults['lost']} lost")
