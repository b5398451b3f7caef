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
