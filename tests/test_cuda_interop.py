"""The CUDA-GL interop sequence of viewer/display.py against a recording cuda-python:
register once, map / copy / unmap (unmap in `finally`), byte widths, unregister before
the texture goes (failure, resize); and, with the pinned bindings installed, that every
call gets past their argument conversion."""

from __future__ import annotations

import pytest
import torch
from gpu_fakes import RecordingCudart, fake_cuda

from viewer import display


class FakeTexture:
    """The moderngl texture surface FrameTexture uses, logging its release."""

    _glo = iter(range(1, 1 << 20))

    def __init__(self, log: list, size: tuple[int, int]) -> None:
        self.log, self.size, self.glo = log, size, next(self._glo)
        self.filter = None
        self.swizzle = "RGBA"
        self.repeat_x = self.repeat_y = True

    def release(self) -> None:
        self.log.append(("texture.release", (self.glo,)))

    def write(self, data) -> None:
        self.log.append(("texture.write", (self.glo, data.shape)))


@pytest.fixture
def interop(monkeypatch):
    """(log, install(rt)): FrameTexture on fake textures; install puts a runtime in."""
    log: list = []
    monkeypatch.setattr(display, "_texture",
                        lambda ctx, size, bgra: FakeTexture(log, size))

    def install(rt):
        monkeypatch.setattr(display, "_cudart", lambda: rt)
        return rt

    with fake_cuda(monkeypatch) as gpu:
        yield log, install, gpu


def _frame(w: int, h: int) -> torch.Tensor:
    return torch.randint(0, 255, (h, w, 4), dtype=torch.uint8).to("cuda")


def _names(log, prefix="cuda"):
    return [n for n, _ in log if n.startswith(prefix) or n == "texture.release"]


def test_registers_once_and_maps_copies_unmaps_each_frame(interop):
    log, install, gpu = interop
    install(RecordingCudart(log))
    tex = display.FrameTexture(ctx=None)
    for _ in range(3):
        tex.put(_frame(40, 24))
    assert tex.path == "cuda-gl"
    names = _names(log)
    assert names.count("cudaGraphicsGLRegisterImage") == 1
    per_frame = ["cudaGraphicsMapResources", "cudaGraphicsSubResourceGetMappedArray",
                 "cudaMemcpy2DToArrayAsync", "cudaGraphicsUnmapResources"]
    assert names[1:] == per_frame * 3
    copy = [a for n, a in log if n == "cudaMemcpy2DToArrayAsync"][0]
    _, w_off, h_off, _, spitch, width_bytes, height, kind, stream = copy
    assert (w_off, h_off, spitch, width_bytes, height) == (0, 0, 40 * 4, 40 * 4, 24)
    assert kind == RecordingCudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice
    assert stream == gpu.default.cuda_stream  # torch's current stream
    register = [a for n, a in log if n == "cudaGraphicsGLRegisterImage"][0]
    assert register[1] == display.GL_TEXTURE_2D


@pytest.mark.fault
def test_a_failed_copy_still_unmaps_and_unregisters_before_the_texture_goes(interop):
    log, install, _ = interop
    install(RecordingCudart(log, fail="cudaMemcpy2DToArrayAsync"))
    tex = display.FrameTexture(ctx=None)
    tex.put(_frame(16, 8))
    assert tex.path == "cpu-upload" and "interop unavailable" in tex.reason
    names = _names(log)
    i_copy = names.index("cudaMemcpy2DToArrayAsync")
    assert names[i_copy + 1] == "cudaGraphicsUnmapResources"  # the finally
    assert "cudaGraphicsUnregisterResource" in names
    tex.put(_frame(20, 8))  # a resize deletes the texture: it must not be registered
    names = _names(log)
    assert names.index("cudaGraphicsUnregisterResource") < names.index("texture.release")
    assert names.count("cudaGraphicsGLRegisterImage") == 1  # interop not retried


def test_a_resize_unregisters_then_reregisters_the_new_texture(interop):
    log, install, _ = interop
    install(RecordingCudart(log))
    tex = display.FrameTexture(ctx=None)
    tex.put(_frame(16, 8))
    tex.put(_frame(32, 16))
    names = _names(log)
    i_unreg = names.index("cudaGraphicsUnregisterResource")
    assert names[i_unreg + 1] == "texture.release"
    assert names.count("cudaGraphicsGLRegisterImage") == 2
    assert names.index("cudaGraphicsGLRegisterImage", 1) > names.index("texture.release")
    tex.release()
    assert _names(log)[-2:] == ["cudaGraphicsUnregisterResource", "texture.release"]


def test_interop_off_hands_host_frames_to_the_display(interop):
    """After interop gave up, the presenter says so: the app then has the render thread
    copy frames to the host (RenderWorker.keep_on_device), not the GL thread."""
    log, install, _ = interop
    install(RecordingCudart(log, fail="cudaGraphicsGLRegisterImage"))
    presenter = display.Presenter.__new__(display.Presenter)
    presenter.textures = [display.FrameTexture(ctx=None) for _ in range(2)]
    assert presenter.interop_possible
    presenter.textures[0].put(_frame(8, 8))
    assert not presenter.interop_possible


def test_every_call_gets_past_the_pinned_bindings_argument_conversion(interop):
    """The real cuda-python (12.x, the pin) converts every argument the viewer passes;
    with no driver here its calls answer an error code instead of raising TypeError."""
    try:
        from cuda.bindings import runtime as real
    except ImportError:
        pytest.skip("cuda-python (pip install 'cuda-python>=12.8,<13') is not installed")
    log, install, _ = interop
    rt = install(RecordingCudart(log, real=real))
    tex = display.FrameTexture(ctx=None)
    tex.put(_frame(16, 8))
    tex.put(_frame(24, 8))  # resize: unregister and register again
    tex.release()
    assert set(rt.real_errors) == {
        "cudaGraphicsGLRegisterImage", "cudaGraphicsMapResources",
        "cudaGraphicsSubResourceGetMappedArray", "cudaMemcpy2DToArrayAsync",
        "cudaGraphicsUnmapResources", "cudaGraphicsUnregisterResource"}
