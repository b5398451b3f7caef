#version 330
// Shows the frame texture(s) in the viewport; the numpy twin is viewer.compare.compose.
// Textures hold images bottom row first (viewer.display.FrameTexture), as gl_FragCoord.
// mode 0: single (tex_a); 1: split at divider_px (left A, right B) with a divider line;
// 2: side by side (A in [0, W/2), B in [W/2, W)).
// The display compiles variants with MODE (0-2) and SAMPLE_EXACT / SAMPLE_SCALED
// defined: the software GL (llvmpipe) runs every branch of a pixel's shader, so
// compile-time choices cut its per-pixel cost about fourfold. Undefined: runtime choices.
uniform sampler2D tex_a;
uniform sampler2D tex_b;
#ifdef MODE
const int mode = MODE;
#else
uniform int mode;
#endif
uniform vec2 origin;       // viewport origin in window pixels (gl_FragCoord space)
uniform vec2 view_size;    // viewport size in pixels
uniform float divider_px;  // split position, whole pixels
uniform float line_half;   // divider line half-width in pixels
uniform vec3 line_rgb;     // divider line colour
#ifdef UI_LAYER
// The cached panels (viewer.display.UILayer): window-sized, premultiplied colours,
// composited here in the same pass rather than by a second, blended one.
uniform sampler2D ui;
#endif
out vec4 frag;

vec4 sample_pane(sampler2D tex, vec2 p, vec2 pane) {
    // p: pixel centre inside the pane, y up; pane: pane size in pixels.
#if defined(SAMPLE_EXACT)
    return texelFetch(tex, ivec2(floor(p)), 0);
#elif defined(SAMPLE_SCALED)
    return texture(tex, p / pane);
#else
    ivec2 ts = textureSize(tex, 0);
    if (ts == ivec2(pane)) {
        return texelFetch(tex, ivec2(floor(p)), 0);  // full resolution: exact pixels
    }
    return texture(tex, p / pane);  // reduced resolution while moving: bilinear
#endif
}

void main() {
    vec2 p = gl_FragCoord.xy - origin;
    if (mode == 2) {
        float left = floor(view_size.x / 2.0);
        if (p.x < left) {
            frag = sample_pane(tex_a, p, vec2(left, view_size.y));
        } else {
            frag = sample_pane(tex_b, p - vec2(left, 0.0), vec2(view_size.x - left, view_size.y));
        }
    } else if (mode == 1) {
        frag = (p.x < divider_px) ? sample_pane(tex_a, p, view_size)
                                   : sample_pane(tex_b, p, view_size);
        if (abs(p.x - divider_px) < line_half) {
            frag = vec4(line_rgb, 1.0);
        }
    } else {
        frag = sample_pane(tex_a, p, view_size);
    }
    frag.a = 1.0;
#ifdef UI_LAYER
    vec4 u = texelFetch(ui, ivec2(gl_FragCoord.xy), 0);
    frag.rgb = frag.rgb * (1.0 - u.a) + u.rgb;
#endif
}
