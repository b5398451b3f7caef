"""Lazy package exports (PEP 562): a name is imported from its module on first use, so
importing a package does not import torch until something that needs it is used
(`mipview info` never does)."""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_exports(package: str, exports: dict[str, str], namespace: dict
                 ) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """(__getattr__, __dir__) for a package whose `exports` maps a name to the module
    defining it; `namespace` is the package's globals(), where a loaded name is cached."""

    def getattr_(name: str):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value  # later look-ups skip this function
        return value

    def dir_() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return getattr_, dir_
