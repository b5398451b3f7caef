"""The one error type for every model or camera file that cannot be read."""

from __future__ import annotations

from pathlib import Path


class GaussianFileError(ValueError):
    """A model or camera file that cannot be used: names the file and says what is wrong.

    Attributes:
        path: the offending file.
        reason: what is wrong with it, in words a user can act on.
    """

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        # keep the two-argument constructor working across pickling (worker processes)
        return (type(self), (self.path, self.reason))
