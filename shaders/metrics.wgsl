// metrics.wgsl — the counts and sums a batch adds to its metrics (intricate_py/metrics.py),
// added into accumulators on the device: the host reads them with the loss and makes the
// values (precision = TP / (TP + FP), ...) from an epoch's totals.
//
// includes: activation_functions.wgsl (its sigmoid)
//
// Every entry point reads p and t as rows × cols (t: rows × cols, or with labels = 1 one
// class label per row, integers as floats in [0, cols), read as its one-hot row) and
// counts on q: p itself (transform 0), the row's softmax of p (1, as losses.wgsl's
// softmax kinds: p is a fused Softmax's input) or sigmoid(p) (2); then_sigmoid = 1 applies
// a sigmoid after that (AUC(from_logits=True)). A target is true where t > 0.5.
//
// Entry points:
//   metric_counts  integer counts, added as floats: acc[index + b] += bin b, b < bins
//     kind 0 confusion: each element (r, j) with j in [col_lo, col_hi) is positive where
//            q > threshold (row_max = 0), or where q >= the row's largest q and |q| > 1e-9
//            (row_max = 1, F1Score's argmax), or where q > threshold and q is among the row's
//            k largest (row_max = 2, Precision's top_k: ties go to the lower index, as top_k);
//            bin 4 · (j - col_lo) (per_class = 1) or 0, plus 0 TP, 1 FP, 2 FN, 3 TN
//     kind 1 buckets: b = how many of the n_thresholds thresholds (ascending, from element
//            thresholds_off of `thresholds`) are < q (0 for a NaN q); bin b for a false
//            target, n_thresholds + 1 + b for a true one (AUC's histograms)
//     kind 2 binary hits: bin 0 the elements where (q > threshold) == (t > 0.5), bin 1 all
//     kind 3 equal hits: bin 0 the elements where q == t, bin 1 all
//     kind 4 categorical hits: bin 0 the rows whose first argmax of q is the target's
//            class (the label, or the first argmax of t), bin 1 all
//     kind 5 top-k hits: bin 0 the rows where fewer than k elements of q exceed the
//            target class's, bin 1 all
//         A single workgroup of 256 invocations (rows lid, lid + 256, ...); counts are
//         integers added atomically in workgroup memory (bins <= 1024), so deterministic.
//   metric_sums  acc[index] += Σ |q - t| (kind 0) or Σ (q - t)² (kind 1) over every
//         element, acc[index + 1] += rows · cols; a single workgroup of 256, reduced in a
//         fixed order
//   metric_columns  per column j: acc[index + 3j] += Σ t, acc[index + 3j + 1] += Σ t²,
//         acc[index + 3j + 2] += Σ (q - t)² (each in row order), and
//         acc[index + 3 cols] += rows (R2Score); one invocation a column, 64 a workgroup
// Bindings (group 0):
//   0 params      uniform Params, one slot per dispatch (dynamic offset)
//   1 p           storage, read        predictions from element p_off
//   2 t           storage, read        targets from element t_off
//   3 acc         storage, read_write  the accumulators, from element acc_off + index
//   4 thresholds  storage, read        kind 1's thresholds (else unused)

struct Params {
  rows: u32, cols: u32, kind: u32, transform: u32,
  then_sigmoid: u32, labels: u32, p_off: u32, t_off: u32,
  acc_off: u32, index: u32, per_class: u32, row_max: u32,
  col_lo: u32, col_hi: u32, k: u32, thresholds_off: u32,
  n_thresholds: u32, bins: u32, threshold: f32, _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> p: array<f32>;
@group(0) @binding(2) var<storage, read> t: array<f32>;
@group(0) @binding(3) var<storage, read_write> acc: array<f32>;
@group(0) @binding(4) var<storage, read> thresholds: array<f32>;

var<workgroup> hist: array<atomic<u32>, 1024>;
var<workgroup> part: array<f32, 256>;

// the row's max and Σ exp(p - max), for the softmax transform (as softmax_forward orders them)
fn row_stats(row_p: u32) -> vec2<f32> {
  var m = p[row_p];
  var s = 0.0;
  if (params.transform == 1u) {
    for (var j = 1u; j < params.cols; j = j + 1u) { m = max(m, p[row_p + j]); }
    for (var j = 0u; j < params.cols; j = j + 1u) { s = s + exp(p[row_p + j] - m); }
  }
  return vec2<f32>(m, s);
}

fn q_of(x: f32, ms: vec2<f32>) -> f32 {
  var q = x;
  if (params.transform == 1u) { q = exp(x - ms.x) / ms.y; }
  if (params.transform == 2u) { q = sigmoid(x); }
  if (params.then_sigmoid == 1u) { q = sigmoid(q); }
  return q;
}

fn row_of_t(r: u32) -> u32 {
  return params.t_off + select(r * params.cols, r, params.labels == 1u);
}

fn target_at(row_t: u32, j: u32) -> f32 {
  if (params.labels == 1u) { return select(0.0, 1.0, j == u32(t[row_t])); }
  return t[row_t + j];
}

fn target_class(row_t: u32) -> u32 {
  if (params.labels == 1u) { return u32(t[row_t]); }
  var best = 0u;
  var value = t[row_t];
  for (var j = 1u; j < params.cols; j = j + 1u) {
    if (t[row_t + j] > value) { value = t[row_t + j]; best = j; }
  }
  return best;
}

@compute @workgroup_size(256)
fn metric_counts(@builtin(local_invocation_id) lid: vec3<u32>) {
  for (var b = lid.x; b < params.bins; b = b + 256u) { atomicStore(&hist[b], 0u); }
  workgroupBarrier();
  let cols = params.cols;
  let kind = params.kind;
  var own = vec4<u32>(0u, 0u, 0u, 0u);  // this invocation's counts where they need no scatter
  for (var r = lid.x; r < params.rows; r = r + 256u) {
    let row_p = params.p_off + r * cols;
    let row_t = row_of_t(r);
    let ms = row_stats(row_p);
    if (kind == 4u || kind == 5u) {
      let wanted = target_class(row_t);
      var hit = false;
      if (kind == 4u) {
        var best = 0u;
        var value = q_of(p[row_p], ms);
        for (var j = 1u; j < cols; j = j + 1u) {
          let q = q_of(p[row_p + j], ms);
          if (q > value) { value = q; best = j; }
        }
        hit = best == wanted;
      } else {
        let mine = q_of(p[row_p + wanted], ms);
        var above = 0u;
        for (var j = 0u; j < cols; j = j + 1u) {
          if (q_of(p[row_p + j], ms) > mine) { above = above + 1u; }
        }
        hit = above < params.k;
      }
      own.x = own.x + select(0u, 1u, hit);
      own.y = own.y + 1u;
      continue;
    }
    var top = 0.0;
    if (kind == 0u && params.row_max == 1u) {
      top = q_of(p[row_p], ms);
      for (var j = 1u; j < cols; j = j + 1u) { top = max(top, q_of(p[row_p + j], ms)); }
    }
    for (var j = params.col_lo; j < min(params.col_hi, cols); j = j + 1u) {
      let q = q_of(p[row_p + j], ms);
      let y = target_at(row_t, j);
      let truth = y > 0.5;
      switch kind {
        case 0u: {
          var positive = q > params.threshold;
          if (params.row_max == 1u) { positive = q >= top && abs(q) > 1e-9; }
          if (params.row_max == 2u && positive) {
            var rank = 0u;
            for (var i = 0u; i < cols; i = i + 1u) {
              let other = q_of(p[row_p + i], ms);
              if (other > q || (other == q && i < j)) { rank = rank + 1u; }
            }
            positive = rank < params.k;
          }
          let category = select(select(3u, 2u, truth), select(1u, 0u, truth), positive);
          if (params.per_class == 1u) {
            atomicAdd(&hist[4u * (j - params.col_lo) + category], 1u);
          } else {
            own[category] = own[category] + 1u;
          }
        }
        case 1u: {
          var lo = 0u;
          var hi = params.n_thresholds;
          while (lo < hi) {
            let mid = (lo + hi) / 2u;
            if (thresholds[params.thresholds_off + mid] < q) { lo = mid + 1u; } else { hi = mid; }
          }
          atomicAdd(&hist[select(lo, params.n_thresholds + 1u + lo, truth)], 1u);
        }
        case 2u: {
          own.x = own.x + select(0u, 1u, (q > params.threshold) == truth);
          own.y = own.y + 1u;
        }
        default: {
          own.x = own.x + select(0u, 1u, q == y);
          own.y = own.y + 1u;
        }
      }
    }
  }
  if (kind != 1u && !(kind == 0u && params.per_class == 1u)) {
    for (var c = 0u; c < 4u; c = c + 1u) {
      if (own[c] > 0u) { atomicAdd(&hist[c], own[c]); }
    }
  }
  workgroupBarrier();
  for (var b = lid.x; b < params.bins; b = b + 256u) {
    let slot = params.acc_off + params.index + b;
    acc[slot] = acc[slot] + f32(atomicLoad(&hist[b]));
  }
}

@compute @workgroup_size(256)
fn metric_sums(@builtin(local_invocation_id) lid: vec3<u32>) {
  let cols = params.cols;
  var total = 0.0;
  for (var r = lid.x; r < params.rows; r = r + 256u) {
    let row_p = params.p_off + r * cols;
    let row_t = row_of_t(r);
    let ms = row_stats(row_p);
    for (var j = 0u; j < cols; j = j + 1u) {
      let d = q_of(p[row_p + j], ms) - target_at(row_t, j);
      total = total + select(d * d, abs(d), params.kind == 0u);
    }
  }
  part[lid.x] = total;
  for (var stride = 128u; stride > 0u; stride = stride / 2u) {
    workgroupBarrier();
    if (lid.x < stride) { part[lid.x] = part[lid.x] + part[lid.x + stride]; }
  }
  workgroupBarrier();
  if (lid.x == 0u) {
    let slot = params.acc_off + params.index;
    acc[slot] = acc[slot] + part[0];
    acc[slot + 1u] = acc[slot + 1u] + f32(params.rows * cols);
  }
}

@compute @workgroup_size(64)
fn metric_columns(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;
  if (j >= params.cols) { return; }
  var s = 0.0;
  var s2 = 0.0;
  var e2 = 0.0;
  for (var r = 0u; r < params.rows; r = r + 1u) {
    let row_p = params.p_off + r * params.cols;
    let ms = row_stats(row_p);
    let y = target_at(row_of_t(r), j);
    let d = y - q_of(p[row_p + j], ms);
    s = s + y;
    s2 = s2 + y * y;
    e2 = e2 + d * d;
  }
  let base = params.acc_off + params.index + 3u * j;
  acc[base] = acc[base] + s;
  acc[base + 1u] = acc[base + 1u] + s2;
  acc[base + 2u] = acc[base + 2u] + e2;
  if (j == 0u) {
    let slot = params.acc_off + params.index + 3u * params.cols;
    acc[slot] = acc[slot] + f32(params.rows);
  }
}
