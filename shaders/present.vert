#version 330
// A screen-aligned rectangle (a triangle strip of four corners) with the texture
// coordinates of its corners: the software GL (llvmpipe) samples textures on a fast path
// only from coordinates interpolated like these, not from ones computed per pixel.
in vec2 pos;            // corner in clip space
in vec2 uv;             // the pane texture's coordinates at this corner
uniform vec2 ui_origin; // the UI layer's coordinates at clip (-1, -1) ...
uniform vec2 ui_extent; // ... and their change to clip (1, 1)
out vec2 v_uv;
out vec2 v_ui;

void main() {
    v_uv = uv;
    v_ui = ui_origin + (pos * 0.5 + 0.5) * ui_extent;
    gl_Position = vec4(pos, 0.0, 1.0);
}
