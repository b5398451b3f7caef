"""Stand-ins that let the CUDA path run on a machine without a GPU.

- :class:`FakeCuda` (a TorchFunctionMode) and :class:`CudaTensor` (a tensor subclass):
  tensors that live in host memory but report ``cuda:0``, follow CUDA's device rules
  (no mixing with CPU tensors of more than 0 dims, no CPU index into ...) and refuse host
  conversions (``.numpy()``, ``__array__``, ``.tolist()``); ``.cpu()`` / ``.to("cpu")``
  is the explicit copy back and gives a plain tensor. ``torch.cuda``'s calls the project
  makes (is_available, synchronize, streams, empty_cache, ...) are patched to match.
- :class:`RecordingCudart`: cuda-python's runtime for the CUDA-GL interop calls.

gsplat's compiled kernels on the CPU are in tests/gsplat_fake_kernels.py.
"""

from __future__ import annotations

import contextlib
import threading
from types import SimpleNamespace

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

CUDA = torch.device("cuda", 0)


class HostConversionError(AssertionError):
    """A CUDA tensor was read into host memory implicitly (a real GPU would fail or sync)."""


class DeviceMixError(RuntimeError):
    """CUDA and CPU tensors met in one operation ("Expected all tensors to be on the same
    device")."""


class CudaTensor(torch.Tensor):
    """A host tensor that says it lives on cuda:0 (see the module docstring)."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _is_getter(func, "device"):
            return CUDA
        if _is_getter(func, "is_cuda"):
            return True
        if func in _REFUSED:
            raise HostConversionError(
                f"{getattr(func, '__name__', func)} on a CUDA tensor: copy it with .cpu() "
                "first (on a GPU this fails or copies implicitly)")
        if func is Tensor.cpu or (func is Tensor.to and _target_device(args[1:], kwargs) == "cpu"):
            with torch._C.DisableTorchFunctionSubclass():
                out = func(*args, **kwargs)
            return _unwrap(out)
        _check_devices(func, args, kwargs)
        with torch._C.DisableTorchFunctionSubclass():
            out = func(*args, **kwargs)
        if func in _KEEP_PLAIN:
            return out
        return _wrap(out)


def _is_getter(func, name: str) -> bool:
    """func is the getter of Tensor's property `name` (a new method-wrapper each access,
    so compared by its descriptor)."""
    return getattr(func, "__name__", "") == "__get__" and func == getattr(Tensor, name).__get__


_REFUSED = {Tensor.numpy, Tensor.__array__, Tensor.tolist}
_KEEP_PLAIN = {Tensor.__repr__, Tensor.__format__, Tensor.item, Tensor.__bool__,
               Tensor.__float__, Tensor.__int__, Tensor.__len__, Tensor.dim, Tensor.size,
               Tensor.numel, Tensor.data_ptr, Tensor.element_size}
_INDEXING = {Tensor.__getitem__, Tensor.__setitem__, torch.index_select, Tensor.index_select}


def _is_fake(t) -> bool:
    return isinstance(t, CudaTensor)


def _wrap(out):
    if isinstance(out, Tensor) and not _is_fake(out):
        return out.as_subclass(CudaTensor)
    if isinstance(out, tuple) and not hasattr(out, "_fields"):
        return tuple(_wrap(o) for o in out)
    if isinstance(out, list):
        return [_wrap(o) for o in out]
    if hasattr(out, "_fields"):  # torch.return_types: keep the named tuple
        return type(out)(tuple(_wrap(o) for o in out))
    return out


def _unwrap(out):
    if _is_fake(out):
        return out.as_subclass(torch.Tensor)
    if isinstance(out, (tuple, list)):
        return type(out)(_unwrap(o) for o in out)
    return out


def _tensors(obj, found: list) -> list:
    if isinstance(obj, Tensor):
        found.append(obj)
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            _tensors(o, found)
    elif isinstance(obj, dict):
        for o in obj.values():
            _tensors(o, found)
    return found


def _check_devices(func, args, kwargs) -> None:
    """CUDA's rule: a CUDA tensor meets CPU tensors only as 0-dim scalars (and, indexing
    a CUDA tensor, as CPU indices)."""
    ts = _tensors(list(args) + list(kwargs.values()), [])
    if not any(_is_fake(t) for t in ts):
        return
    if func in _INDEXING and args and _is_fake(args[0]):
        ts = [args[0]] + ([args[2]] if func is Tensor.__setitem__ and len(args) > 2 else [])
    for t in ts:
        if not _is_fake(t) and t.dim() > 0 and t.device.type == "cpu":
            raise DeviceMixError(
                f"{getattr(func, '__name__', func)}: Expected all tensors to be on the same "
                f"device, but found a CPU tensor {tuple(t.shape)} beside a CUDA one")


def _target_device(args, kwargs) -> str | None:
    dev = kwargs.get("device")
    if dev is None:
        for a in args:
            if isinstance(a, (str, torch.device)):
                dev = a
                break
            if isinstance(a, Tensor):
                dev = a.device
                break
    if dev is None:
        return None
    if isinstance(dev, int):
        return "cuda"
    return torch.device(dev).type


class FakeCuda(TorchFunctionMode):
    """Within this mode tensors made for (or moved to) "cuda" become :class:`CudaTensor`.

    Use :func:`fake_cuda` (it also patches torch.cuda); the mode alone only maps devices.
    `uploads` lists the shape of every host-to-device copy.
    """

    def __init__(self, uploads: list | None = None) -> None:
        super().__init__()
        self.uploads = uploads if uploads is not None else []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in (Tensor.cuda, Tensor.to) and args:
            src = args[0]
            target = "cuda" if func is Tensor.cuda else _target_device(args[1:], kwargs)
            if target == "cuda":
                rest = [a for a in args[1:] if not isinstance(a, (str, torch.device, int))]
                kwargs.pop("device", None)
                kwargs.pop("non_blocking", None)
                plain = _unwrap(src)
                if not _is_fake(src):
                    self.uploads.append(tuple(src.shape))
                out = plain.to(*rest, **kwargs) if (rest or kwargs) else plain
                if out is plain and not _is_fake(src):
                    out = plain  # .to() of a CPU tensor to CUDA copies on a GPU
                return _wrap(out.clone() if out is plain and not _is_fake(src) else out)
        dev = kwargs.get("device")
        if dev is not None and not isinstance(dev, Tensor) and torch.device(
                dev if not isinstance(dev, int) else "cuda").type == "cuda":
            kwargs["device"] = "cpu"
            return _wrap(func(*args, **kwargs))
        return func(*args, **kwargs)


class _Stream:
    """torch.cuda.Stream's surface the project uses."""

    _handles = iter(range(0x1000, 1 << 30, 0x10))

    def __init__(self, device=None, priority: int = 0, default: bool = False) -> None:
        self.device = CUDA
        self.priority = priority
        self.waited: list = []
        self.cuda_stream = 0 if default else next(self._handles)  # cudaStream_t, as an int

    def synchronize(self) -> None:
        pass

    def wait_stream(self, other) -> None:
        self.waited.append(other)

    def query(self) -> bool:
        return True

    def record_event(self, event=None):
        return event or SimpleNamespace(synchronize=lambda: None, query=lambda: True)


@contextlib.contextmanager
def fake_cuda(monkeypatch, device_name: str = "Fake GPU (CPU stand-in)"):
    """A CUDA device on the CPU for the duration: the mode plus torch.cuda's functions.

    Yields a namespace: `uploads` the shapes of host-to-device copies, `streams` the
    streams made, `current_stream()` is the
    calling thread's (torch.cuda.stream(s) sets it; else `default`), `empty_cache` and
    `synchronize` count calls.
    """
    state = SimpleNamespace(streams=[], empty_cache=0, synchronize=0,
                            default=_Stream(default=True))
    local = threading.local()  # like CUDA, the current stream is per thread

    def current_stream(*a):
        return getattr(local, "stream", None) or state.default

    state.current_stream = current_stream

    def make_stream(*a, **k):
        s = _Stream(*a, **k)
        state.streams.append(s)
        return s

    @contextlib.contextmanager
    def use_stream(s):
        prev = getattr(local, "stream", None)
        local.stream = s
        try:
            yield s
        finally:
            local.stream = prev

    def empty_cache():
        state.empty_cache += 1

    def synchronize(*a, **k):
        state.synchronize += 1

    cuda = torch.cuda
    monkeypatch.setattr(torch.version, "cuda", "12.8")  # a CUDA build of torch (cu128)
    monkeypatch.setattr(cuda, "is_available", lambda: True)
    monkeypatch.setattr(cuda, "device_count", lambda: 1)
    monkeypatch.setattr(cuda, "get_device_name", lambda *a: device_name)
    monkeypatch.setattr(cuda, "synchronize", synchronize)
    monkeypatch.setattr(cuda, "empty_cache", empty_cache)
    monkeypatch.setattr(cuda, "Stream", make_stream)
    monkeypatch.setattr(cuda, "stream", use_stream)
    monkeypatch.setattr(cuda, "current_stream", current_stream)
    monkeypatch.setattr(cuda, "memory_allocated", lambda *a: 0)
    monkeypatch.setattr(cuda, "mem_get_info", lambda *a: (8 << 30, 16 << 30))
    # torch's mode stack is per thread: threads started meanwhile (the render and
    # adaptation workers) enter the mode too.
    thread_run = threading.Thread.run

    state.uploads = []

    def run_in_mode(self):
        with FakeCuda(state.uploads):
            thread_run(self)

    monkeypatch.setattr(threading.Thread, "run", run_in_mode)
    with FakeCuda(state.uploads):
        yield state


def as_cuda(t: Tensor) -> Tensor:
    """A host tensor seen as a CUDA one (shares memory; keeps requires_grad)."""
    return t.as_subclass(CudaTensor)


# -- cuda-python's runtime, recorded ------------------------------------------------------------
class RecordingCudart:
    """cuda-python's `cuda.bindings.runtime` for the interop calls viewer/display.py makes:
    records each call (name, args) in `log` and answers (cudaSuccess, value).

    `fail` names a call that answers an error code instead. With `real` (the installed
    bindings module) every call is also made there first, so its argument conversion is
    checked (a wrong type raises TypeError there); what the real call answers (no driver
    here: cudaErrorInsufficientDriver) is recorded in `real_errors` and replaced by success
    so the sequence goes on.
    """

    class cudaGraphicsRegisterFlags:  # noqa: N801 (the binding's names)
        cudaGraphicsRegisterFlagsWriteDiscard = 2

    class cudaMemcpyKind:  # noqa: N801
        cudaMemcpyDeviceToDevice = 3

    def __init__(self, log: list, fail: str | None = None, real=None) -> None:
        self.log, self.fail, self.real = log, fail, real
        self.real_errors: dict[str, str] = {}
        if real is not None:
            self.cudaGraphicsRegisterFlags = real.cudaGraphicsRegisterFlags
            self.cudaMemcpyKind = real.cudaMemcpyKind
        self._n = 0

    def _call(self, name: str, args: tuple, value=None):
        self.log.append((name, args))
        if self.real is not None:
            err, *rest = getattr(self.real, name)(*args)
            self.real_errors[name] = getattr(err, "name", str(err))
            if value is not None and rest and rest[0] is not None:
                value = rest[0]
        if name == self.fail:
            return (999, None) if value is not None else (999,)
        return (0, value) if value is not None else (0,)

    def _handle(self, kind: str):
        if self.real is not None:
            return getattr(self.real, kind)()
        self._n += 1
        return f"{kind}#{self._n}"

    def cudaGraphicsGLRegisterImage(self, image, target, flags):  # noqa: N802
        return self._call("cudaGraphicsGLRegisterImage", (image, target, flags),
                          self._handle("cudaGraphicsResource_t"))

    def cudaGraphicsMapResources(self, count, resources, stream):  # noqa: N802
        return self._call("cudaGraphicsMapResources", (count, resources, stream))

    def cudaGraphicsSubResourceGetMappedArray(self, resource, index, level):  # noqa: N802
        return self._call("cudaGraphicsSubResourceGetMappedArray", (resource, index, level),
                          self._handle("cudaArray_t"))

    def cudaMemcpy2DToArrayAsync(self, dst, w_off, h_off, src, spitch, width, height,  # noqa: N802
                                 kind, stream):
        return self._call("cudaMemcpy2DToArrayAsync",
                          (dst, w_off, h_off, src, spitch, width, height, kind, stream))

    def cudaGraphicsUnmapResources(self, count, resources, stream):  # noqa: N802
        return self._call("cudaGraphicsUnmapResources", (count, resources, stream))

    def cudaGraphicsUnregisterResource(self, resource):  # noqa: N802
        return self._call("cudaGraphicsUnregisterResource", (resource,))
