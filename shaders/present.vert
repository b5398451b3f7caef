#version 330
// A screen-aligned rectangle (two triangles, or a strip of four corners) with the
// texture coordinates of its corners: the software GL (llvmpipe) copies a texture to the
// screen on its fast path only from coordinates interpolated like these, not from ones
// computed per pixel.
in vec2 pos;  // corner in clip space
in vec2 uv;   // the texture's coordinates at this corner
out vec2 v_uv;

void main() {
    v_uv = uv;
    gl_Position = vec4(pos, 0.0, 1.0);
}
