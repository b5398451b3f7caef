#version 330
// Composites the cached UI layer (ImGui drawn into a transparent texture of the window's
// size, colours premultiplied by its blending) over the frame: blend ONE, 1 - src alpha.
uniform sampler2D ui;
out vec4 frag;

void main() {
    frag = texelFetch(ui, ivec2(gl_FragCoord.xy), 0);
}
