// losses.wgsl — loss gradients, loss sums and correct-prediction counts.
//
// Entry points:
//   loss_grad      out[i] = scale · g(p[i], t[i])      kind: 0 difference p - t,
//                  1 sign(p - t), 2 cross-entropy -t / clip(p),
//                  3 binary cross-entropy (clip(p) - t) / (clip(p) (1 - clip(p)))
//   loss_sum       out[index] += scale · Σ_i l(p[i], t[i])   kind: 0 (p - t)²,
//                  1 |p - t|, 2 -t log clip(p), 3 -(t log clip(p) + (1 - t) log(1 - clip(p)))
//   count_correct  out[index] += number correct            kind: 0 binary, elements
//                  with (p > 0.5) == (t > 0.5); 1 categorical, rows whose first
//                  argmax of p equals the first argmax of t
//   (clip to [1e-7, 1 - 1e-7]; p and t are rows × cols, count = rows · cols)
// Bindings (group 0):
//   0 params  uniform Params, one slot per dispatch (dynamic offset)
//   1 p       storage, read        predictions from element p_off
//   2 t       storage, read        targets from element t_off
//   3 out     storage, read_write  gradient from out_off, or the accumulators
// Dispatch: loss_grad one invocation per element (256 a workgroup, (x, y) layout);
// loss_sum and count_correct a single workgroup of 256 that strides over the
// batch and sums in a fixed order, so results are deterministic.

struct Params {
  count: u32, rows: u32, cols: u32, kind: u32,
  p_off: u32, t_off: u32, out_off: u32, index: u32,
  scale: f32, _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> p: array<f32>;
@group(0) @binding(2) var<storage, read> t: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const EPS: f32 = 1e-7;

var<workgroup> partial: array<f32, 256>;

fn flat_index(wid: vec3<u32>, groups: vec3<u32>, lid: vec3<u32>) -> u32 {
  return (wid.y * groups.x + wid.x) * 256u + lid.x;
}

fn clipped(x: f32) -> f32 { return clamp(x, EPS, 1.0 - EPS); }

@compute @workgroup_size(256)
fn loss_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = flat_index(wid, groups, lid);
  if (i >= params.count) { return; }
  let pi = p[params.p_off + i];
  let ti = t[params.t_off + i];
  var g: f32;
  switch params.kind {
    case 0u: { g = pi - ti; }
    case 1u: { g = sign(pi - ti); }
    case 2u: { g = -(ti / clipped(pi)); }
    default: {
      let c = clipped(pi);
      g = (c - ti) / (c * (1.0 - c));
    }
  }
  out[params.out_off + i] = g * params.scale;
}

fn element_loss(i: u32) -> f32 {
  let pi = p[params.p_off + i];
  let ti = t[params.t_off + i];
  var l: f32;
  switch params.kind {
    case 0u: { l = (pi - ti) * (pi - ti); }
    case 1u: { l = abs(pi - ti); }
    case 2u: { l = -(ti * log(clipped(pi))); }
    default: {
      let c = clipped(pi);
      l = -(ti * log(c) + (1.0 - ti) * log(1.0 - c));
    }
  }
  return l;
}

fn first_argmax(base: u32, cols: u32, use_t: bool) -> u32 {
  var best = 0u;
  var value = select(p[base], t[base], use_t);
  for (var j = 1u; j < cols; j = j + 1u) {
    let v = select(p[base + j], t[base + j], use_t);
    if (v > value) { value = v; best = j; }
  }
  return best;
}

// Tree sum of partial[0..256) into partial[0].
fn reduce_partial(l: u32) {
  for (var stride = 128u; stride > 0u; stride = stride / 2u) {
    workgroupBarrier();
    if (l < stride) { partial[l] = partial[l] + partial[l + stride]; }
  }
  workgroupBarrier();
}

@compute @workgroup_size(256)
fn loss_sum(@builtin(local_invocation_id) lid: vec3<u32>) {
  var s = 0.0;
  for (var i = lid.x; i < params.count; i = i + 256u) { s = s + element_loss(i); }
  partial[lid.x] = s;
  reduce_partial(lid.x);
  if (lid.x == 0u) { out[params.out_off + params.index] = out[params.out_off + params.index] + params.scale * partial[0]; }
}

@compute @workgroup_size(256)
fn count_correct(@builtin(local_invocation_id) lid: vec3<u32>) {
  var s = 0.0;
  if (params.kind == 0u) {
    for (var i = lid.x; i < params.count; i = i + 256u) {
      let hit = (p[params.p_off + i] > 0.5) == (t[params.t_off + i] > 0.5);
      s = s + select(0.0, 1.0, hit);
    }
  } else {
    for (var r = lid.x; r < params.rows; r = r + 256u) {
      let hit = first_argmax(params.p_off + r * params.cols, params.cols, false)
             == first_argmax(params.t_off + r * params.cols, params.cols, true);
      s = s + select(0.0, 1.0, hit);
    }
  }
  partial[lid.x] = s;
  reduce_partial(lid.x);
  if (lid.x == 0u) { out[params.out_off + params.index] = out[params.out_off + params.index] + partial[0]; }
}
