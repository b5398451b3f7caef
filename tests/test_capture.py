"""Screenshots (PNG with metadata, names that never collide) and the video/frames writer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from viewer import capture
from viewer.capture import read_png_metadata, save_png, timestamped_path, to_uint8
from viewer.video import FrameWriter, VideoError, is_video_path


def _image(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------------
# PNG
# ---------------------------------------------------------------------------------------
def test_png_pixels_and_metadata_round_trip(tmp_path):
    img = _image()
    meta = {"mipview.camera": '{"fx": 100.5, "viewmat": [[1, 0]]}', "Software": "mipview",
            "mipview.note": "zoom ×1/4.3 — ünïcode"}  # not Latin-1: stored as iTXt
    out = save_png(tmp_path / "shot.png", img, meta)
    assert out == tmp_path / "shot.png"
    assert np.array_equal(np.asarray(Image.open(out)), img)
    assert read_png_metadata(out) == meta


def test_png_from_float_tensor_and_rgba(tmp_path):
    t = torch.linspace(0, 1, 24 * 32 * 3).reshape(24, 32, 3)
    save_png(tmp_path / "f.png", t, {})
    back = np.asarray(Image.open(tmp_path / "f.png"))
    assert np.array_equal(back, np.rint(t.numpy() * 255).astype(np.uint8))
    rgba = np.dstack([_image(), np.full((24, 32, 1), 128, np.uint8)])
    save_png(tmp_path / "a.png", rgba, {})
    assert Image.open(tmp_path / "a.png").mode == "RGBA"


def test_to_uint8_clips_rounds_and_handles_nan():
    x = np.array([[[-0.5, 0.5, 2.0], [np.nan, 1.0 / 255 * 0.49, 1.0 / 255 * 0.51]]], np.float32)
    assert to_uint8(x).tolist() == [[[0, 128, 255], [0, 0, 1]]]
    assert to_uint8(torch.from_numpy(x)).dtype == np.uint8
    with pytest.raises(ValueError, match="H, W"):
        to_uint8(np.zeros((4, 4)))


def test_bad_metadata_key_is_refused_before_writing(tmp_path):
    with pytest.raises(ValueError, match="1-79"):
        save_png(tmp_path / "x.png", _image(), {"": "v"})
    assert not list(tmp_path.iterdir())


def test_failed_save_keeps_the_existing_png(tmp_path, monkeypatch):
    target = tmp_path / "keep.png"
    save_png(target, _image(seed=1), {"k": "old"})
    before = target.read_bytes()

    def broken_save(self, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="No space"):
        save_png(target, _image(seed=2), {"k": "new"})
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.png"]  # no temp file left behind


def test_timestamped_names_never_collide(tmp_path, monkeypatch):
    monkeypatch.setattr(capture, "_handed_out", set())
    monkeypatch.setattr(capture.time, "strftime", lambda fmt: "20260101-120000")
    a = timestamped_path(tmp_path / "shots")
    b = timestamped_path(tmp_path / "shots")  # same second, nothing written yet
    assert a.name == "mipview_20260101-120000.png"
    assert b.name == "mipview_20260101-120000_2.png"
    # a file made by someone else under the next name is not overwritten either
    (tmp_path / "shots" / "mipview_20260101-120000_3.png").write_bytes(b"x")
    c = timestamped_path(tmp_path / "shots")
    assert c.name == "mipview_20260101-120000_4.png"
    d = timestamped_path(tmp_path / "shots", prefix="split", ext="jpg")
    assert d.name == "split_20260101-120000.jpg"
    assert len({a, b, c, d}) == 4


# ---------------------------------------------------------------------------------------
# Video and frame folders
# ---------------------------------------------------------------------------------------
def _frames(n: int, h: int, w: int) -> list[np.ndarray]:
    """Frames that differ strongly, so an encoder cannot merge them."""
    out = []
    for i in range(n):
        f = np.zeros((h, w, 3), np.uint8)
        f[:, : (i + 1) * w // n] = (40 * i % 256, 255 - 30 * i % 256, 128)
        out.append(f)
    return out


def test_mp4_has_every_frame_at_the_right_size(tmp_path):
    imageio = pytest.importorskip("imageio.v2")
    pytest.importorskip("imageio_ffmpeg")
    out = tmp_path / "clip.mp4"
    with FrameWriter(out, fps=12) as w:
        for f in _frames(7, 48, 64):
            w.write(f)
    assert not w.padded and w.size == (64, 48)
    reader = imageio.get_reader(out, format="ffmpeg")
    fps = reader.get_meta_data()["fps"]
    frames = [np.asarray(f) for f in reader]
    reader.close()
    assert len(frames) == 7
    assert frames[0].shape == (48, 64, 3)
    assert fps == pytest.approx(12)
    # lossy, but the content is the one written
    assert np.abs(frames[3].astype(int) - _frames(7, 48, 64)[3]).mean() < 6
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def test_odd_sizes_are_padded_to_even_for_h264(tmp_path):
    imageio = pytest.importorskip("imageio.v2")
    pytest.importorskip("imageio_ffmpeg")
    with FrameWriter(tmp_path / "odd.mp4", fps=5) as w:
        for f in _frames(3, 25, 33):
            w.write(f)
    assert w.padded
    reader = imageio.get_reader(tmp_path / "odd.mp4", format="ffmpeg")
    first = np.asarray(reader.get_data(0))
    reader.close()
    assert first.shape == (26, 34, 3)


def test_frames_folder_and_replacing_a_previous_render(tmp_path):
    out = tmp_path / "frames"
    with FrameWriter(out, metadata={"Software": "mipview"}) as w:
        for f in _frames(3, 24, 32):
            w.write(f)
    assert sorted(p.name for p in out.iterdir()) == ["00000.png", "00001.png", "00002.png"]
    assert np.array_equal(np.asarray(Image.open(out / "00001.png")), _frames(3, 24, 32)[1])
    assert read_png_metadata(out / "00000.png") == {"Software": "mipview"}
    with FrameWriter(out) as w:  # a previous render is replaced as a whole
        w.write(_frames(1, 24, 32)[0])
    assert sorted(p.name for p in out.iterdir()) == ["00000.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]


def test_folder_with_other_files_is_not_replaced(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    with pytest.raises(VideoError, match="other files"):
        with FrameWriter(out) as w:
            w.write(_frames(1, 8, 8)[0])
    assert (out / "notes.txt").read_text() == "precious"


def test_a_failed_render_leaves_the_old_output(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    video = tmp_path / "v.mp4"
    video.write_bytes(b"old video")
    folder = tmp_path / "f"
    with FrameWriter(folder) as w:
        w.write(_frames(1, 8, 8)[0])
    for out in (video, folder):
        with pytest.raises(RuntimeError, match="renderer crashed"):
            with FrameWriter(out, fps=5) as w:
                for i, f in enumerate(_frames(4, 16, 16)):
                    if i == 2:
                        raise RuntimeError("renderer crashed")
                    w.write(f)
    assert video.read_bytes() == b"old video"
    assert sorted(p.name for p in folder.iterdir()) == ["00000.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "v.mp4"]  # no temp leftovers


def test_frame_size_must_not_change_and_empty_output_is_an_error(tmp_path):
    with pytest.raises(VideoError, match="the first was 8x8"):
        with FrameWriter(tmp_path / "f") as w:
            w.write(_frames(1, 8, 8)[0])
            w.write(_frames(1, 8, 10)[0])
    with pytest.raises(VideoError, match="no frames"):
        with FrameWriter(tmp_path / "g"):
            pass
    assert not (tmp_path / "f").exists() and not (tmp_path / "g").exists()


def test_video_or_folder_from_the_name():
    assert is_video_path("a/b.MP4") and is_video_path("x.mkv")
    assert not is_video_path("frames") and not is_video_path("frames/")
