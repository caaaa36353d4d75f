// sequences.wgsl — embeddings and attention of several heads.
//
// includes: grid.wgsl
//
// Token ids are f32 values holding integers. Attention tensors, as the
// projections lay them out: q (n, tq, h, d), k (n, tk, h, d), v (n, tk, h, dv),
// the attention's output (n, tq, h, dv); probabilities probs (n, h, tq, tk).
// With causal = 1, query i sees the keys j <= i only.
//
// Entry points (one invocation per element written, 256 a workgroup, (x, y) layout):
//   embedding               out[i, :] = b[a[i], :]: a ids (count / cols), b the table
//                           (vocab, cols); NaN for an id outside [0, vocab) (never a
//                           read outside the table)
//   embedding_grad          out[r, :] = Σ b[i, :] over the i with a[i] = r, added in
//                           the order of i from 0: a ids (rows), b dy (rows, cols),
//                           out (vocab, cols)
//   broadcast_rows          out[i, :] = a: a (cols), out (count / cols, cols)
//   attention_probs         one invocation per row (n, h, i): out = probs =
//                           softmax_j(scale · a[i] · b[j]) of a = q, b = k (the scores
//                           are written into the row, then overwritten)
//   attention_apply         out (n, tq, h, dv) = Σ_j a[n, h, i, j] · b[n, j, h]: a probs, b v
//   attention_apply_grad    the first count elements: out = dprobs[n, h, i, j] =
//                           c[n, i, h] · b[n, j, h]; the next count2: out2 = dv[n, j, h] =
//                           Σ_i a[n, h, i, j] · c[n, i, h] (a probs, b v, c dout)
//   attention_softmax_grad  one invocation per row (n, h, i): out = ds = a · (out - Σ_j
//                           out · a), over dprobs in place (a probs)
//   attention_qk_grad       the first count elements: out = dq[n, i, h] = scale ·
//                           Σ_j a[n, h, i, j] · b[n, j, h]; the next count2: out2 = dk[n, j,
//                           h] = scale · Σ_i a[n, h, i, j] · c[n, i, h] (a ds, b k, c q)
// Bindings (group 0):
//   0 params  uniform Params, one slot per dispatch (dynamic offset)
//   1 a       storage, read        from element a_off
//   2 b       storage, read        from element b_off
//   3 c       storage, read        from element c_off
//   4 out     storage, read_write  from element out_off
//   5 out2    storage, read_write  from element out2_off
// Every sum runs in a fixed order, so results are deterministic.

struct Params {
  count: u32, count2: u32, cols: u32, vocab: u32,
  rows: u32, n: u32, tq: u32, tk: u32,
  h: u32, d: u32, dv: u32, causal: u32,
  a_off: u32, b_off: u32, c_off: u32, out_off: u32,
  out2_off: u32, scale: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> c: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> out2: array<f32>;

// an element of a (samples, length, heads, width) tensor as (sample, position, head, column)
fn coords(idx: u32, length: u32, width: u32) -> vec4<u32> {
  return vec4<u32>(idx / (width * params.h * length), (idx / (width * params.h)) % length,
                   (idx / width) % params.h, idx % width);
}

// the keys query i sees: all, or with the causal mask those up to i
fn visible_keys(i: u32) -> u32 {
  return select(params.tk, min(i + 1u, params.tk), params.causal == 1u);
}

@compute @workgroup_size(256)
fn embedding(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = flat_index(wid, groups, lid);
  if (i >= params.count) { return; }
  let id = a[params.a_off + i / params.cols];
  if (!(id >= 0.0 && id < f32(params.vocab) && id == floor(id))) {
    out[params.out_off + i] = bitcast<f32>(0x7fc00000u);
    return;
  }
  out[params.out_off + i] = b[params.b_off + u32(id) * params.cols + i % params.cols];
}

@compute @workgroup_size(256)
fn embedding_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                  @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = flat_index(wid, groups, lid);
  if (i >= params.count) { return; }
  let r = f32(i / params.cols);
  let col = i % params.cols;
  var total = 0.0;
  for (var j = 0u; j < params.rows; j = j + 1u) {
    if (a[params.a_off + j] == r) { total = total + b[params.b_off + j * params.cols + col]; }
  }
  out[params.out_off + i] = total;
}

@compute @workgroup_size(256)
fn broadcast_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                  @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = flat_index(wid, groups, lid);
  if (i >= params.count) { return; }
  out[params.out_off + i] = a[params.a_off + i % params.cols];
}

@compute @workgroup_size(256)
fn attention_probs(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                   @builtin(local_invocation_id) lid: vec3<u32>) {
  let row = flat_index(wid, groups, lid);  // (sample, head, query)
  if (row >= params.count) { return; }
  let i = row % params.tq;
  let head = (row / params.tq) % params.h;
  let sample = row / (params.tq * params.h);
  let d = params.d;
  let q_at = params.a_off + (sample * params.tq + i) * params.h * d + head * d;
  let base = params.out_off + row * params.tk;
  let seen = visible_keys(i);
  var m = -3.4028235e38;
  for (var j = 0u; j < seen; j = j + 1u) {
    let k_at = params.b_off + (sample * params.tk + j) * params.h * d + head * d;
    var dot = 0.0;
    for (var e = 0u; e < d; e = e + 1u) { dot = dot + a[q_at + e] * b[k_at + e]; }
    let s = dot * params.scale;
    out[base + j] = s;
    m = max(m, s);
  }
  var total = 0.0;
  for (var j = 0u; j < seen; j = j + 1u) {
    let e = exp(out[base + j] - m);
    out[base + j] = e;
    total = total + e;
  }
  for (var j = 0u; j < seen; j = j + 1u) { out[base + j] = out[base + j] / total; }
  for (var j = seen; j < params.tk; j = j + 1u) { out[base + j] = 0.0; }
}

@compute @workgroup_size(256)
fn attention_apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                   @builtin(local_invocation_id) lid: vec3<u32>) {
  let idx = flat_index(wid, groups, lid);  // (sample, query, head, column)
  if (idx >= params.count) { return; }
  let dv = params.dv;
  let at = coords(idx, params.tq, dv);
  let sample = at.x;
  let i = at.y;
  let head = at.z;
  let col = at.w;
  let p_at = params.a_off + ((sample * params.h + head) * params.tq + i) * params.tk;
  var total = 0.0;
  for (var j = 0u; j < visible_keys(i); j = j + 1u) {
    total = total + a[p_at + j] * b[params.b_off + (sample * params.tk + j) * params.h * dv + head * dv + col];
  }
  out[params.out_off + idx] = total;
}

// element k of a key-side gradient (sample, key j, head, column) of ``width`` columns:
// Σ_i a[sample, head, i, j] · c[sample, i, head, column] over the queries i (a: the
// probabilities or the scores' gradient, c: the output's gradient or the queries)
fn key_side(k: u32, width: u32) -> f32 {
  let at = coords(k, params.tk, width);
  let h = params.h;
  var total = 0.0;
  for (var i = 0u; i < params.tq; i = i + 1u) {
    let weight = a[params.a_off + ((at.x * h + at.z) * params.tq + i) * params.tk + at.y];
    total = total + weight * c[params.c_off + (at.x * params.tq + i) * h * width + at.z * width + at.w];
  }
  return total;
}

@compute @workgroup_size(256)
fn attention_apply_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                        @builtin(local_invocation_id) lid: vec3<u32>) {
  let idx = flat_index(wid, groups, lid);
  let dv = params.dv;
  let h = params.h;
  if (idx < params.count) {  // dprobs (sample, head, query, key)
    let j = idx % params.tk;
    let i = (idx / params.tk) % params.tq;
    let head = (idx / (params.tk * params.tq)) % h;
    let sample = idx / (params.tk * params.tq * h);
    let dout_at = params.c_off + (sample * params.tq + i) * h * dv + head * dv;
    let v_at = params.b_off + (sample * params.tk + j) * h * dv + head * dv;
    var total = 0.0;
    for (var e = 0u; e < dv; e = e + 1u) { total = total + c[dout_at + e] * b[v_at + e]; }
    out[params.out_off + idx] = total;
    return;
  }
  let k = idx - params.count;  // dv (sample, key, head, column)
  if (k < params.count2) { out2[params.out2_off + k] = key_side(k, dv); }
}

@compute @workgroup_size(256)
fn attention_softmax_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                          @builtin(local_invocation_id) lid: vec3<u32>) {
  let row = flat_index(wid, groups, lid);
  if (row >= params.count) { return; }
  let p_at = params.a_off + row * params.tk;
  let g_at = params.out_off + row * params.tk;
  var r = 0.0;
  for (var j = 0u; j < params.tk; j = j + 1u) { r = r + out[g_at + j] * a[p_at + j]; }
  for (var j = 0u; j < params.tk; j = j + 1u) { out[g_at + j] = (out[g_at + j] - r) * a[p_at + j]; }
}

@compute @workgroup_size(256)
fn attention_qk_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                     @builtin(local_invocation_id) lid: vec3<u32>) {
  let idx = flat_index(wid, groups, lid);
  let d = params.d;
  let h = params.h;
  if (idx < params.count) {  // dq (sample, query, head, column)
    let at = coords(idx, params.tq, d);
    let sample = at.x;
    let i = at.y;
    let head = at.z;
    let col = at.w;
    let s_at = params.a_off + ((sample * h + head) * params.tq + i) * params.tk;
    var total = 0.0;
    for (var j = 0u; j < visible_keys(i); j = j + 1u) {
      total = total + a[s_at + j] * b[params.b_off + (sample * params.tk + j) * h * d + head * d + col];
    }
    out[params.out_off + idx] = total * params.scale;
    return;
  }
  let k = idx - params.count;  // dk (sample, key, head, column)
  if (k < params.count2) { out2[params.out2_off + k] = key_side(k, d) * params.scale; }
}
