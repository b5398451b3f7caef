"""The camera-path editor: keyframes from the current view, a timeline, playback, save/load.

Two layers: plain functions on :class:`PathEditorState` hold all the logic (add, delete,
reorder, scrub, play, save, load) and are tested without a window; :func:`draw_path_panel`
is the imgui-bundle immediate-mode panel that calls them. The viewer calls, every frame,

    cam = advance(state, dt) or draw_path_panel(state, current_camera)
    if cam is not None: show cam (and make it the current view)

Cameras returned here have the size of the view last passed to draw_path_panel (the
window), with the path's vertical field of view; videos use the path's own render size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from render.camera import Camera
from viewer.camera_path import (
    CameraPath,
    CameraPathError,
    Keyframe,
    load_camera_path,
    save_camera_path,
)


@dataclass
class PathEditorState:
    """Everything the path editor remembers between frames.

    Attributes:
        path: the path being edited.
        selected: index of the selected keyframe, -1 for none.
        playing: whether playback runs.
        time: playhead in seconds, in [0, path.seconds].
        loop: playback starts over at the end (a closed path, `path.loop`, always does).
        file_name: where Save writes and Load reads.
        last_error: the last failure (load/save/edit), shown in red; "" when none.
        last_message: the last success ("saved ..."), shown in green.
        view_size: (width, height) of the viewer's view; cameras returned come at this size.
    """

    path: CameraPath = field(default_factory=CameraPath)
    selected: int = -1
    playing: bool = False
    time: float = 0.0
    loop: bool = False
    file_name: str = "camera_path.json"
    last_error: str = ""
    last_message: str = ""
    view_size: tuple[int, int] | None = None

    def camera(self) -> Camera | None:
        """The path's camera at the playhead (at view_size), None without keyframes."""
        if not self.path.keyframes:
            return None
        w, h = self.view_size or (self.path.width, self.path.height)
        return self.path.camera_at(self.time, w, h)

    def _ok(self, message: str = "") -> None:
        self.last_error, self.last_message = "", message

    def _fail(self, message: str) -> None:
        self.last_error, self.last_message = message, ""


# ---------------------------------------------------------------------------------------
# Logic (no imgui)
# ---------------------------------------------------------------------------------------
def add_keyframe(state: PathEditorState, camera: Camera) -> int:
    """Add the view as a keyframe after the selected one (or at the end); select it and
    move the playhead onto it. Returns its index."""
    at = state.selected + 1 if 0 <= state.selected < len(state.path.keyframes) else None
    i = state.path.add_keyframe(Keyframe.from_camera(camera), at)
    state.selected = i
    state.time = state.path.keyframe_time(i)
    state._ok(f"added keyframe {i + 1}")
    return i


def update_selected(state: PathEditorState, camera: Camera) -> bool:
    """Replace the selected keyframe by the view. False when none is selected."""
    if not 0 <= state.selected < len(state.path.keyframes):
        state._fail("select a keyframe to update")
        return False
    state.path.replace_keyframe(state.selected, Keyframe.from_camera(camera))
    state._ok(f"updated keyframe {state.selected + 1}")
    return True


def delete_selected(state: PathEditorState) -> bool:
    """Delete the selected keyframe; the selection moves to its predecessor."""
    n = len(state.path.keyframes)
    if not 0 <= state.selected < n:
        state._fail("select a keyframe to delete")
        return False
    state.path.delete_keyframe(state.selected)
    state.selected = min(state.selected, n - 2) if n > 1 else -1
    state.time = min(state.time, state.path.seconds)
    state._ok("deleted keyframe")
    return True


def move_selected(state: PathEditorState, delta: int) -> bool:
    """Move the selected keyframe `delta` places (-1 up/earlier, +1 down/later)."""
    n = len(state.path.keyframes)
    if not 0 <= state.selected < n:
        state._fail("select a keyframe to move")
        return False
    target = state.selected + delta
    if not 0 <= target < n:
        return False
    state.selected = state.path.move_keyframe(state.selected, target)
    state._ok("")
    return True


def select(state: PathEditorState, index: int) -> Camera | None:
    """Select keyframe `index` and put the playhead on it; returns its camera."""
    if not 0 <= index < len(state.path.keyframes):
        return None
    state.selected = index
    state.time = state.path.keyframe_time(index)
    state.playing = False
    return state.camera()


def scrub(state: PathEditorState, t_seconds: float) -> Camera | None:
    """Move the playhead to t (clamped to the path); returns the camera there."""
    state.time = min(max(float(t_seconds), 0.0), state.path.seconds)
    return state.camera()


def toggle_play(state: PathEditorState) -> None:
    """Play from the playhead (from the start when it sits at the end), or pause."""
    if state.playing:
        state.playing = False
        return
    if not state.path.keyframes:
        state._fail("add keyframes to play the path")
        return
    if state.time >= state.path.seconds and not (state.loop or state.path.loop):
        state.time = 0.0
    state.playing = True


def advance(state: PathEditorState, dt_seconds: float) -> Camera | None:
    """Playback: move the playhead by dt and return the camera to show; None when not
    playing. At the end it starts over (loop or closed path) or stops on the last frame."""
    if not state.path.keyframes:
        state.playing = False  # e.g. the last keyframe was deleted during playback
        return None
    if not state.playing:
        return None
    seconds = state.path.seconds
    if not seconds > 0:
        state.playing = False
        return None
    t = state.time + max(0.0, float(dt_seconds))
    if t >= seconds:
        if state.loop or state.path.loop:
            t = t % seconds
        else:
            t = seconds
            state.playing = False
    state.time = t
    return state.camera()


def save(state: PathEditorState) -> bool:
    """Save the path to state.file_name; an error goes to state.last_error."""
    try:
        written = save_camera_path(state.path, state.file_name)
    except CameraPathError as e:
        state._fail(str(e))
        return False
    state._ok(f"saved {written} ({state.path.n_frames} frames)")
    return True


def load(state: PathEditorState) -> bool:
    """Load state.file_name; on failure the current path stays and the error is shown."""
    try:
        path = load_camera_path(state.file_name)
    except CameraPathError as e:
        state._fail(str(e))
        return False
    state.path = path
    state.selected = 0 if path.keyframes else -1
    state.time = 0.0
    state.playing = False
    state._ok(f"loaded {state.file_name}: {len(path.keyframes)} keyframes, "
              f"{path.n_frames} frames")
    return True


# ---------------------------------------------------------------------------------------
# The imgui panel
# ---------------------------------------------------------------------------------------
_RED = (1.0, 0.35, 0.3, 1.0)
_GREEN = (0.45, 0.9, 0.45, 1.0)


def draw_path_panel(state: PathEditorState, current: Camera, *,
                    own_window: bool = True) -> Camera | None:
    """Draw the camera-path panel (imgui-bundle, immediate mode) for one frame.

    Args:
        state: the editor state, changed in place by the widgets.
        current: the camera the viewer shows now (source of new keyframes; its size is
            the size of the cameras returned).
        own_window: draw inside an "Camera path" window (else into the current one).

    Returns:
        the camera to show when the user scrubs the timeline, jumps to a keyframe or
        loads a path; None otherwise (playback cameras come from :func:`advance`).
    """
    from imgui_bundle import imgui

    state.view_size = (current.width, current.height)
    show: Camera | None = None
    if own_window:
        visible = imgui.begin("Camera path")[0]
        if not visible:
            imgui.end()
            return None
    path = state.path
    n = len(path.keyframes)
    imgui.text(f"{n} keyframes, {path.n_frames} frames, {path.seconds:.2f} s at "
               f"{path.fps:g} fps")

    # -- keyframe buttons ------------------------------------------------------------------
    if imgui.button("Add view"):
        add_keyframe(state, current)
    imgui.same_line()
    if imgui.button("Update"):
        update_selected(state, current)
    imgui.same_line()
    if imgui.button("Delete"):
        delete_selected(state)
    imgui.same_line()
    if imgui.button("Up"):
        move_selected(state, -1)
    imgui.same_line()
    if imgui.button("Down"):
        move_selected(state, +1)
    imgui.same_line()
    if imgui.button("Clear") and n:
        path.clear()
        state.selected, state.time, state.playing = -1, 0.0, False
        state._ok("cleared")

    # -- keyframe list ---------------------------------------------------------------------
    n = len(path.keyframes)
    if n and imgui.begin_list_box("##keyframes", imgui.ImVec2(-1, min(6, n) * 20 + 6)):
        for i, kf in enumerate(path.keyframes):
            label = (f"{i + 1:>3}  t={path.keyframe_time(i):6.2f}s  "
                     f"fov {kf.fov_y_deg:5.1f} deg##kf{i}")
            if imgui.selectable(label, i == state.selected)[0]:
                show = select(state, i)
        imgui.end_list_box()

    # -- timeline and playback -------------------------------------------------------------
    changed, t = imgui.slider_float("time (s)", state.time, 0.0, max(path.seconds, 1e-6))
    if changed or (imgui.is_item_active() and n):
        state.playing = False
        show = scrub(state, t)
    if imgui.button("Pause" if state.playing else "Play"):
        toggle_play(state)
    imgui.same_line()
    _, state.loop = imgui.checkbox("Loop playback", state.loop)
    imgui.same_line()
    changed, closed = imgui.checkbox("Closed path", path.loop)
    if changed:
        path.loop, path.baked = closed, None

    # -- render settings -------------------------------------------------------------------
    changed, fps = imgui.input_float("fps", float(path.fps), 1.0, 10.0, "%.2f")
    if changed and fps > 0:
        path.fps = fps
    changed, seconds = imgui.input_float("seconds", float(path.seconds), 0.5, 5.0, "%.2f")
    if changed and seconds > 0:
        path.seconds = seconds
        state.time = min(state.time, seconds)
    changed, size = imgui.input_int2("render size", [int(path.width), int(path.height)])
    if changed and size[0] > 0 and size[1] > 0:
        path.width, path.height = int(size[0]), int(size[1])
    changed, smooth = imgui.slider_float("smoothness", float(path.smoothness), 0.0, 1.0)
    if changed:
        path.smoothness, path.baked = smooth, None

    # -- file ------------------------------------------------------------------------------
    _, state.file_name = imgui.input_text("file", state.file_name)
    if imgui.button("Save path"):
        save(state)
    imgui.same_line()
    if imgui.button("Load path") and load(state):
        show = state.camera()
    if state.last_error:
        imgui.push_text_wrap_pos(0.0)
        imgui.text_colored(imgui.ImVec4(*_RED), state.last_error)
        imgui.pop_text_wrap_pos()
    elif state.last_message:
        imgui.text_colored(imgui.ImVec4(*_GREEN), state.last_message)
    if n:
        imgui.text_disabled(f"video: mipview render MODEL --path {state.file_name} "
                            "--out video.mp4")
    if own_window:
        imgui.end()
    return show
