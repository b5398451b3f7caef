"""Adapted levels, kept in memory and on disk next to the model.

On disk: a folder `<model>.mipview/` beside the model file, or `~/.cache/mipview/<hash>/`
(`$XDG_CACHE_HOME` respected) when that is not writable or there is no model file (the
demo). The folder is created when the first level is written, not before. It holds one
INRIA .ply per level, `level_<L>.ply`, and `manifest.json`:

    {"version": 1, "model_hash": "<sha256>", "levels": {"-2": {"file": "level_-2.ply",
     "settings": "<settings key>", "sha256": "<of the .ply>", "gaussians": 31000,
     "seconds": 95.2, "created": "2026-11-22T01:00:00Z", "info": {...}}}}

An entry is used only when the manifest's model hash and the entry's settings key match,
its file is `level_<L>.ply` in the cache folder itself (no other path is ever read or
deleted), the file's sha256 is the recorded one, and the file's own header names the
model hash, the level and the settings (`comment mipview-level ...`): a level copied
from another model's cache is refused even with its checksum edited in the manifest.
Anything else (corrupt, stale, missing, malformed) is ignored with a warning and
rebuilt. Files and the manifest are written under a temporary name and renamed; a write
re-reads the manifest under a lock file and merges, so two viewers on one model keep
each other's levels. All methods are thread-safe (one re-entrant lock).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from render.gaussians import Gaussians
from render.io import GaussianFileError, load_model, save_ply
from render.io.atomic import atomic_write_bytes
from render.io.limits import load_json_bounded
from render.io.ply_format import is_ply, parse_header

try:  # POSIX advisory locks; elsewhere the re-read-and-merge alone narrows the race
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

log = logging.getLogger("mipview.adapt")

MANIFEST = "manifest.json"
LOCK = ".manifest.lock"
VERSION = 1
TAG = "mipview-level"


def level_file_name(level: int) -> str:
    """The only name a level's file may have inside the cache folder."""
    return f"level_{int(level)}.ply"


def level_tag(model_hash: str, level: int, settings_key: str) -> str:
    """The header comment that ties a level file to its model, level and settings."""
    return f"{TAG} model={model_hash} level={int(level)} settings={settings_key}"


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def gaussians_sha256(g: Gaussians) -> str:
    """Content hash of a set: its float32 tensors, in field order, with their shapes."""
    h = hashlib.sha256()
    for name, t in g.tensors().items():
        a = np.ascontiguousarray(t.detach().cpu().to(torch.float32).numpy())
        h.update(f"{name}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mipview"


def _writable_dir(path: Path) -> bool:
    """Could we write in `path`: a writable folder, or creatable in its nearest existing
    ancestor? Creates nothing (the cache folder appears with its first level)."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            return False
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)


def cache_dir_for(model_path: str | Path | None, model_hash: str) -> Path:
    """`<model>.mipview/` beside the model when writable, else the user cache folder."""
    if model_path is not None:
        p = Path(model_path)
        beside = p.with_name(p.name + ".mipview")
        if _writable_dir(beside):
            return beside
        log.info("cannot write beside %s; caching levels in %s", p, user_cache_dir())
    return user_cache_dir() / model_hash[:32]


def _nonfinite_rows(g: Gaussians) -> int:
    """How many Gaussians of a set hold a NaN or infinite value."""
    bad = torch.zeros(len(g), dtype=torch.bool)
    for t in g.tensors().values():
        bad |= ~torch.isfinite(t.reshape(len(g), -1)).all(dim=1)
    return int(bad.sum())


def _malformed(key: object, entry: object) -> str | None:
    """Why a manifest entry cannot be used, or None when it is well formed."""
    try:
        level = int(str(key))
    except ValueError:
        return "its key is not a level number"
    if str(level) != key:
        return "its key is not a level number"
    if not isinstance(entry, dict):
        return "it is not an object"
    if entry.get("file") != level_file_name(level):
        return f"its file is not {level_file_name(level)} in the cache folder"
    for name, kind in (("settings", str), ("sha256", str)):
        if not isinstance(entry.get(name), kind):
            return f"its {name!r} is not a {kind.__name__}"
    for name in ("gaussians", "seconds"):
        if name in entry and (isinstance(entry[name], bool)
                              or not isinstance(entry[name], (int, float))):
            return f"its {name!r} is not a number"
    if "info" in entry and not isinstance(entry["info"], dict):
        return "its 'info' is not an object"
    if "created" in entry and not isinstance(entry["created"], str):
        return "its 'created' is not a string"
    return None


@dataclass
class LevelInfo:
    """What the viewer's panel shows of a cached level."""

    level: int
    gaussians: int
    seconds: float
    created: str
    path: Path | None
    info: dict = field(default_factory=dict)


class LevelCache:
    """Per-level adapted sets for one base model and one settings key.

    Args:
        model_hash: content hash of the base model (file or tensors).
        settings_key: a string naming everything that changes the result (AdaptSettings.key()).
        directory: where the files go; None keeps levels in memory only.
    """

    def __init__(self, model_hash: str, settings_key: str, directory: Path | None) -> None:
        self.model_hash = model_hash
        self.settings_key = settings_key
        self.directory = Path(directory) if directory is not None else None
        self._lock = threading.RLock()
        self._memory: dict[int, Gaussians] = {}
        self._info: dict[int, LevelInfo] = {}
        self._manifest = self._read_manifest()

    @staticmethod
    def for_model(gaussians: Gaussians, settings_key: str,
                  model_path: str | Path | None = None,
                  directory: str | Path | None = None) -> LevelCache:
        """The cache of a model: hashed from its file when given, else its tensors."""
        h = file_sha256(model_path) if model_path is not None else gaussians_sha256(gaussians)
        d = Path(directory) if directory is not None else cache_dir_for(model_path, h)
        return LevelCache(h, settings_key, d)

    # -- manifest --------------------------------------------------------------------------
    def _manifest_path(self) -> Path | None:
        return None if self.directory is None else self.directory / MANIFEST

    def _empty_manifest(self) -> dict:
        return {"version": VERSION, "model_hash": self.model_hash, "levels": {}}

    def _read_manifest(self, quiet: bool = False) -> dict:
        """The manifest on disk, reduced to its well-formed entries of this model; an
        empty one when it is missing, unreadable, malformed or another model's."""
        path = self._manifest_path()
        if path is None or not path.exists():
            return self._empty_manifest()
        warn = (lambda *a: None) if quiet else log.warning
        try:  # bounded: a manifest nested thousands deep is corrupt, not a RecursionError
            m = load_json_bounded(path, "level cache manifest")
            if not isinstance(m, dict) or not isinstance(m.get("levels"), dict):
                raise ValueError("not a manifest object with 'levels'")
        except (OSError, ValueError, RecursionError) as exc:
            warn("level cache %s is unreadable (%s); ignoring it, levels will be rebuilt",
                 path, exc)
            return self._empty_manifest()
        if m.get("version") != VERSION or m.get("model_hash") != self.model_hash:
            warn("level cache %s belongs to another model or version; ignoring it", path)
            return self._empty_manifest()
        levels = {}
        for key, entry in m["levels"].items():
            why = _malformed(key, entry)
            if why is not None:
                warn("level cache %s: entry %r ignored (%s); it will be rebuilt",
                     path, key, why)
                continue
            levels[key] = entry
        return {"version": VERSION, "model_hash": self.model_hash, "levels": levels}

    @contextlib.contextmanager
    def _disk_lock(self) -> Iterator[None]:
        """Hold the cache folder's lock file (other processes on this model wait)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            yield
            return
        with open(self.directory / LOCK, "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def _update_manifest(self, key: str, entry: dict | None) -> None:
        """Re-read the manifest, set (or remove) one entry, write it back atomically.
        Entries other processes wrote since we read it are kept."""
        path = self._manifest_path()
        disk = self._read_manifest(quiet=True)
        levels = dict(disk["levels"])
        if entry is None:
            levels.pop(key, None)
        else:
            levels[key] = entry
        merged = {"version": VERSION, "model_hash": self.model_hash, "levels": levels}
        atomic_write_bytes(path, json.dumps(merged, indent=1).encode())
        self._manifest = merged

    # -- reading ---------------------------------------------------------------------------
    def get(self, level: int) -> Gaussians | None:
        """The adapted set of a level if it is ready (memory, else a valid disk entry).

        A level in memory is returned without taking the lock: the viewer asks every
        frame, on its GL thread, and must not wait while the worker holds the lock to
        write another level's file (seconds for a large set). Reading one dict entry
        is atomic in CPython, and entries are only ever replaced or removed whole."""
        g = self._memory.get(level)
        if g is not None:
            return g
        with self._lock:
            if level in self._memory:
                return self._memory[level]
            g = self._load(level)
            if g is not None:
                self._memory[level] = g
            return g

    def _load(self, level: int) -> Gaussians | None:
        entry = self._manifest["levels"].get(str(level))
        if entry is None or self.directory is None:
            return None
        path = self.directory / level_file_name(level)
        why = None
        if entry.get("settings") != self.settings_key:
            why = "it was built with other settings"
        elif entry.get("file") != path.name:
            why = f"its file {entry.get('file')!r} is not {path.name} in the cache folder"
        elif path.is_symlink() or not path.is_file():
            why = "its file is missing"
        elif file_sha256(path) != entry.get("sha256"):
            why = "its file does not match the recorded checksum"
        elif not self._tagged(path, level):
            why = "its file was not built from this model at this level and settings"
        if why is None:
            try:
                g = load_model(path, find_cameras=False).gaussians
            except GaussianFileError as exc:
                why = f"it cannot be read ({exc.reason})"
        if why is not None:
            log.warning("cached level %s in %s ignored: %s; it will be rebuilt",
                        level, self.directory, why)
            return None
        self._info[level] = LevelInfo(level, len(g), float(entry.get("seconds", 0.0)),
                                      str(entry.get("created", "")), path,
                                      dict(entry.get("info", {})))
        return g

    def _tagged(self, path: Path, level: int) -> bool:
        """Does the level file's own header name this model, level and settings?"""
        try:
            with open(path, "rb") as f:
                head = f.read(65536)
            if not is_ply(head):
                return False
            comments = parse_header(path, head).comments
        except (OSError, GaussianFileError):
            return False
        return level_tag(self.model_hash, level, self.settings_key) in comments

    def info(self, level: int) -> dict:
        """The info dict a ready level was stored with ({} for none)."""
        entry = self._info.get(level)
        return dict(entry.info) if entry is not None else {}

    def levels(self) -> dict[int, LevelInfo]:
        """Ready levels (in memory or valid on disk) and what is known of them."""
        with self._lock:
            for key in list(self._manifest["levels"]):
                if int(key) not in self._memory:
                    self.get(int(key))
            return {lv: self._info[lv] for lv in sorted(self._memory) if lv in self._info}

    # -- writing ---------------------------------------------------------------------------
    def put(self, level: int, gaussians: Gaussians, seconds: float = 0.0,
            info: dict | None = None) -> LevelInfo:
        """Store a level: on disk first (atomically), then in memory. If writing fails
        (disk full, read-only) the exception propagates and the cache is as it was; a set
        holding NaN or Inf raises ValueError and is not stored."""
        g = gaussians.detach().to("cpu")
        bad = _nonfinite_rows(g)
        if bad:  # a diverged finetune: never cached, never shown
            raise ValueError(f"level {level}: {bad} of its {len(g)} Gaussians hold NaN or "
                             "infinite values; not cached")
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with self._lock:
            path = None
            if self.directory is not None:
                path = self.directory / level_file_name(level)
                with self._disk_lock():
                    save_ply(g, path, comments=(level_tag(self.model_hash, level,
                                                          self.settings_key),))
                    entry = {"file": path.name, "settings": self.settings_key,
                             "sha256": file_sha256(path), "gaussians": len(g),
                             "seconds": float(seconds), "created": created,
                             "info": info or {}}
                    self._update_manifest(str(level), entry)
            self._memory[level] = g
            self._info[level] = LevelInfo(level, len(g), float(seconds), created, path,
                                          dict(info or {}))
            return self._info[level]

    def delete(self, level: int) -> None:
        """Forget a level in memory and on disk. Only the cache's own file of the level,
        `level_<L>.ply` in the cache folder, is ever removed, whatever the manifest says."""
        with self._lock:
            self._memory.pop(level, None)
            self._info.pop(level, None)
            entry = self._manifest["levels"].pop(str(level), None)
            if entry is None or self.directory is None or not self.directory.is_dir():
                return
            with self._disk_lock():
                self._update_manifest(str(level), None)
                path = self.directory / level_file_name(level)
                if path.is_file() and not path.is_symlink():
                    with contextlib.suppress(OSError):
                        path.unlink()

    def export(self, level: int, path: str | Path) -> Path:
        """Save a ready level as an INRIA .ply at `path`."""
        g = self.get(level)
        if g is None:
            raise KeyError(f"level {level} is not in the cache")
        return save_ply(g, path)
