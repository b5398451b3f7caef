"""The ImGui panels, immediate mode: each panel is a function of the viewer state, drawn
every frame. Widgets edit the state in place; actions that need the window (open a file,
take a screenshot, jump to a camera) go through the app's methods.
"""

from __future__ import annotations

import math
from pathlib import Path

from imgui_bundle import imgui

from render.options import ANTIALIAS_MODES, OUTPUTS
from viewer import controls as C
from viewer.compare import COMPARE_MODES, MODE_LABELS, divider_px
from viewer.display import Box

KEYBOARD_HELP: list[tuple[str, str]] = [
    ("Left drag", "orbit around the pivot (fly mode: look around)"),
    ("Right / middle drag", "pan"),
    ("Scroll", "dolly towards / away from the pivot"),
    ("Ctrl or Alt + scroll", "zoom the field of view"),
    ("W A S D", "move forward / left / back / right (Shift: 4x faster)"),
    ("Q / E", "move down / up along the world up axis"),
    ("Tab", "toggle fly mode (left drag looks around)"),
    ("R", "reset the view"),
    ("F", "frame the model"),
    (". / ,  (PgDn / PgUp)", "next / previous training camera"),
    ("C", "cycle compare mode: single, split, side by side"),
    ("X", "flip the single view between A and B"),
    ("Drag the divider", "move the split between A and B"),
    ("1 / 2 / 3 / 4", "antialias classic / mip / adaptive / blend"),
    ("F12 or Ctrl+S", "screenshot (PNG with metadata)"),
    ("Ctrl+O", "open a model (or drop a file on the window)"),
    ("H", "hide / show the panels"),
    ("F1", "keyboard help"),
    ("Esc", "leave fly mode, close an error"),
]

PANEL_WIDTH = 300.0
SHORT_MODE_LABELS = {"single": "single", "split": "split", "side_by_side": "side by side"}
_GREY = imgui.ImVec4(0.65, 0.65, 0.65, 1.0)
_RED = imgui.ImVec4(1.0, 0.4, 0.35, 1.0)
_GREEN = imgui.ImVec4(0.45, 0.9, 0.45, 1.0)


def keyboard_help_markdown() -> str:
    """The key bindings as a Markdown table (for the README)."""
    lines = ["| Input | Action |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in KEYBOARD_HELP]
    return "\n".join(lines)


def scale_text(scale: float | None) -> str:
    if scale is None or not math.isfinite(scale) or scale <= 0:
        return "×?"
    from adapt.scale import scale_label

    return scale_label(scale)


def zoom_readout(s) -> str:
    """The menu bar's zoom readout for a ViewerState, e.g. "zoom ×1/4.3"."""
    return f"zoom {scale_text(s.scale)}"


def draw_all(app) -> list[Box]:
    """Every panel of one frame. Returns the boxes of the windows drawn with an opaque
    background: nothing of the frame shows through them (viewer.display.UILayer copies
    them instead of blending, and the present pass leaves them out)."""
    s = app.state
    opaque = [draw_menu_bar(app)]
    draw_labels(app)
    if s.ui.show_panels:
        opaque.append(draw_side_panel(app))
        draw_camera_path(app)
    if s.ui.show_help:
        draw_help(s)
    draw_error_modal(s)
    return [box for box in opaque if box is not None]


def _opaque_window_box() -> Box | None:
    """The current window's box, if it is drawn whole this frame (not collapsed, nor
    hidden while ImGui sizes it on appearing); its background must be opaque."""
    win = imgui.internal.get_current_window()
    if win.hidden or win.collapsed or imgui.is_window_appearing():
        return None
    return (win.pos.x, win.pos.y, win.pos.x + win.size.x, win.pos.y + win.size.y)


def draw_menu_bar(app) -> Box | None:
    """The main menu bar; returns its box (MenuBarBg is opaque)."""
    s = app.state
    if not imgui.begin_main_menu_bar():
        return None
    box = _opaque_window_box()
    if imgui.begin_menu("File"):
        if imgui.menu_item_simple("Open...", "Ctrl+O"):
            app.open_file_dialog()
        if imgui.menu_item_simple("Open demo scene"):
            app.open_model(None)
        if imgui.begin_menu("Open recent", bool(s.ui.recent)):
            for path in s.ui.recent:
                if imgui.menu_item_simple(path):
                    app.open_model(path)
            imgui.end_menu()
        imgui.separator()
        if imgui.menu_item_simple("Screenshot", "F12"):
            app.screenshot()
        imgui.separator()
        if imgui.menu_item_simple("Quit"):
            app.should_close = True
        imgui.end_menu()
    if imgui.begin_menu("View"):
        if imgui.menu_item_simple("Reset view", "R"):
            app.reset_view()
        if imgui.menu_item_simple("Frame model", "F"):
            app.frame_model()
        _, s.nav.fly = imgui.menu_item("Fly mode", "Tab", s.nav.fly)
        _, s.ui.show_panels = imgui.menu_item("Panels", "H", s.ui.show_panels)
        imgui.end_menu()
    if imgui.begin_menu("Compare"):
        for mode in COMPARE_MODES:
            if imgui.menu_item_simple(MODE_LABELS[mode], None, s.compare.mode == mode):
                s.compare.mode = mode
        if imgui.menu_item_simple("Flip A/B", "X"):
            s.compare.flip()
        imgui.end_menu()
    if imgui.begin_menu("Help"):
        _, s.ui.show_help = imgui.menu_item("Keyboard", "F1", s.ui.show_help)
        imgui.end_menu()
    # The zoom readout, always visible at the right end of the menu bar.
    text = s.ui.readout_shown = zoom_readout(s)
    if s.ui.loading:
        text = f"{loading_text(s.ui)}   " + text
    w = imgui.calc_text_size(text).x
    imgui.same_line(imgui.get_window_width() - w - 12)
    imgui.text(text)
    imgui.end_main_menu_bar()
    return box


def _label(draw, x: float, y: float, text: str) -> None:
    size = imgui.calc_text_size(text)
    draw.add_rect_filled(imgui.ImVec2(x - 4, y - 2), imgui.ImVec2(x + size.x + 4, y + size.y + 2),
                         imgui.get_color_u32(imgui.ImVec4(0.0, 0.0, 0.0, 0.6)), 3.0)
    draw.add_text(imgui.ImVec2(x, y), imgui.get_color_u32(imgui.ImVec4(1, 1, 1, 1)), text)


def draw_labels(app) -> None:
    """Name each side of the view (A / B) over the scene, below the menu bar."""
    s = app.state
    frame = app.shown_frame
    if frame is None:
        return
    labels = frame.request.tag.get("labels", [])
    mode = frame.request.tag.get("mode", "single")
    io = imgui.get_io()
    w, h = io.display_size.x, io.display_size.y
    draw = imgui.get_foreground_draw_list()
    y = h - imgui.get_frame_height() - 6
    if mode == "single" and labels:
        tag = s.compare.shown
        text = f"{tag}: {labels[0]}"
        _label(draw, (w - imgui.calc_text_size(text).x) / 2, y, text)
    elif len(labels) == 2:
        if mode == "split":
            d = divider_px(s.compare.divider, int(w))
            left_x, right_x = d / 2, d + (w - d) / 2
        else:
            left_x, right_x = w / 4, 3 * w / 4
        for cx, tag, lab in ((left_x, "A", labels[0]), (right_x, "B", labels[1])):
            text = f"{tag}: {lab}"
            _label(draw, cx - imgui.calc_text_size(text).x / 2, y, text)


def draw_side_panel(app) -> Box | None:
    """The main panel at the left; returns its box when it is open (its background is
    opaque: cheaper to show with a software GL, see draw_all, and easier to read)."""
    s = app.state
    vp = imgui.get_main_viewport()
    # The menu bar's height is taken off the work area only from the next frame on, so
    # the first placement leaves room for it explicitly.
    top = vp.pos.y + imgui.get_frame_height() + 6
    imgui.set_next_window_pos(imgui.ImVec2(vp.pos.x + 6, top), imgui.Cond_.first_use_ever)
    imgui.set_next_window_size(imgui.ImVec2(PANEL_WIDTH, vp.pos.y + vp.size.y - top - 6),
                               imgui.Cond_.first_use_ever)
    imgui.set_next_window_bg_alpha(1.0)
    visible, _ = imgui.begin("mipview")
    box = _opaque_window_box() if visible else None
    if visible:
        imgui.text_wrapped(s.model.name)
        if s.ui.loading:
            imgui.text_colored(_GREEN, loading_text(s.ui))
        if imgui.collapsing_header("Model"):
            draw_model_section(app)
        if imgui.collapsing_header("Render", imgui.TreeNodeFlags_.default_open):
            draw_render_section(app)
        if imgui.collapsing_header("View", imgui.TreeNodeFlags_.default_open):
            draw_view_section(app)
        if imgui.collapsing_header("Compare", imgui.TreeNodeFlags_.default_open):
            draw_compare_section(app)
        if imgui.collapsing_header("Mipmap-GS", imgui.TreeNodeFlags_.default_open):
            from viewer.adapt_panel import draw_adapt_section

            draw_adapt_section(app)
        if imgui.collapsing_header("Stats", imgui.TreeNodeFlags_.default_open):
            draw_stats_section(s, app.proxy.status)
        if imgui.collapsing_header("Screenshot"):
            draw_screenshot_section(app)
        if imgui.collapsing_header("Training cameras"):
            draw_camera_list(app)
    imgui.end()
    return box


def draw_model_section(app) -> None:
    s = app.state
    if s.model.path is not None:
        imgui.text_wrapped(str(s.model.path))
    for line in s.model.info:
        imgui.text_colored(_GREY, line)
    imgui.set_next_item_width(-70)
    entered, s.ui.open_path = imgui.input_text("##path", s.ui.open_path,
                                               imgui.InputTextFlags_.enter_returns_true)
    imgui.same_line()
    if (imgui.button("Open") or entered) and s.ui.open_path.strip():
        app.open_model(s.ui.open_path.strip())
    if imgui.button("Browse..."):
        app.open_file_dialog()
    imgui.same_line()
    if imgui.button("Demo scene"):
        app.open_model(None)


def _combo(label: str, value: str, items) -> str:
    items = list(items)
    idx = items.index(value) if value in items else 0
    _, idx = imgui.combo(label, idx, items)
    return items[idx]


def draw_render_section(app) -> None:
    r = app.state.render
    st = app.state.stats
    imgui.text(f"backend: {st.backend or app.backend_name}")
    imgui.text_colored(_GREY, f"  ({app.backend_reason})")
    app.set_antialias(_combo("antialias", r.antialias, ANTIALIAS_MODES))
    r.output = _combo("output", r.output, OUTPUTS)
    max_deg = app.state.model.sh_degree
    items = ["model's own"] + [str(d) for d in range(max_deg + 1)]
    _, idx = imgui.combo("SH degree", r.sh_degree + 1 if r.sh_degree <= max_deg else 0, items)
    r.sh_degree = idx - 1
    _, col = imgui.color_edit3("background", list(r.background))
    r.background = tuple(float(c) for c in col)
    _, r.resolution_scale = imgui.slider_float("resolution", r.resolution_scale, 0.25, 2.0,
                                               "%.2fx")
    _, r.adaptive_resolution = imgui.checkbox("lower resolution while moving (CPU)",
                                              r.adaptive_resolution)


def draw_view_section(app) -> None:
    s = app.state
    nav = s.nav
    imgui.text(f"zoom {scale_text(s.scale)}  (full-resolution view)")
    if s.scale_error:
        imgui.text_colored(_RED, s.scale_error)
    changed, fov = imgui.slider_float("FOV (deg)", math.degrees(nav.pose.fov_y), 1.0, 150.0,
                                      "%.1f")
    if changed:
        app.set_fov_deg(fov)
    if imgui.button("Reset view"):
        app.reset_view()
    imgui.same_line()
    if imgui.button("Frame model"):
        app.frame_model()
    imgui.same_line()
    _, nav.fly = imgui.checkbox("fly mode", nav.fly)
    _, nav.fly_speed = imgui.slider_float("fly speed", nav.fly_speed, 1e-3,
                                          max(10.0, nav.fly_speed * 4), "%.3f",
                                          imgui.SliderFlags_.logarithmic)
    if nav.up_from_cameras:
        u = nav.up
        imgui.text_colored(_GREY, f"up from the cameras: ({u[0]:.2f}, {u[1]:.2f}, {u[2]:.2f})")
    else:
        choices = list(C.UP_CHOICES)
        idx = choices.index(nav.up_choice) if nav.up_choice in choices else 0
        changed, idx = imgui.combo("world up", idx, choices)
        if changed:
            app.set_up(choices[idx])
        if nav.up_guessed:
            imgui.text_colored(_GREY, "guessed from the model's flattest axis")


def draw_compare_section(app) -> None:
    s = app.state
    cmp = s.compare
    for i, mode in enumerate(COMPARE_MODES):
        if i:
            imgui.same_line()
        if imgui.radio_button(SHORT_MODE_LABELS[mode], cmp.mode == mode):
            cmp.mode = mode
    if cmp.mode == "single":
        if imgui.radio_button("show A", cmp.shown == "A"):
            cmp.shown = "A"
        imgui.same_line()
        if imgui.radio_button("show B", cmp.shown == "B"):
            cmp.shown = "B"
        imgui.same_line()
        if imgui.button("flip (X)"):
            cmp.shown = "B" if cmp.shown == "A" else "A"
    if cmp.mode == "split":
        _, cmp.divider = imgui.slider_float("divider", cmp.divider, 0.0, 1.0, "%.2f")
    opts = app.ui_options()
    a = app.source_a()
    b = cmp.source_b(a, opts)
    imgui.text_wrapped(f"A: {a.label}")
    imgui.text_wrapped(f"B: {b.label}")
    if cmp.custom_b is not None and imgui.button("B: back to the default"):
        cmp.set_source_b(None)


def loading_text(ui) -> str:
    """The progress line of a model loading in the background (the current one stays
    drawn until the new one is ready)."""
    phase = f" ({ui.loading_phase})" if ui.loading_phase else ""
    return f"loading {Path(ui.loading).name}{phase} ..."


def drawn_set_line(drawn_set: str, proxy) -> str:
    """The stats line saying which set is drawn (proxy / full) and the proxy's state."""
    line = f"set drawn: {drawn_set}"
    if proxy is None or proxy.state == "none":
        return line
    if proxy.state == "ready":
        return line + (f"  (proxy {proxy.gaussians:,}, {proxy.origin} "
                       f"in {proxy.seconds:.1f} s)")
    return line + f"  (proxy {proxy.state}{': ' + proxy.error if proxy.error else ''})"


def draw_stats_section(s, proxy_status=None) -> None:
    st = s.stats
    # Frames are drawn on demand (input, new renders), so the drawn rate drops when
    # nothing happens; the time per drawn frame says how fast the UI can go.
    cap = 1e3 / st.frame_ms if st.frame_ms > 0 else 0.0
    imgui.text(f"UI {st.fps:5.1f} frames/s drawn, {st.frame_ms:5.1f} ms each")
    imgui.text_colored(_GREY, f"  (drawn on demand; up to {cap:,.0f} fps)")
    imgui.text(f"render {st.render_ms:6.1f} ms  display {st.display_ms:4.1f}  "
               f"UI {st.ui_ms:4.1f}")
    size = f"{st.render_size[0]}x{st.render_size[1]}"
    imgui.text(f"render size {size}" + ("" if st.full_res else "  (moving: reduced)"))
    drawn = " + ".join(f"{n:,}" for n in st.n_drawn) or "-"
    imgui.text(f"Gaussians drawn {drawn} of {len(s.model.gaussians):,}")
    imgui.text(drawn_set_line(st.drawn_set, proxy_status))
    imgui.text(st.memory)
    imgui.text(f"frame path: {st.frame_path}")
    imgui.text_colored(_GREY, f"  {st.frame_path_reason}")
    if st.render_error:
        imgui.text_colored(_RED, f"render error: {st.render_error}")


def draw_screenshot_section(app) -> None:
    shot = app.state.shot
    imgui.set_next_item_width(-80)
    _, shot.folder = imgui.input_text("##folder", shot.folder)
    imgui.same_line()
    if imgui.button("Folder..."):
        app.choose_screenshot_folder()
    _, shot.window_size = imgui.checkbox("window size", shot.window_size)
    if not shot.window_size:
        changed, wh = imgui.input_int2("size", [shot.width, shot.height])
        if changed:
            shot.width, shot.height = max(1, wh[0]), max(1, wh[1])
    if imgui.button("Save screenshot (F12)"):
        app.screenshot()
    if shot.last_path:
        imgui.text_colored(_GREEN, f"saved {Path(shot.last_path).name}")
    if shot.last_error:
        imgui.text_colored(_RED, shot.last_error)


def draw_camera_list(app) -> None:
    s = app.state
    names = s.model.camera_names or [f"camera {i}" for i in range(len(s.model.cameras))]
    if not names:
        imgui.text_colored(_GREY, "no training cameras (no cameras.json next to the model)")
        return
    imgui.text_colored(_GREY, ". / , : next / previous")
    if imgui.begin_list_box("##cams", imgui.ImVec2(-1, 160)):
        for i, name in enumerate(names):
            if imgui.selectable(f"{i:>4}  {name}##cam{i}", i == s.nav.camera_index)[0]:
                app.jump_to_camera(i)
        imgui.end_list_box()


def draw_camera_path(app) -> None:
    """The camera-path editor panel (viewer/path_panel.py), placed at the right."""
    from viewer.path_panel import draw_path_panel

    vp = imgui.get_main_viewport()
    imgui.set_next_window_pos(imgui.ImVec2(vp.pos.x + vp.size.x - 6,
                                           vp.pos.y + imgui.get_frame_height() + 6),
                              imgui.Cond_.first_use_ever,
                              imgui.ImVec2(1.0, 0.0))
    imgui.set_next_window_collapsed(True, imgui.Cond_.first_use_ever)
    cam = draw_path_panel(app.path_editor, app.view_camera())
    if cam is not None:
        app.show_camera(cam)


def draw_help(s) -> None:
    imgui.set_next_window_size(imgui.ImVec2(640, 0), imgui.Cond_.first_use_ever)
    visible, opened = imgui.begin("Keyboard", True)
    if visible and imgui.begin_table("keys", 2, imgui.TableFlags_.row_bg):
        for key, action in KEYBOARD_HELP:
            imgui.table_next_row()
            imgui.table_next_column()
            imgui.text(key)
            imgui.table_next_column()
            imgui.text(action)
        imgui.end_table()
    imgui.end()
    if opened is False:
        s.ui.show_help = False


def draw_error_modal(s) -> None:
    """A failed load: the error in a modal; the current model stays."""
    name = "Error##modal"
    if s.ui.error_text and not imgui.is_popup_open(name):
        imgui.open_popup(name)
    vp = imgui.get_main_viewport()
    imgui.set_next_window_pos(vp.get_center(), imgui.Cond_.appearing, imgui.ImVec2(0.5, 0.5))
    imgui.set_next_window_size_constraints(imgui.ImVec2(360, 0), imgui.ImVec2(720, 600))
    if imgui.begin_popup_modal(name, None, imgui.WindowFlags_.always_auto_resize)[0]:
        imgui.text(s.ui.error_title or "Error")
        imgui.separator()
        imgui.push_text_wrap_pos(680)
        imgui.text_colored(_RED, s.ui.error_text)
        imgui.pop_text_wrap_pos()
        imgui.text_colored(_GREY, f"The current model ({s.model.name}) is still open.")
        if imgui.button("OK") or not s.ui.error_text:
            s.ui.error_text = ""
            imgui.close_current_popup()
        imgui.end_popup()
