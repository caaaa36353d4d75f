// conv.wgsl — the data movement of a convolution done as a matrix product
// (im2col): patches to columns and back, and channel-first / product-row
// reordering. The products themselves are matmul.wgsl's.
//
// includes: activation_functions.wgsl
// includes: grid.wgsl
//
// Entry points (x is NCHW: n × c × h × w; ph and pw are the padding above and
// to the left, the padding below and to the right only sets oh and ow; taps
// are dh and dw apart; the products' matrices have a column per output
// pixel (n, i, j), so consecutive invocations touch neighbouring pixels):
//   im2col             out[(c, ki, kj), (n, i, j)] = x[n, c, i·sh + ki·dh - ph,
//                      j·sw + kj·dw - pw] (0 in the padding): (c·kh·kw) × (n·oh·ow)
//   col2im             out[n, c, y, x] = Σ over the patch entries read from (y, x)
//                      of src, laid out as im2col writes: the adjoint of im2col,
//                      gathered (no atomics)
//   to_channels_first  out[n, f, q] = src[f, n·p + q] (+ bias[f]), p = oh·ow: a
//                      product's f × (n·p) rows into channels; with activation =
//                      1 + kind (an ACTIVATION_* constant, param its scalar), f of
//                      that (activation_functions.wgsl's activate)
//   to_channels_last   the inverse of to_channels_first; with grad_kind = 1 + kind,
//                      src[n, f, q] · f'(z) from the saved output aux[n, f, q] = f(z)
//                      (gradient_from_output)
// Bindings (group 0):
//   0 params  uniform Params, one slot per dispatch (dynamic offset)
//   1 src     storage, read        from element src_off
//   2 bias    storage, read        f values from bias_off, read when has_bias = 1
//   3 out     storage, read_write  from element out_off
//   4 aux     storage, read        laid out as src, from aux_off, read when grad_kind > 0
// Dispatch: one invocation per output element, 256 a workgroup, (x, y) layout.
// A population's (WgpuBackend.run_members): z the member, each array *_stride on.

struct Params {
  count: u32, n: u32, c: u32, h: u32,
  w: u32, kh: u32, kw: u32, sh: u32,
  sw: u32, ph: u32, pw: u32, oh: u32,
  ow: u32, src_off: u32, out_off: u32, bias_off: u32,
  has_bias: u32, f: u32, p: u32, dh: u32,
  dw: u32, activation: u32, grad_kind: u32, aux_off: u32,
  param: f32, src_stride: u32, out_stride: u32, bias_stride: u32,
  aux_stride: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> aux: array<f32>;

// A population's: the workgroups of z = member work on that member's arrays, each
// *_stride elements after the previous member's (0 for an array the members share).
var<private> src_base: u32;
var<private> out_base: u32;
var<private> bias_base: u32;
var<private> aux_base: u32;

fn set_member(member: u32) {
  src_base = params.src_off + member * params.src_stride;
  out_base = params.out_off + member * params.out_stride;
  bias_base = params.bias_off + member * params.bias_stride;
  aux_base = params.aux_off + member * params.aux_stride;
}

@compute @workgroup_size(256)
fn im2col(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
  set_member(wid.z);
  let e = flat_index(wid, groups, lid);
  if (e >= params.count) { return; }
  let pixels = params.n * params.oh * params.ow;
  let r = e % pixels;
  let col = e / pixels;
  let j = r % params.ow;
  let i = (r / params.ow) % params.oh;
  let n = r / (params.ow * params.oh);
  let kj = col % params.kw;
  let ki = (col / params.kw) % params.kh;
  let c = col / (params.kw * params.kh);
  // signed: the padding lies before row and column 0
  let y = i32(i * params.sh + ki * params.dh) - i32(params.ph);
  let x = i32(j * params.sw + kj * params.dw) - i32(params.pw);
  var v = 0.0;
  if (y >= 0 && y < i32(params.h) && x >= 0 && x < i32(params.w)) {
    v = src[src_base + ((n * params.c + c) * params.h + u32(y)) * params.w + u32(x)];
  }
  out[out_base + e] = v;
}

@compute @workgroup_size(256)
fn col2im(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
  set_member(wid.z);
  let e = flat_index(wid, groups, lid);
  if (e >= params.count) { return; }
  let x = e % params.w;
  let y = (e / params.w) % params.h;
  let c = (e / (params.w * params.h)) % params.c;
  let n = e / (params.w * params.h * params.c);
  var s = 0.0;
  for (var ki = 0u; ki < params.kh; ki = ki + 1u) {
    let top = i32(y + params.ph) - i32(ki * params.dh);  // = i·sh for the patch row i that read (y, x) at ki
    if (top < 0 || top % i32(params.sh) != 0) { continue; }
    let i = u32(top) / params.sh;
    if (i >= params.oh) { continue; }
    for (var kj = 0u; kj < params.kw; kj = kj + 1u) {
      let left = i32(x + params.pw) - i32(kj * params.dw);
      if (left < 0 || left % i32(params.sw) != 0) { continue; }
      let j = u32(left) / params.sw;
      if (j >= params.ow) { continue; }
      let r = (n * params.oh + i) * params.ow + j;
      let pixels = params.n * params.oh * params.ow;
      s = s + src[src_base + ((c * params.kh + ki) * params.kw + kj) * pixels + r];
    }
  }
  out[out_base + e] = s;
}

@compute @workgroup_size(256)
fn to_channels_first(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                     @builtin(local_invocation_id) lid: vec3<u32>) {
  set_member(wid.z);
  let e = flat_index(wid, groups, lid);
  if (e >= params.count) { return; }
  let q = e % params.p;
  let f = (e / params.p) % params.f;
  let n = e / (params.p * params.f);
  var v = src[src_base + (f * params.n + n) * params.p + q];
  if (params.has_bias == 1u) { v = v + bias[bias_base + f]; }
  if (params.activation != 0u) { v = activate(params.activation - 1u, v, params.param); }
  out[out_base + e] = v;
}

@compute @workgroup_size(256)
fn to_channels_last(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                    @builtin(local_invocation_id) lid: vec3<u32>) {
  set_member(wid.z);
  let e = flat_index(wid, groups, lid);
  if (e >= params.count) { return; }
  let q = e % params.p;
  let n = (e / params.p) % params.n;
  let f = e / (params.p * params.n);
  let at = (n * params.f + f) * params.p + q;
  var v = src[src_base + at];
  if (params.grad_kind != 0u) {
    v = gradient_from_output(params.grad_kind - 1u, aux[aux_base + at], v, params.param);
  }
  out[out_base + e] = v;
}
