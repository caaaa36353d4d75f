// resize.wgsl — NCHW images made larger and back: nearest-neighbour
// upsampling by whole factors, zero padding, and their gradients (the
// adjoints). h × w is the small image, oh × ow the large one, in either
// direction.
//
// includes: grid.wgsl
//
// Entry points:
//   upsample_forward   out[n, c, y, x] = src[n, c, y / sh, x / sw]; out is
//                      oh × ow = (h·sh) × (w·sw)
//   upsample_backward  out[n, c, y, x] = Σ src[n, c, y·sh + a, x·sw + b] over
//                      a < sh, b < sw in row-major order; out is h × w
//   pad_forward        out[n, c, y, x] = src[n, c, y - top, x - left] inside
//                      the image, 0 in the frame; out is oh × ow
//   pad_backward       out[n, c, y, x] = src[n, c, y + top, x + left] (a crop of
//                      the oh × ow src); out is h × w
// Bindings (group 0):
//   0 params  uniform Params, one slot per dispatch (dynamic offset)
//   1 src     storage, read        from element src_off
//   2 out     storage, read_write  from element out_off
// Dispatch: one invocation per output element, 256 a workgroup, (x, y) layout.

struct Params {
  count: u32, h: u32, w: u32, oh: u32,
  ow: u32, sh: u32, sw: u32, top: u32,
  left: u32, src_off: u32, out_off: u32, _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn upsample_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                    @builtin(local_invocation_id) lid: vec3<u32>) {
  let e = flat_index(wid, groups, lid);
  if (e >= params.count) { return; }
  let x = e % params.ow;
  let y = (e / params.ow) % params.oh;
  let plane = e / (params.ow * params.oh);
  out[params.out_off + e] = src[params.src_off + (plane * params.h + y / params.sh) * params.w + x / params.sw];
}

@compute @workgroup_size(256)
fn upsample_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                     @builtin(local_invocation_id) lid: vec3<u32>) {
  let e = flat_index(wid, groups, lid);
  if (e >= params.count) { return; }
  let x = e % params.w;
  let y = (e / params.w) % params.h;
  let plane = e / (params.w * params.h);
  var s = 0.0;
  for (var a = 0u; a < params.sh; a = a + 1u) {
    let row = params.src_off + (plane * params.oh + y * params.sh + a) * params.ow + x * params.sw;
    for (var b = 0u; b < params.sw; b = b + 1u) { s = s + src[row + b]; }
  }
  out[params.out_off + e] = s;
}

@compute @workgroup_size(256)
fn pad_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
  let e = flat_index(wid, groups, lid);
  if (e >= params.count) { return; }
  let x = e % params.ow;
  let y = (e / params.ow) % params.oh;
  let plane = e / (params.ow * params.oh);
  var v = 0.0;
  if (y >= params.top && y < params.top + params.h && x >= params.left && x < params.left + params.w) {
    v = src[params.src_off + (plane * params.h + y - params.top) * params.w + x - params.left];
  }
  out[params.out_off + e] = v;
}

@compute @workgroup_size(256)
fn pad_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
  let e = flat_index(wid, groups, lid);
  if (e >= params.count) { return; }
  let x = e % params.w;
  let y = (e / params.w) % params.h;
  let plane = e / (params.w * params.h);
  out[params.out_off + e] = src[params.src_off + (plane * params.oh + y + params.top) * params.ow + x + params.left];
}
