"""Write files under a temporary name and rename, so a crash never leaves half a file.

Temporary files and folders are created private (mkstemp: 0600, mkdtemp: 0700); what
appears under the final name gets the permissions a plain open() or mkdir() would have
given: the user's umask applied to 0666 / 0777 (or, when a file is replaced, the old
file's mode).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process's umask, read without changing it where Linux allows (/proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _umask_lock:  # os.umask can only be read by setting it
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def file_mode(path: str | Path | None = None) -> int:
    """The mode a new file gets from open(): 0666 less the umask; for an existing regular
    file at `path`, its own mode (replacing a file keeps its permissions)."""
    if path is not None:
        try:
            p = Path(path)
            if p.is_file():
                return p.stat().st_mode & 0o7777
        except OSError:
            pass
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """The mode a new folder gets from mkdir(): 0777 less the umask."""
    return 0o777 & ~current_umask()


def make_temp_dir(final: str | Path) -> Path:
    """A new temporary folder beside `final`, with the mode mkdir() would give `final`."""
    final = Path(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    os.chmod(tmp, dir_mode())
    return tmp


@contextlib.contextmanager
def atomic_open(path: str | Path) -> Iterator:
    """A binary file object that becomes `path` when the block ends without an error.

    The data goes to a temporary file in the same folder (created if missing), is
    fsynced, and renamed over `path`; on any exception (a full disk, Ctrl-C) the
    temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes | bytearray | memoryview) -> Path:
    """Write `data` to `path` through a temporary file in the same folder, then rename.

    The rename is atomic on one file system, so readers see the old file or the new
    one, never a partial write. Returns the path written.
    """
    path = Path(path)
    with atomic_open(path) as f:
        f.write(data)
    return path
