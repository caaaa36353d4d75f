// activations.wgsl — activation functions, their gradients, and softmax.
//
// Entry points:
//   activation_forward   out[i] = f(a[i])       kind: ACTIVATION_TANH, _SIGMOID or _RELU
//                        (constants the host prepends; any other kind gives NaN)
//   activation_backward  out[i] = b[i] · f'(x), from the saved output a = f(x):
//                        tanh (1 - a)(1 + a), sigmoid a (1 - a), relu [a > 0]
//   softmax_forward      out = softmax(a) row by row (rows × cols), max-shifted
//   softmax_backward     out = a ⊙ (b - Σ_cols b ⊙ a), a the saved softmax output
// Bindings (group 0):
//   0 params  uniform Params, one slot per dispatch (dynamic offset)
//   1 a       storage, read        from element a_off (x, or the saved output y)
//   2 b       storage, read        from element b_off (dy; unused by the forwards)
//   3 out     storage, read_write  from element out_off
// Dispatch: elementwise entries one invocation per element, softmax one per row;
// 256 invocations a workgroup, workgroups laid out (x, y) with x ≤ 65535.

struct Params {
  count: u32, rows: u32, cols: u32, kind: u32,
  a_off: u32, b_off: u32, out_off: u32, _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn flat_index(wid: vec3<u32>, groups: vec3<u32>, lid: vec3<u32>) -> u32 {
  return (wid.y * groups.x + wid.x) * 256u + lid.x;
}

// Drivers' tanh can lose relative precision near 0 (lavapipe's is 3% off at
// 1e-6) or overflow for large |x|: an odd series below 0.125 (truncation
// error under 1e-10 relative), exp(-2|x|) above, exactly ±1 beyond |x| = 9.1.
fn tanh_(x: f32) -> f32 {
  let ax = abs(x);
  if (ax < 0.125) {
    let x2 = x * x;
    return x + x * x2 * (-0.33333334 + x2 * (0.13333334 + x2 * (-0.053968254 + x2 * 0.021869488)));
  }
  let e = exp(-2.0 * min(ax, 10.0));
  return sign(x) * ((1.0 - e) / (1.0 + e));
}

// exp(-|x|) never overflows; each sign takes the exact branch.
fn sigmoid(x: f32) -> f32 {
  let e = exp(-abs(x));
  let s = 1.0 / (1.0 + e);
  return select(s, e * s, x < 0.0);
}

@compute @workgroup_size(256)
fn activation_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                      @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = flat_index(wid, groups, lid);
  if (i >= params.count) { return; }
  let x = a[params.a_off + i];
  var y: f32;
  switch params.kind {
    case ACTIVATION_TANH: { y = tanh_(x); }
    case ACTIVATION_SIGMOID: { y = sigmoid(x); }
    case ACTIVATION_RELU: { y = max(x, 0.0); }
    default: { y = unknown_kind(); }
  }
  out[params.out_off + i] = y;
}

@compute @workgroup_size(256)
fn activation_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                       @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = flat_index(wid, groups, lid);
  if (i >= params.count) { return; }
  let y = a[params.a_off + i];
  let dy = b[params.b_off + i];
  var d: f32;
  switch params.kind {
    case ACTIVATION_TANH: { d = ((1.0 - y) * (1.0 + y)) * dy; }
    case ACTIVATION_SIGMOID: { d = ((1.0 - y) * y) * dy; }
    case ACTIVATION_RELU: { d = select(0.0, dy, y > 0.0); }
    default: { d = unknown_kind(); }
  }
  out[params.out_off + i] = d;
}

@compute @workgroup_size(256)
fn softmax_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                   @builtin(local_invocation_id) lid: vec3<u32>) {
  let r = flat_index(wid, groups, lid);
  if (r >= params.rows) { return; }
  let x0 = params.a_off + r * params.cols;
  let y0 = params.out_off + r * params.cols;
  var m = a[x0];
  for (var j = 1u; j < params.cols; j = j + 1u) { m = max(m, a[x0 + j]); }
  var s = 0.0;
  for (var j = 0u; j < params.cols; j = j + 1u) {
    let e = exp(a[x0 + j] - m);
    out[y0 + j] = e;
    s = s + e;
  }
  for (var j = 0u; j < params.cols; j = j + 1u) { out[y0 + j] = out[y0 + j] / s; }
}

@compute @workgroup_size(256)
fn softmax_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                    @builtin(local_invocation_id) lid: vec3<u32>) {
  let r = flat_index(wid, groups, lid);
  if (r >= params.rows) { return; }
  let y0 = params.a_off + r * params.cols;
  let d0 = params.b_off + r * params.cols;
  var s = 0.0;
  for (var j = 0u; j < params.cols; j = j + 1u) { s = s + b[d0 + j] * a[y0 + j]; }
  for (var j = 0u; j < params.cols; j = j + 1u) {
    out[params.out_off + r * params.cols + j] = (b[d0 + j] - s) * a[y0 + j];
  }
}
