#version 330
// One rectangle of the present pass (viewer.display.Presenter): a pane of a frame texture,
// or with SOLID defined the split's divider line; with UI_LAYER defined the cached panels
// are composited over it in the same pass. The layout is viewer.compare.compose's.
// Textures hold images bottom row first (viewer.display.FrameTexture), as GL counts rows.
// The display sets each pane texture's filter: nearest when it has its pane's size
// (exact pixels), bilinear when not (a reduced resolution while moving).
uniform sampler2D tex;
uniform vec3 line_rgb;  // the divider line's colour
in vec2 v_uv;
#ifdef UI_LAYER
// The cached panels (viewer.display.UILayer): window-sized, premultiplied colours.
uniform sampler2D ui;
in vec2 v_ui;
#endif
out vec4 frag;

void main() {
#ifdef SOLID
    frag = vec4(line_rgb, 1.0);
#else
    frag = vec4(texture(tex, v_uv).rgb, 1.0);
#endif
#ifdef UI_LAYER
    vec4 u = texture(ui, v_ui);
    frag.rgb = frag.rgb * (1.0 - u.a) + u.rgb;
#endif
}
