"""The navigation proxy of the model on show (adapt.proxy), built off the GL thread.

The window asks :meth:`ProxyBuilder.start` for each model it shows; models above
adapt.proxy.PROXY_MIN_GAUSSIANS get their proxy loaded from the cache or built in a
background thread, and :meth:`ProxyBuilder.get` hands it out once it is there, for that
model only (a proxy never outlives the set it stands for).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from adapt.proxy import PROXY_MIN_GAUSSIANS, PROXY_TARGET, load_or_build_proxy, needs_proxy
from render.gaussians import Gaussians

log = logging.getLogger("mipview.viewer")


@dataclass
class ProxyStatus:
    """What the stats panel says of the proxy: state is "none" (model small enough),
    "building", "ready" or "failed"; origin "cache" or "built"; seconds to get it."""

    state: str = "none"
    gaussians: int = 0
    origin: str = ""
    seconds: float = 0.0
    error: str = ""


class ProxyBuilder:
    """One proxy at a time, for the model last started."""

    def __init__(self, threshold: int = PROXY_MIN_GAUSSIANS, target: int = PROXY_TARGET):
        self.threshold = threshold
        self.target = target
        self._lock = threading.Lock()
        self._for: Gaussians | None = None  # the set the proxy stands for
        self._proxy: Gaussians | None = None
        self._thread: threading.Thread | None = None
        self.status = ProxyStatus()

    def start(self, gaussians: Gaussians, model_path, device) -> None:
        """Begin getting the proxy of `gaussians` (from the model file `model_path`, or
        None); forgets the previous model's."""
        with self._lock:
            self._for, self._proxy = gaussians, None
            if not needs_proxy(len(gaussians), self.threshold):
                self.status = ProxyStatus()
                return
            self.status = ProxyStatus("building")
        self._thread = threading.Thread(
            target=self._build, args=(gaussians, model_path, device),
            name="mipview-proxy", daemon=True)
        self._thread.start()

    def _build(self, gaussians: Gaussians, model_path, device) -> None:
        t0 = time.perf_counter()
        try:
            proxy, origin = load_or_build_proxy(gaussians, model_path, self.target)
            proxy = proxy.to(device)
            status = ProxyStatus("ready", len(proxy), origin, time.perf_counter() - t0)
        except Exception as exc:  # no proxy is a slower drag, not a broken viewer
            log.exception("navigation proxy failed")
            proxy, status = None, ProxyStatus("failed", error=f"{type(exc).__name__}: {exc}")
        with self._lock:
            if self._for is gaussians:  # else another model replaced it meanwhile
                self._proxy, self.status = proxy, status

    def moved(self, gaussians: Gaussians, model_path, device) -> None:
        """The model's set was copied to `device` (the GPU once its kernels are ready):
        its proxy goes along, or, while it is still being built, is started again."""
        with self._lock:
            ready = self._proxy is not None
            if ready:
                self._for, self._proxy = gaussians, self._proxy.to(device)
        if not ready:
            self.start(gaussians, model_path, device)

    def get(self, gaussians: Gaussians) -> Gaussians | None:
        """The proxy of `gaussians` when it is ready, else None."""
        with self._lock:
            return self._proxy if self._for is gaussians else None

    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
