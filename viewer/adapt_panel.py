"""The Mipmap-GS panel: immediate-mode ImGui, a function of the AdaptController's state.

Auto-adapt toggle; the current scale, the wanted level and the level in use (source B);
the worker's progress (phase, step/total, loss, ETA) with Cancel; a failed job's error
in red; the table of cached levels (Gaussians, build time, Show, Delete, Export .ply);
"Build level now" for a chosen level; "this view is x1"; settings (iterations, views,
zoom-in pseudo-GT, named). Every action goes through the controller's methods.
"""

from __future__ import annotations

from imgui_bundle import imgui

from adapt.scale import level_label, scale_label
from viewer.adaptation import (
    LEVELS,
    AdaptController,
    AdaptOptions,
    error_text,
    level_rows,
    progress_text,
    zoom_in_pseudo_gt_text,
)

_GREY = imgui.ImVec4(0.65, 0.65, 0.65, 1.0)
_RED = imgui.ImVec4(1.0, 0.4, 0.35, 1.0)
_GREEN = imgui.ImVec4(0.45, 0.9, 0.45, 1.0)
_LEVEL_NAMES = [level_label(lv) for lv in LEVELS]


def draw_adapt_section(app) -> None:
    """The panel's body (inside the side window's "Mipmap-GS" header)."""
    ctrl: AdaptController = app.adaptation
    s = app.state
    changed, auto = imgui.checkbox("auto-adapt to the zoom", ctrl.auto)
    if changed:
        ctrl.set_auto(auto)
    scale = s.scale
    zoom = scale_label(scale) if scale is not None and scale > 0 else "×?"
    imgui.text(f"zoom {zoom}   wanted {level_label(ctrl.wanted_level)}   "
               f"in use {level_label(ctrl.level_in_use)}")
    changed, ctrl.plug_b = imgui.checkbox("compare B = Mipmap-GS", ctrl.plug_b)
    if s.compare.mode == "single" and ctrl.plug_b:
        imgui.same_line()
        if imgui.small_button("split A | B"):
            s.compare.mode = "split"
    if not ctrl.ready:
        imgui.text_colored(_GREY, "starting the adaptation worker ...")
    _draw_progress(ctrl)
    err = error_text(ctrl)
    if err:
        imgui.push_text_wrap_pos(0.0)
        imgui.text_colored(_RED, err)
        imgui.pop_text_wrap_pos()
    if ctrl.message:
        imgui.text_colored(_GREEN, ctrl.message)
    _draw_levels(app, ctrl)
    _draw_build(app, ctrl)
    if imgui.tree_node("adaptation settings"):
        _draw_settings(ctrl)
        imgui.tree_pop()


def _draw_progress(ctrl: AdaptController) -> None:
    st = ctrl.status
    frac, text = progress_text(st)
    imgui.progress_bar(frac, imgui.ImVec2(-70 if ctrl.busy() else -1, 0), text)
    if ctrl.busy():
        imgui.same_line()
        if imgui.button("Cancel"):
            ctrl.cancel()


def _draw_levels(app, ctrl: AdaptController) -> None:
    rows = level_rows(ctrl)
    if not rows:
        imgui.text_colored(_GREY, "no levels built yet (level 1 is the model itself)")
        return
    flags = imgui.TableFlags_.row_bg | imgui.TableFlags_.borders_inner_h
    if not imgui.begin_table("levels", 4, flags):
        return
    imgui.table_setup_column("level")
    imgui.table_setup_column("Gaussians")
    imgui.table_setup_column("built in")
    imgui.table_setup_column("")
    imgui.table_headers_row()
    export_level = None
    for level, name, count, secs in rows:
        imgui.table_next_row()
        imgui.table_next_column()
        if level == ctrl.level_in_use:
            imgui.text_colored(_GREEN, f"{name} (B)")
        else:
            imgui.text(name)
        imgui.table_next_column()
        imgui.text(count)
        imgui.table_next_column()
        imgui.text(secs)
        imgui.table_next_column()
        if imgui.small_button(f"Show##{level}"):
            ctrl.use_level(level)
        imgui.same_line()
        if imgui.small_button(f"Del##{level}"):
            ctrl.delete(level)
        imgui.same_line()
        if imgui.small_button(f".ply##{level}"):
            export_level = level
    imgui.end_table()
    opts = ctrl.options
    imgui.set_next_item_width(-1)
    _, opts.export_path = imgui.input_text_with_hint("##export", "export path (.ply .spz .sog ...)",
                                                     opts.export_path)
    _, opts.export_baked = imgui.checkbox("bake the filter (viewers without the tag)",
                                          opts.export_baked)
    if export_level is not None:
        path = opts.export_path.strip() or ctrl.default_export_path(export_level)
        opts.export_path = path
        ctrl.export(export_level, path)


def _draw_build(app, ctrl: AdaptController) -> None:
    opts = ctrl.options
    idx = LEVELS.index(opts.build_level) if opts.build_level in LEVELS else 0
    imgui.set_next_item_width(70)
    _, idx = imgui.combo("##buildlevel", idx, _LEVEL_NAMES)
    opts.build_level = LEVELS[idx]
    imgui.same_line()
    if imgui.button("Build level now"):
        ctrl.build(opts.build_level, app.view_camera())
    if imgui.button("This view is x1"):
        ctrl.rebase(app.view_camera())
    if ctrl.rebased is not None:
        imgui.same_line()
        if imgui.button("Model's base"):
            ctrl.reset_base(app)


def _draw_settings(ctrl: AdaptController) -> None:
    opts: AdaptOptions = ctrl.options
    _, opts.iters = imgui.input_int("iterations", opts.iters, 100, 1000)
    opts.iters = max(1, opts.iters)
    _, opts.views = imgui.input_int("views", opts.views, 1, 8)
    opts.views = max(1, opts.views)
    _, opts.sr_model = imgui.input_text_with_hint(
        "pseudo-GT", "default (or waifu2x, adaptive, bicubic, a spandrel checkpoint)",
        opts.sr_model)
    imgui.push_text_wrap_pos(0.0)
    imgui.text_colored(_GREY, zoom_in_pseudo_gt_text(opts))
    imgui.pop_text_wrap_pos()
    _, opts.rival_check = imgui.checkbox("base in a 2D mode if better", opts.rival_check)
    if imgui.is_item_hovered():
        imgui.set_tooltip("a level that scores under the base drawn adaptive or under blend\n"
                          "on held-out views is that instead")
    if imgui.button("Apply (restarts the worker)"):
        ctrl.apply_settings()
    imgui.text_colored(_GREY, "cache: " + (str(ctrl.cache.directory) if ctrl.cache
                                           and ctrl.cache.directory else "-"))
