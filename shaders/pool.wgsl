// pool.wgsl — max pooling over NCHW images and its gradient.
//
// Entry points:
//   maxpool_forward   out[n, c, i, j] = max of the window at (i·sh - ph, j·sw - pw)
//                     of size kh × kw (padding counts as -inf); idx[n, c, i, j] =
//                     y·w + x of the first maximum (row-major scan), as PyTorch
//   maxpool_backward  out[n, c, y, x] = Σ src[n, c, i, j] over the windows whose
//                     idx is this pixel: gathered (no atomics), deterministic
// Bindings (group 0):
//   0 params  uniform Params, one slot per dispatch (dynamic offset)
//   1 src     storage, read        x (forward) or dy (backward), from src_off
//   2 idx     storage, read_write  argmax positions (i32), from idx_off
//   3 out     storage, read_write  from out_off
// Dispatch: one invocation per output element, 256 a workgroup, (x, y) layout.

struct Params {
  count: u32, n: u32, c: u32, h: u32,
  w: u32, kh: u32, kw: u32, sh: u32,
  sw: u32, ph: u32, pw: u32, oh: u32,
  ow: u32, src_off: u32, idx_off: u32, out_off: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> idx: array<i32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn flat_index(wid: vec3<u32>, groups: vec3<u32>, lid: vec3<u32>) -> u32 {
  return (wid.y * groups.x + wid.x) * 256u + lid.x;
}

@compute @workgroup_size(256)
fn maxpool_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                   @builtin(local_invocation_id) lid: vec3<u32>) {
  let e = flat_index(wid, groups, lid);
  if (e >= params.count) { return; }
  let j = e % params.ow;
  let i = (e / params.ow) % params.oh;
  let plane = e / (params.ow * params.oh);  // n · c + c
  let base = params.src_off + plane * params.h * params.w;
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
  out[params.out_off + e] = best;
  idx[params.idx_off + e] = at;
}

@compute @workgroup_size(256)
fn maxpool_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                    @builtin(local_invocation_id) lid: vec3<u32>) {
  let e = flat_index(wid, groups, lid);
  if (e >= params.count) { return; }
  let x = e % params.w;
  let y = (e / params.w) % params.h;
  let plane = e / (params.w * params.h);
  let me = i32(y * params.w + x);
  let base = plane * params.oh * params.ow;
  var s = 0.0;
  for (var ki = 0u; ki < params.kh; ki = ki + 1u) {
    let top = i32(y + params.ph) - i32(ki);  // i·sh for a window holding (y, x) at ki
    if (top < 0 || top % i32(params.sh) != 0) { continue; }
    let i = u32(top) / params.sh;
    if (i >= params.oh) { continue; }
    for (var kj = 0u; kj < params.kw; kj = kj + 1u) {
      let left = i32(x + params.pw) - i32(kj);
      if (left < 0 || left % i32(params.sw) != 0) { continue; }
      let j = u32(left) / params.sw;
      if (j >= params.ow) { continue; }
      let o = base + i * params.ow + j;
      if (idx[params.idx_off + o] == me) { s = s + src[params.src_off + o]; }
    }
  }
  out[params.out_off + e] = s;
}
