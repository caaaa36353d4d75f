// pool.wgsl — max and average pooling over NCHW images and their gradients.
//
// includes: grid.wgsl
//
// A window (i, j) covers rows i·sh - ph .. i·sh - ph + kh - 1 and columns
// j·sw - pw .. j·sw - pw + kw - 1 of an h × w plane (ph and pw are the padding
// above and to the left; the padding below and to the right only sets oh and
// ow); pixels outside the plane are padding.
//
// Entry points:
//   maxpool_forward   out[n, c, i, j] = max of the window (padding counts as
//                     -inf); idx[n, c, i, j] = y·w + x of the first maximum
//                     (row-major scan), as PyTorch
//   maxpool_backward  out[n, c, y, x] = Σ src[n, c, i, j] over the windows whose
//                     idx is this pixel, in row-major order of the windows
//   avgpool_forward   out[n, c, i, j] = (Σ of the window's pixels inside the
//                     plane, row-major) / their count (padding left out of both)
//   avgpool_backward  out[n, c, y, x] = Σ src[n, c, i, j] / count(i, j) over the
//                     windows that hold the pixel, in row-major order
// Both gradients gather (no atomics) over only the windows that can hold the
// pixel, so a window as large as the plane (global pooling) costs one each.
// Bindings (group 0):
//   0 params  uniform Params, one slot per dispatch (dynamic offset)
//   1 src     storage, read        x (forward) or dy (backward), from src_off
//   2 idx     storage, read_write  argmax positions (i32), from idx_off (max only)
//   3 out     storage, read_write  from out_off
// Dispatch: one invocation per output element, 256 a workgroup, (x, y) layout.
// A population's (WgpuBackend.run_members): z the member, each array *_stride on.

struct Params {
  count: u32, n: u32, c: u32, h: u32,
  w: u32, kh: u32, kw: u32, sh: u32,
  sw: u32, ph: u32, pw: u32, oh: u32,
  ow: u32, src_off: u32, idx_off: u32, out_off: u32,
  src_stride: u32, idx_stride: u32, out_stride: u32, _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> idx: array<i32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// A population's: the workgroups of z = member work on that member's arrays, each
// *_stride elements after the previous member's (0 for an array the members share).
var<private> src_base: u32;
var<private> idx_base: u32;
var<private> out_base: u32;

fn set_member(member: u32) {
  src_base = params.src_off + member * params.src_stride;
  idx_base = params.idx_off + member * params.idx_stride;
  out_base = params.out_off + member * params.out_stride;
}

// The windows along one axis that hold padded coordinate p (the pixel plus
// the padding before it): first and last (first > last when none).
fn windows_holding(p: u32, k: u32, s: u32, positions: u32) -> vec2<u32> {
  var first = 0u;
  if (p + 1u > k) { first = (p + 1u - k + s - 1u) / s; }
  let last = min(p / s, positions - 1u);
  return vec2<u32>(first, last);
}

// The pixels of window (i, j) inside the plane.
fn valid_count(i: u32, j: u32) -> f32 {
  let y0 = i32(i * params.sh) - i32(params.ph);
  let x0 = i32(j * params.sw) - i32(params.pw);
  let rows = min(y0 + i32(params.kh), i32(params.h)) - max(y0, 0);
  let cols = min(x0 + i32(params.kw), i32(params.w)) - max(x0, 0);
  return f32(rows * cols);
}

@compute @workgroup_size(256)
fn maxpool_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                   @builtin(local_invocation_id) lid: vec3<u32>) {
  set_member(wid.z);
  let e = flat_index(wid, groups, lid);
  if (e >= params.count) { return; }
  let j = e % params.ow;
  let i = (e / params.ow) % params.oh;
  let plane = e / (params.ow * params.oh);  // n · c + c
  let base = src_base + plane * params.h * params.w;
  var best = -3.4028235e38;
  var at = -1;
  for (var ki = 0u; ki < params.kh; ki = ki + 1u) {
    let y = i32(i * params.sh + ki) - i32(params.ph);
    if (y < 0 || y >= i32(params.h)) { continue; }
    for (var kj = 0u; kj < params.kw; kj = kj + 1u) {
      let x = i32(j * params.sw + kj) - i32(params.pw);
      if (x < 0 || x >= i32(params.w)) { continue; }
      let v = src[base + u32(y) * params.w + u32(x)];
      if (at < 0 || v > best) { best = v; at = y * i32(params.w) + x; }
    }
  }
  out[out_base + e] = best;
  idx[idx_base + e] = at;
}

@compute @workgroup_size(256)
fn maxpool_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                    @builtin(local_invocation_id) lid: vec3<u32>) {
  set_member(wid.z);
  let e = flat_index(wid, groups, lid);
  if (e >= params.count) { return; }
  let x = e % params.w;
  let y = (e / params.w) % params.h;
  let plane = e / (params.w * params.h);
  let me = i32(y * params.w + x);
  let base = plane * params.oh * params.ow;
  let rows = windows_holding(y + params.ph, params.kh, params.sh, params.oh);
  let cols = windows_holding(x + params.pw, params.kw, params.sw, params.ow);
  var s = 0.0;
  for (var i = rows.x; i <= rows.y; i = i + 1u) {
    for (var j = cols.x; j <= cols.y; j = j + 1u) {
      let o = base + i * params.ow + j;
      if (idx[idx_base + o] == me) { s = s + src[src_base + o]; }
    }
  }
  out[out_base + e] = s;
}

@compute @workgroup_size(256)
fn avgpool_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                   @builtin(local_invocation_id) lid: vec3<u32>) {
  set_member(wid.z);
  let e = flat_index(wid, groups, lid);
  if (e >= params.count) { return; }
  let j = e % params.ow;
  let i = (e / params.ow) % params.oh;
  let plane = e / (params.ow * params.oh);
  let base = src_base + plane * params.h * params.w;
  var s = 0.0;
  for (var ki = 0u; ki < params.kh; ki = ki + 1u) {
    let y = i32(i * params.sh + ki) - i32(params.ph);
    if (y < 0 || y >= i32(params.h)) { continue; }
    for (var kj = 0u; kj < params.kw; kj = kj + 1u) {
      let x = i32(j * params.sw + kj) - i32(params.pw);
      if (x < 0 || x >= i32(params.w)) { continue; }
      s = s + src[base + u32(y) * params.w + u32(x)];
    }
  }
  out[out_base + e] = s / valid_count(i, j);
}

@compute @workgroup_size(256)
fn avgpool_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                    @builtin(local_invocation_id) lid: vec3<u32>) {
  set_member(wid.z);
  let e = flat_index(wid, groups, lid);
  if (e >= params.count) { return; }
  let x = e % params.w;
  let y = (e / params.w) % params.h;
  let plane = e / (params.w * params.h);
  let base = src_base + plane * params.oh * params.ow;
  let rows = windows_holding(y + params.ph, params.kh, params.sh, params.oh);
  let cols = windows_holding(x + params.pw, params.kw, params.sw, params.ow);
  var s = 0.0;
  for (var i = rows.x; i <= rows.y; i = i + 1u) {
    for (var j = cols.x; j <= cols.y; j = j + 1u) {
      s = s + src[base + i * params.ow + j] / valid_count(i, j);
    }
  }
  out[out_base + e] = s;
}
