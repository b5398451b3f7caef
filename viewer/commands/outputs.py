"""Checks on what a command is about to write, made before the work, not after it.

`check_output_path` refuses an output that is one of the command's inputs, has the wrong
extension, or lies in a folder that is missing or not writable; `check_finite` refuses a
result holding NaN or infinite values, so that a garbage model is never written.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import torch

from render.gaussians import Gaussians


class OutputError(Exception):
    """An output the command must not write; the message is one line for the user."""


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def check_output_path(out: str | Path, flag: str, suffixes: Iterable[str],
                      inputs: Iterable[str | Path | None] = (), make_parent: bool = False
                      ) -> Path:
    """The output path, checked: an allowed extension, not an input, a writable folder.

    Args:
        out: the path the command will write.
        flag: the option it came from ("--out"), for the message.
        suffixes: allowed extensions, lower case with the dot (".ply").
        inputs: files the command reads (None entries are skipped): never replaced.
        make_parent: the command creates a missing folder itself (its nearest existing
            ancestor must then be writable).

    Raises:
        OutputError: naming the path and the problem.
    """
    out = Path(out)
    allowed = tuple(suffixes)
    if out.suffix.lower() not in allowed:
        raise OutputError(f"{flag} {out}: expected a {' or '.join(allowed)} file")
    for src in inputs:
        if src is not None and _same_file(out, Path(src)):
            raise OutputError(f"{flag} {out} is the input {src}: it would be replaced; "
                              "write the result to another file")
    if out.is_dir():
        raise OutputError(f"{flag} {out} is a folder")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.exists():
        if not make_parent:
            raise OutputError(f"{flag} {out}: folder {parent} does not exist")
        while not parent.exists():
            parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{flag} {out}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{flag} {out}: folder {parent} is not writable")
    return out


def check_finite(g: Gaussians, what: str) -> None:
    """Refuse a set holding NaN or infinite values (it would render as nothing, or crash
    the viewer that opens it). Raises OutputError naming `what` and the count."""
    bad = torch.zeros(len(g), dtype=torch.bool)
    for t in g.tensors().values():
        bad |= ~torch.isfinite(t.detach().to("cpu").reshape(len(g), -1)).all(dim=1)
    n_bad = int(bad.sum())
    if n_bad or len(g) == 0:
        raise OutputError(f"{what}: {n_bad} of its {len(g)} Gaussians hold NaN or infinite "
                          "values; nothing was written")
