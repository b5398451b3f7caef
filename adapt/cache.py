"""Adapted levels, kept in memory and on disk next to the model.

On disk: a folder `<model>.mipview/` beside the model file, or `~/.cache/mipview/<hash>/`
(`$XDG_CACHE_HOME` respected) when that is not writable or there is no model file (the
demo). It holds one INRIA .ply per level and `manifest.json`:

    {"version": 1, "model_hash": "<sha256>", "levels": {"-2": {"file": "level_-2.ply",
     "settings": "<settings key>", "sha256": "<of the .ply>", "gaussians": 31000,
     "seconds": 95.2, "created": "2026-11-22T01:00:00Z", "info": {...}}}}

An entry is used only when the manifest's model hash and the entry's settings key match
and the file's sha256 is the recorded one; anything else (corrupt, stale, missing) is
ignored with a warning and rebuilt. Files and the manifest are written under a temporary
name and renamed. All methods are thread-safe (one re-entrant lock).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from render.gaussians import Gaussians
from render.io import GaussianFileError, load_model, save_ply
from render.io.atomic import atomic_write_bytes
from render.io.limits import load_json_bounded

try:
    import fcntl
except ImportError:  # Windows: no cross-process lock, the merge still narrows the race
    fcntl = None

log = logging.getLogger("mipview.adapt")

MANIFEST = "manifest.json"
VERSION = 1


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
    """Can we create `path` (or is it there) and write in it?"""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".probe-{os.getpid()}-{threading.get_ident()}"
        probe.write_bytes(b"")
        probe.unlink()
        return True
    except OSError:
        return False


def cache_dir_for(model_path: str | Path | None, model_hash: str) -> Path:
    """`<model>.mipview/` beside the model when writable, else the user cache folder."""
    if model_path is not None:
        p = Path(model_path)
        beside = p.with_name(p.name + ".mipview")
        if _writable_dir(beside):
            return beside
        log.info("cannot write beside %s; caching levels in %s", p, user_cache_dir())
    return user_cache_dir() / model_hash[:32]


def _valid_entry(key, entry) -> bool:
    """A manifest entry the cache can check: an integer level key and an object."""
    try:
        int(key)
    except ValueError:
        return False
    return isinstance(entry, dict) and isinstance(entry.get("file", ""), str)


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

    def _read_manifest(self) -> dict:
        path = self._manifest_path()
        if path is None or not path.exists():
            return self._empty_manifest()
        try:  # bounded: a manifest nested thousands deep is corrupt, not a RecursionError
            m = load_json_bounded(path, "level cache manifest")
            if not isinstance(m, dict) or not isinstance(m.get("levels"), dict):
                raise ValueError("not a manifest object with 'levels'")
        except (OSError, ValueError) as exc:
            log.warning("level cache %s is unreadable (%s); ignoring it, levels will be "
                        "rebuilt", path, exc)
            return self._empty_manifest()
        if m.get("version") != VERSION or m.get("model_hash") != self.model_hash:
            log.warning("level cache %s belongs to another model or version; ignoring it",
                        path)
            return self._empty_manifest()
        bad = [k for k, e in m["levels"].items() if not _valid_entry(k, e)]
        for k in bad:
            log.warning("level cache %s: entry %r is malformed; ignoring it, it will be "
                        "rebuilt", path, k)
            del m["levels"][k]
        return m

    def _merge_from_disk(self, level: int) -> None:
        """Take in the levels another process wrote since this one read the manifest
        (two viewers or `mipview adapt` runs on one model), keeping our own `level`.
        Call with the lock held, just before writing the manifest."""
        disk = self._read_manifest()
        for key, entry in disk["levels"].items():
            if key != str(level):
                self._manifest["levels"][key] = entry

    @contextlib.contextmanager
    def _disk_lock(self):
        """An advisory lock on the cache folder across processes (fcntl where there is
        one): the read-merge-write of the manifest is done by one process at a time."""
        if self.directory is None or fcntl is None:
            yield
            return
        with open(self.directory / ".manifest.lock", "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def _write_manifest(self) -> None:
        path = self._manifest_path()
        if path is not None:
            atomic_write_bytes(path, json.dumps(self._manifest, indent=1).encode())

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
        path = self.directory / str(entry.get("file", ""))
        why = None
        if entry.get("settings") != self.settings_key:
            why = "it was built with other settings"
        elif not path.is_file():
            why = "its file is missing"
        elif file_sha256(path) != entry.get("sha256"):
            why = "its file does not match the recorded checksum"
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
        (disk full, read-only) the exception propagates and the cache is as it was."""
        g = gaussians.detach().to("cpu")
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with self._lock:
            path = None
            if self.directory is not None:
                path = self.directory / f"level_{level}.ply"
                save_ply(g, path)
                entry = {"file": path.name, "settings": self.settings_key,
                         "sha256": file_sha256(path), "gaussians": len(g),
                         "seconds": float(seconds), "created": created, "info": info or {}}
                old = self._manifest["levels"].get(str(level))
                try:
                    with self._disk_lock():
                        self._merge_from_disk(level)
                        self._manifest["levels"][str(level)] = entry
                        self._write_manifest()
                except BaseException:
                    if old is None:
                        self._manifest["levels"].pop(str(level), None)
                    else:
                        self._manifest["levels"][str(level)] = old
                    raise
            self._memory[level] = g
            self._info[level] = LevelInfo(level, len(g), float(seconds), created, path,
                                          dict(info or {}))
            return self._info[level]

    def delete(self, level: int) -> None:
        """Forget a level in memory and on disk."""
        with self._lock:
            self._memory.pop(level, None)
            self._info.pop(level, None)
            entry = self._manifest["levels"].pop(str(level), None)
            if entry is not None and self.directory is not None:
                with self._disk_lock():
                    self._merge_from_disk(level)
                    self._write_manifest()
                try:
                    (self.directory / entry["file"]).unlink()
                except OSError:
                    pass

    def export(self, level: int, path: str | Path) -> Path:
        """Save a ready level as an INRIA .ply at `path`."""
        g = self.get(level)
        if g is None:
            raise KeyError(f"level {level} is not in the cache")
        return save_ply(g, path)
