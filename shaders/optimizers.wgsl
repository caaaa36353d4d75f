// optimizers.wgsl — parameter updates, term by term as torch.optim computes them.
//
// includes: grid.wgsl
//
// Entry points (each reads the gradient as g = grad + weight_decay · p, PyTorch's L2 term):
//   sgd      mode 0: p -= lr g
//            mode 1: v = momentum v + g; p -= lr v
//            mode 2 (Nesterov): v = momentum v + g; p -= lr (momentum v + g)
//   adagrad  s += g²; p -= (lr g) / (sqrt(s) + eps)
//   adam     p *= decay (AdamW's decoupled decay, 1 - lr · wd; 1 for Adam);
//            m += (1 - β1)(g - m); v = β2 v + ((1 - β2) g) g;
//            p -= (step_size m) / (sqrt(v) / bias_correction2_sqrt + eps)
// Bindings (group 0):
//   0 params  uniform Params, one slot per dispatch (dynamic offset)
//   1 g       storage, read        gradient from g_off
//   2 p       storage, read_write  parameter from p_off
//   3 s1      storage, read_write  velocity / sum of squares / m, from s1_off
//   4 s2      storage, read_write  v (adam only), from s2_off
//   5 scalars storage, read        with per_member = 1: each member's scalars, 16 a member
//                                  (lr, momentum, one_minus_beta1, beta2, one_minus_beta2,
//                                  eps, step_size, bias_correction2_sqrt, weight_decay, decay)
// Dispatch: one invocation per element, 256 a workgroup, (x, y) layout. A
// population's: z the member, whose g, p, s1 and s2 lie member · stride elements on,
// its scalars those of params or, with per_member = 1, its row of `scalars`.

struct Params {
  count: u32, g_off: u32, p_off: u32, s1_off: u32,
  s2_off: u32, mode: u32, stride: u32, per_member: u32,
  lr: f32, momentum: f32, one_minus_beta1: f32, beta2: f32,
  one_minus_beta2: f32, eps: f32, step_size: f32, bias_correction2_sqrt: f32,
  weight_decay: f32, decay: f32, _pad2: u32, _pad3: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> p: array<f32>;
@group(0) @binding(3) var<storage, read_write> s1: array<f32>;
@group(0) @binding(4) var<storage, read_write> s2: array<f32>;
@group(0) @binding(5) var<storage, read> scalars: array<f32>;

// The member of a population this invocation updates (0 for a model) and where its arrays start.
var<private> member: u32;
var<private> g_off: u32;
var<private> p_off: u32;
var<private> s1_off: u32;
var<private> s2_off: u32;

fn set_member(z: u32) {
  member = z;
  g_off = params.g_off + z * params.stride;
  p_off = params.p_off + z * params.stride;
  s1_off = params.s1_off + z * params.stride;
  s2_off = params.s2_off + z * params.stride;
}

// scalar k of this member's (the table's order above), or `own`, the dispatch's
fn scalar(k: u32, own: f32) -> f32 {
  if (params.per_member == 1u) { return scalars[member * 16u + k]; }
  return own;
}

// the gradient with PyTorch's L2 term: grad + weight_decay · p
fn gradient(i: u32) -> f32 {
  let gi = g[g_off + i];
  let weight_decay = scalar(8u, params.weight_decay);
  if (weight_decay == 0.0) { return gi; }
  return gi + p[p_off + i] * weight_decay;
}

@compute @workgroup_size(256)
fn sgd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
       @builtin(local_invocation_id) lid: vec3<u32>) {
  set_member(wid.z);
  let i = flat_index(wid, groups, lid);
  if (i >= params.count) { return; }
  let gi = gradient(i);
  var step = scalar(0u, params.lr) * gi;
  if (params.mode != 0u) {
    let v = s1[s1_off + i] * scalar(1u, params.momentum) + gi;
    s1[s1_off + i] = v;
    step = v * scalar(0u, params.lr);
    if (params.mode == 2u) { step = (v * scalar(1u, params.momentum) + gi) * scalar(0u, params.lr); }
  }
  p[p_off + i] = p[p_off + i] - step;
}

@compute @workgroup_size(256)
fn adagrad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>) {
  set_member(wid.z);
  let i = flat_index(wid, groups, lid);
  if (i >= params.count) { return; }
  let gi = gradient(i);
  let s = s1[s1_off + i] + gi * gi;
  s1[s1_off + i] = s;
  p[p_off + i] = p[p_off + i] - (gi * scalar(0u, params.lr)) / (sqrt(s) + scalar(5u, params.eps));
}

@compute @workgroup_size(256)
fn adam(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
  set_member(wid.z);
  let i = flat_index(wid, groups, lid);
  if (i >= params.count) { return; }
  let gi = gradient(i);
  let pi = p[p_off + i] * scalar(9u, params.decay);
  let m = s1[s1_off + i] + (gi - s1[s1_off + i]) * scalar(2u, params.one_minus_beta1);
  let v = s2[s2_off + i] * scalar(3u, params.beta2) + (gi * scalar(4u, params.one_minus_beta2)) * gi;
  s1[s1_off + i] = m;
  s2[s2_off + i] = v;
  let denom = sqrt(v) / scalar(7u, params.bias_correction2_sqrt) + scalar(5u, params.eps);
  p[p_off + i] = pi - (m * scalar(6u, params.step_size)) / denom;
}
