#version 330
// Composites the cached UI layer (ImGui drawn into a transparent texture of the window's
// size, colours premultiplied by its blending) over the frame: blend ONE, 1 - src alpha.
// Drawn as a window-sized rectangle (present.vert); nearest sampling at pixel centres.
uniform sampler2D ui;
in vec2 v_ui;
out vec4 frag;

void main() {
    frag = texture(ui, v_ui);
}
