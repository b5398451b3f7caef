"""Progress bars of the long commands (render --path, adapt, train, eval): tqdm on stderr,
with the rate and the time left; stdout stays free for the commands' JSON."""

from __future__ import annotations

import sys

EXIT_INTERRUPTED = 130  # what a shell reports for a job stopped by Ctrl-C (128 + SIGINT)


def progress_bar(total: int | None, what: str, enabled: bool = True, unit: str = "it",
                 **kwargs):
    """A tqdm bar on stderr (a context manager; `update(n)` advances it).

    Args:
        total: steps expected (None: a counter without an ETA).
        what: the label in front of the bar.
        enabled: False makes every call a no-op (--quiet).
        unit: what a step is ("frame", "step").
    """
    from tqdm import tqdm

    return tqdm(total=total, desc=what, unit=unit, disable=not enabled, file=sys.stderr,
                dynamic_ncols=True, mininterval=0.5, **kwargs)


def interrupted(command: str) -> int:
    """Say on stderr that Ctrl-C stopped `command` and nothing partial was left; 130."""
    print(f"\nmipview {command}: interrupted; no partial output was written", file=sys.stderr)
    return EXIT_INTERRUPTED
