// activations.wgsl — activation functions, their gradients, and softmax.
//
// includes: activation_functions.wgsl
// includes: grid.wgsl
//
// Entry points:
//   activation_forward   out[i] = f(a[i]), f = activate(kind, ·, param) (kind: an
//                        ACTIVATION_* constant the host prepends; any other gives NaN)
//   activation_backward  out[i] = b[i] · f'(x) from the saved output a = f(x)
//                        (gradient_from_output: tanh (1 - a)(1 + a), sigmoid a (1 - a),
//                        relu [a > 0], ...; NaN for a kind whose output does not tell)
//   activation_input_backward  out[i] = b[i] · f'(a[i]) from the input a = x
//                        (gradient_from_input, every kind)
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
  a_off: u32, b_off: u32, out_off: u32, param: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn activation_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                      @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = flat_index(wid, groups, lid);
  if (i >= params.count) { return; }
  out[params.out_off + i] = activate(params.kind, a[params.a_off + i], params.param);
}

@compute @workgroup_size(256)
fn activation_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                       @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = flat_index(wid, groups, lid);
  if (i >= params.count) { return; }
  out[params.out_off + i] = gradient_from_output(params.kind, a[params.a_off + i], b[params.b_off + i], params.param);
}

@compute @workgroup_size(256)
fn activation_input_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                             @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = flat_index(wid, groups, lid);
  if (i >= params.count) { return; }
  out[params.out_off + i] = gradient_from_input(params.kind, a[params.a_off + i], b[params.b_off + i], params.param);
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
