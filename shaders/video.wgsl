// The window's video panes: a square of a video frame (the camera crop, or the animated output)
// drawn into the pane's viewport, optionally mirrored, with the selected portrait blended over it
// at an adjustable opacity (the alignment overlay). The viewport is the pane's rectangle, so the
// quad covers clip space.

struct Pane {
    // The square of the frame to show, in texture coordinates: (u0, v0, u1, v1).
    crop: vec4<f32>,
    // x: mirror (0 or 1), y: overlay opacity (0..1), z: has a frame (0 or 1), w: unused.
    flags: vec4<f32>,
};

@group(0) @binding(0) var frame_tex: texture_2d<f32>;
@group(0) @binding(1) var overlay_tex: texture_2d<f32>;
@group(0) @binding(2) var smp: sampler;
@group(0) @binding(3) var<uniform> pane: Pane;

struct VertexOut {
    @builtin(position) position: vec4<f32>,
    // (0, 0) top left to (1, 1) bottom right of the pane.
    @location(0) uv: vec2<f32>,
};

@vertex
fn vs_main(@builtin(vertex_index) i: u32) -> VertexOut {
    // Two triangles: (0,0) (1,0) (0,1) and (0,1) (1,0) (1,1).
    var corners = array<vec2<f32>, 6>(
        vec2<f32>(0.0, 0.0), vec2<f32>(1.0, 0.0), vec2<f32>(0.0, 1.0),
        vec2<f32>(0.0, 1.0), vec2<f32>(1.0, 0.0), vec2<f32>(1.0, 1.0),
    );
    let c = corners[i];
    var out: VertexOut;
    out.position = vec4<f32>(c.x * 2.0 - 1.0, 1.0 - c.y * 2.0, 0.0, 1.0);
    out.uv = c;
    return out;
}

@fragment
fn fs_main(in: VertexOut) -> @location(0) vec4<f32> {
    // Mirroring flips the whole pane, overlay included, so the face and the portrait stay lined
    // up as the model sees them.
    var p = in.uv;
    if (pane.flags.x > 0.5) {
        p.x = 1.0 - p.x;
    }
    let uv = mix(pane.crop.xy, pane.crop.zw, p);
    // A pane with no frame yet is dark grey rather than undefined.
    var colour = vec3<f32>(0.12, 0.12, 0.12);
    if (pane.flags.z > 0.5) {
        colour = textureSample(frame_tex, smp, uv).rgb;
    }
    let over = textureSample(overlay_tex, smp, p).rgb;
    colour = mix(colour, over, clamp(pane.flags.y, 0.0, 1.0));
    return vec4<f32>(colour, 1.0);
}
