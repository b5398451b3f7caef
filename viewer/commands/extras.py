"""What a command needs beyond the default install, checked before it starts.

The default install (`pip install -e .`) carries everything `mipview`, `info`, `render`
to PNGs, `adapt` and `train` use. Two extras stay optional: `video` (imageio-ffmpeg, for
.mp4/.mov/.mkv output) and `eval` (matplotlib, for the report's plot). A command that
needs a missing one says which, in one line, and exits non-zero: no traceback.
"""

from __future__ import annotations

import importlib.util

# extra -> (module, pip name) pairs it installs
EXTRAS: dict[str, tuple[tuple[str, str], ...]] = {
    "video": (("imageio_ffmpeg", "imageio-ffmpeg"),),
    "eval": (("matplotlib", "matplotlib"), ("pytorch_msssim", "pytorch-msssim")),
    # a default dependency; named so that a partial install gets a clear line too
    "default": (("pytorch_msssim", "pytorch-msssim"),),
}


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken package, or one set to None in sys.modules
        return False


def missing_extra(extra: str, what: str) -> str | None:
    """None when the extra's modules import, else the one-line message for the user:
    `<what> needs <packages>: pip install "mipview[<extra>]"`."""
    missing = [pip for module, pip in EXTRAS[extra] if not _importable(module)]
    if not missing:
        return None
    install = 'pip install -e .' if extra == "default" else f'pip install "mipview[{extra}]"'
    return f"{what} needs {', '.join(missing)}, which is not installed: {install}"
