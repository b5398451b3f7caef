"""Writing rendered frames: an .mp4 (H.264 through imageio-ffmpeg's bundled ffmpeg) or a
folder of numbered PNGs, completed atomically.

    with FrameWriter("orbit.mp4", fps=30) as out:
        for cam in path.frames():
            out.write(render(g, cam).rgb)          # [H, W, 3] float in [0, 1] or uint8

Nothing appears under the final name until every frame is written: the video goes to a
temporary file beside it and is renamed on success; frames go to a temporary folder that
replaces the target folder on success. On an exception the partial output is removed and
whatever was there before is left as it was.

H.264 in yuv420p needs even sizes: an odd width or height is padded by one pixel
(repeating the last column or row) and `padded` says so.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from render.io.atomic import file_mode, make_temp_dir
from viewer.capture import save_png, to_uint8

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv")
_FRAME_NAME = re.compile(r"^\d{5,}\.png$")


class VideoError(RuntimeError):
    """The output cannot be written (ffmpeg missing, folder in the way, size changes)."""


def is_video_path(out) -> bool:
    """True for a video file name (.mp4, .mov, .mkv), False for a frames folder."""
    return Path(out).suffix.lower() in VIDEO_SUFFIXES


class FrameWriter:
    """A context manager that writes frames to a video file or a folder of PNGs.

    Args:
        out: `*.mp4|*.mov|*.mkv` for a video, anything else for a folder of
            `00000.png, 00001.png, ...`. An existing video file is replaced once the new
            one is complete. An existing folder is replaced only if it holds nothing but
            numbered PNG frames (a previous render); otherwise VideoError.
        fps: frames per second of the video.
        quality: imageio-ffmpeg's quality 0-10 (10 best); 8 is visually lossless for
            renders.
        metadata: PNG text chunks for every frame of a folder.

    Attributes:
        frames_written: how many frames went in.
        size: (width, height) of the frames given, set by the first write.
        padded: True when odd sizes were padded to even for the video.
    """

    def __init__(self, out, fps: float = 30.0, quality: int = 8,
                 metadata: dict[str, str] | None = None):
        self.out = Path(out)
        self.fps = float(fps)
        self.quality = int(quality)
        self.metadata = dict(metadata or {})
        self.is_video = is_video_path(self.out)
        self.frames_written = 0
        self.size: tuple[int, int] | None = None
        self.padded = False
        self._tmp: Path | None = None
        self._encoder = None
        if not self.fps > 0:
            raise VideoError(f"{self.out}: fps must be positive, got {fps}")

    # -- context manager -----------------------------------------------------------------
    def __enter__(self) -> FrameWriter:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        if self.is_video:
            if self.out.is_dir():
                raise VideoError(f"{self.out}: is a folder, expected a video file name")
            fd, tmp = tempfile.mkstemp(prefix=f".{self.out.stem}.", suffix=self.out.suffix,
                                       dir=self.out.parent)
            try:  # the video gets the mode open() would give it, not mkstemp's 0600
                os.fchmod(fd, file_mode(self.out))
            finally:
                os.close(fd)
            self._tmp = Path(tmp)
        else:
            _check_replaceable_folder(self.out)
            self._tmp = make_temp_dir(self.out)  # the umask's mode, not mkdtemp's 0700
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- frames --------------------------------------------------------------------------
    def write(self, rgb) -> None:
        """Append one frame: [H, W, 3] uint8, or float in [0, 1] (tensor or array)."""
        if self._tmp is None:
            raise VideoError("FrameWriter.write called outside its `with` block")
        frame = to_uint8(rgb)
        if frame.shape[2] != 3:
            raise VideoError(f"{self.out}: frames must be RGB [H, W, 3], got {frame.shape}")
        h, w = frame.shape[:2]
        if self.size is None:
            self.size = (w, h)
        elif self.size != (w, h):
            raise VideoError(f"{self.out}: frame {self.frames_written} is {w}x{h}, the "
                             f"first was {self.size[0]}x{self.size[1]}")
        if self.is_video:
            self._write_video_frame(frame)
        else:
            # save_png would create a missing folder: a staging folder removed mid-job (its
            # parent deleted by another program) would come back without the earlier frames
            if not self._tmp.is_dir():
                raise VideoError(f"{self.out}: the folder {self.out.parent} was removed "
                                 f"during the job, after {self.frames_written} frames")
            save_png(self._tmp / f"{self.frames_written:05d}.png", frame, self.metadata)
        self.frames_written += 1

    def _write_video_frame(self, frame: np.ndarray) -> None:
        h, w = frame.shape[:2]
        if h % 2 or w % 2:
            # yuv420p halves the chroma resolution: odd sizes are padded by edge repetition
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            self.padded = True
        if self._encoder is None:
            self._encoder = self._start_encoder(frame.shape[1], frame.shape[0])
        try:
            self._encoder.send(np.ascontiguousarray(frame))
        except (OSError, StopIteration, RuntimeError) as e:
            raise VideoError(f"{self.out}: ffmpeg stopped: {e}") from e

    def _start_encoder(self, width: int, height: int):
        try:
            import imageio_ffmpeg
        except ImportError as e:
            raise VideoError("writing video needs imageio-ffmpeg: pip install "
                             "'mipview[video]' (or imageio-ffmpeg), or give a folder "
                             "name to write PNG frames") from e
        enc = imageio_ffmpeg.write_frames(
            str(self._tmp), (width, height), fps=self.fps, codec="libx264",
            pix_fmt_in="rgb24", pix_fmt_out="yuv420p", quality=self.quality,
            macro_block_size=1,  # no resizing to multiples of 16: we pad to even ourselves
            ffmpeg_log_level="error",
            output_params=["-movflags", "+faststart"] if self.out.suffix.lower() in
            (".mp4", ".mov") else None,
        )
        enc.send(None)  # start the generator (and ffmpeg)
        return enc

    # -- finishing -----------------------------------------------------------------------
    def close(self) -> Path:
        """Finish: move the complete output to its final name. Returns that name."""
        if self._tmp is None:
            return self.out
        if self.frames_written == 0:
            self.abort()
            raise VideoError(f"{self.out}: no frames were written")
        try:
            if self.is_video:
                encoder, self._encoder = self._encoder, None
                try:
                    encoder.close()  # waits for ffmpeg to finish the file
                except Exception as e:  # ffmpeg failed at the end (disk full, ...)
                    raise VideoError(f"{self.out}: ffmpeg failed: {e}") from e
                os.replace(self._tmp, self.out)
            else:
                old = None
                if self.out.exists():
                    # move the previous frames aside first, so a failure keeps them
                    _check_replaceable_folder(self.out)
                    old = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.old.",
                                                dir=self.out.parent))
                    os.replace(self.out, old / "frames")
                try:
                    os.replace(self._tmp, self.out)
                except OSError:
                    if old is not None:
                        os.replace(old / "frames", self.out)
                        shutil.rmtree(old, ignore_errors=True)
                    raise
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            self.abort()
            raise
        self._tmp = None
        return self.out

    def abort(self) -> None:
        """Drop the partial output; the final name is left as it was."""
        if self._encoder is not None:
            try:
                self._encoder.close()
            except Exception:  # ffmpeg may already be gone; the file is discarded anyway
                pass
            self._encoder = None
        if self._tmp is not None:
            if self._tmp.is_dir():
                shutil.rmtree(self._tmp, ignore_errors=True)
            else:
                self._tmp.unlink(missing_ok=True)
            self._tmp = None


VideoWriter = FrameWriter
"""The name the rest of mipview uses: the same class."""


def _check_replaceable_folder(folder: Path) -> None:
    """Refuse to replace a folder that holds anything other than numbered PNG frames:
    plain files named 00000.png, ... (what a render writes). A sub-folder or link named
    like a frame is not one of ours and keeps the folder from being replaced."""
    if not folder.exists() and not folder.is_symlink():
        return
    if folder.is_symlink() or not folder.is_dir():
        raise VideoError(f"{folder}: exists and is not a folder (give a name ending in "
                         f"{', '.join(VIDEO_SUFFIXES)} for a video)")
    others = [p.name + ("/" if p.is_dir() else "") for p in folder.iterdir()
              if not (_FRAME_NAME.match(p.name) and p.is_file() and not p.is_symlink())]
    if others:
        raise VideoError(f"{folder}: folder exists and holds other files ({others[0]!r}, ...); "
                         "not replacing it, choose another output folder")
