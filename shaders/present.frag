#version 330
// The present pass (viewer.display.Presenter): a rectangle of a texture as it is, or with
// SOLID defined the split's divider line. Frames are opaque; the cached panels
// (viewer.display.UILayer) hold premultiplied colours and go over them blended (one,
// 1 - src alpha). The layout is viewer.compare.compose's.
// Textures hold images bottom row first (viewer.display.FrameTexture), as GL counts rows.
// The display sets each pane texture's filter: nearest when it has its pane's size
// (exact pixels), bilinear when not (a reduced resolution while moving).
// Nothing but the texture lookup: with it, a window without depth buffer and nearest
// sampling of B8G8R8A8 storage, Mesa's llvmpipe copies rows instead of running a shader.
uniform sampler2D tex;
uniform vec3 line_rgb;  // the divider line's colour
in vec2 v_uv;
out vec4 frag;

void main() {
#ifdef SOLID
    frag = vec4(line_rgb, 1.0);
#else
    frag = texture(tex, v_uv);
#endif
}
