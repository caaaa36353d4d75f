// losses.wgsl — a batch's loss, correct-prediction count and gradient, in one pass.
//
// includes: activation_functions.wgsl (its sigmoid: a fused kind's probabilities are
// the Sigmoid layer's, bit for bit)
//
// Entry point:
//   loss  for p, t of rows × cols:
//         acc[index]     += scale · Σ l(p, t), or NaN if any p or any l is not finite
//         acc[index + 1] += the number of correct predictions
//         grad            = grad_scale · g(p, t)             (when has_grad = 1)
//         kind (l; g), c = clamp(p, 1e-7, 1 - 1e-7):
//           0 squared                      (p - t)²;                     p - t
//           1 absolute                     |p - t|;                      sign(p - t)
//           2 cross_entropy                -t log c;                     -t / c
//           3 binary_cross_entropy         -(t log c + (1-t) log(1-c));  (c - t) / (c (1 - c))
//           4 softmax_cross_entropy        as 2 of q = softmax(row z);   q - t
//           5 sigmoid_cross_entropy        as 3 of q = sigmoid(z);       q - t
//           6 logits_cross_entropy         -t (z - logsumexp(row z));    softmax(row z) - t
//           7 logits_binary_cross_entropy  max(z, 0) - z t + log(1 + exp(-|z|)); sigmoid(z) - t
//         (kinds 4 to 7 take p as z, the input of a Softmax or Sigmoid; 4 and 5 are
//         that layer fused with a probability loss, and compute q exactly as
//         activations.wgsl's softmax_forward and sigmoid do)
//         accuracy, counted on q (p, or for kinds 4 and 5 the probabilities):
//         0 binary, elements with (q > 0.5) == (t > 0.5); 1 binary_logits,
//         (q > 0) == (t > 0.5); 2 categorical, rows whose first argmax of q equals
//         the first argmax of t
//         has_weights = 1: each row r's loss and gradient are scaled by w[w_off + r]
//         (a sample's weight; the row's loss summed first, then scaled)
//         labels = 1: t holds one class label per row (rows × 1, integers as
//         floats in [0, cols)) and every result is that of its one-hot row, bit
//         for bit (y is exactly 0 or 1; a label is its row's first argmax)
// Bindings (group 0):
//   0 params  uniform Params, one slot per dispatch (dynamic offset)
//   1 p       storage, read        predictions (or logits) from element p_off
//   2 t       storage, read        targets from element t_off
//   3 acc     storage, read_write  the accumulators, from element acc_off
//   4 grad    storage, read_write  the gradient from grad_off (when has_grad = 1)
//   5 w       storage, read        per-row weights from w_off (when has_weights = 1)
// Dispatch: a single workgroup of 256 invocations, each taking rows lid, lid + 256,
// ...; the sums reduce in a fixed order, so results are deterministic. A
// population's: one workgroup a member (z), member z's arrays z · *_stride
// elements on from the offsets (0 for targets the members share).
//
// NaN: WGSL promises nothing about NaN through max, min or clamp, so
// non-finite values are found from their bits, and the loss written is an
// explicit NaN: divergence can never turn into a plausible number.

struct Params {
  rows: u32, cols: u32, kind: u32, accuracy: u32,
  p_off: u32, t_off: u32, acc_off: u32, index: u32,
  grad_off: u32, has_grad: u32, scale: f32, grad_scale: f32,
  labels: u32, has_weights: u32, w_off: u32, _pad2: u32,
  p_stride: u32, t_stride: u32, acc_stride: u32, grad_stride: u32,
  w_stride: u32, _pad3: u32, _pad4: u32, _pad5: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> p: array<f32>;
@group(0) @binding(2) var<storage, read> t: array<f32>;
@group(0) @binding(3) var<storage, read_write> acc: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;
@group(0) @binding(5) var<storage, read> w: array<f32>;

const EPS: f32 = 1e-7;

var<workgroup> loss_part: array<f32, 256>;
var<workgroup> hit_part: array<f32, 256>;
var<workgroup> bad_part: array<u32, 256>;

fn finite(x: f32) -> bool { return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u; }

fn clipped(x: f32) -> f32 { return clamp(x, EPS, 1.0 - EPS); }

// what accuracy is counted on: p, or the probabilities of a fused kind
fn predicted(x: f32, m: f32, s: f32) -> f32 {
  switch params.kind {
    case 4u: { return exp(x - m) / s; }
    case 5u: { return sigmoid(x); }
    default: { return x; }
  }
}

fn first_argmax_q(base: u32, cols: u32, m: f32, s: f32) -> u32 {
  var best = 0u;
  var value = predicted(p[base], m, s);
  for (var j = 1u; j < cols; j = j + 1u) {
    let q = predicted(p[base + j], m, s);
    if (q > value) { value = q; best = j; }
  }
  return best;
}

fn first_argmax_t(base: u32, cols: u32) -> u32 {
  var best = 0u;
  var value = t[base];
  for (var j = 1u; j < cols; j = j + 1u) {
    if (t[base + j] > value) { value = t[base + j]; best = j; }
  }
  return best;
}

// (l, g) of one element; m and s are the row's max and Σ exp(z - m) (kinds 4, 6)
fn term(x: f32, y: f32, m: f32, s: f32) -> vec2<f32> {
  switch params.kind {
    case 0u: { let d = x - y; return vec2<f32>(d * d, d); }
    case 1u: { let d = x - y; return vec2<f32>(abs(d), sign(d)); }
    case 2u: { let c = clipped(x); return vec2<f32>(-(y * log(c)), -(y / c)); }
    case 3u: {
      let c = clipped(x);
      return vec2<f32>(-(y * log(c) + (1.0 - y) * log(1.0 - c)), (c - y) / (c * (1.0 - c)));
    }
    case 4u: {
      let q = exp(x - m) / s;
      return vec2<f32>(-(y * log(clipped(q))), q - y);
    }
    case 5u: {
      let q = sigmoid(x);
      let c = clipped(q);
      return vec2<f32>(-(y * log(c) + (1.0 - y) * log(1.0 - c)), q - y);
    }
    case 6u: {
      let shifted = x - m;
      return vec2<f32>(-(y * (shifted - log(s))), exp(shifted) / s - y);
    }
    default: {
      return vec2<f32>(max(x, 0.0) - x * y + log(1.0 + exp(-abs(x))), sigmoid(x) - y);
    }
  }
}

@compute @workgroup_size(256)
fn loss(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let member = wid.z;  // of a population (0 for a model): its arrays lie member · *_stride further on
  let p_off = params.p_off + member * params.p_stride;
  let t_off = params.t_off + member * params.t_stride;
  let grad_off = params.grad_off + member * params.grad_stride;
  let w_off = params.w_off + member * params.w_stride;
  let cols = params.cols;
  let threshold = select(0.5, 0.0, params.accuracy == 1u);
  var total = 0.0;
  var hits = 0.0;
  var bad = 0u;
  let labelled = params.labels == 1u;
  for (var r = lid.x; r < params.rows; r = r + 256u) {
    let row_p = p_off + r * cols;
    let row_t = t_off + select(r * cols, r, labelled);
    let label = u32(t[row_t]);  // used only where labelled
    var m = p[row_p];
    var s = 0.0;
    if (params.kind == 4u || params.kind == 6u) {  // softmax_forward's order of operations
      for (var j = 1u; j < cols; j = j + 1u) { m = max(m, p[row_p + j]); }
      for (var j = 0u; j < cols; j = j + 1u) { s = s + exp(p[row_p + j] - m); }
    }
    let weighted = params.has_weights == 1u;
    var row_weight = 1.0;
    if (weighted) { row_weight = w[w_off + r]; }
    var row_total = 0.0;
    for (var j = 0u; j < cols; j = j + 1u) {
      let x = p[row_p + j];
      var y = 0.0;
      if (labelled) { y = select(0.0, 1.0, j == label); } else { y = t[row_t + j]; }
      let lg = term(x, y, m, s);
      if (!finite(x) || !finite(lg.x)) { bad = bad + 1u; }
      if (weighted) { row_total = row_total + lg.x; } else { total = total + lg.x; }
      if (params.has_grad == 1u) {
        if (weighted) {
          grad[grad_off + r * cols + j] = lg.y * params.grad_scale * row_weight;
        } else {
          grad[grad_off + r * cols + j] = lg.y * params.grad_scale;
        }
      }
      if (params.accuracy != 2u) { hits = hits + select(0.0, 1.0, (predicted(x, m, s) > threshold) == (y > 0.5)); }
    }
    if (weighted) { total = total + row_weight * row_total; }
    if (params.accuracy == 2u) {
      var wanted = label;
      if (!labelled) { wanted = first_argmax_t(row_t, cols); }
      hits = hits + select(0.0, 1.0, first_argmax_q(row_p, cols, m, s) == wanted);
    }
  }
  loss_part[lid.x] = total;
  hit_part[lid.x] = hits;
  bad_part[lid.x] = bad;
  for (var stride = 128u; stride > 0u; stride = stride / 2u) {
    workgroupBarrier();
    if (lid.x < stride) {
      loss_part[lid.x] = loss_part[lid.x] + loss_part[lid.x + stride];
      hit_part[lid.x] = hit_part[lid.x] + hit_part[lid.x + stride];
      bad_part[lid.x] = bad_part[lid.x] + bad_part[lid.x + stride];
    }
  }
  workgroupBarrier();
  if (lid.x == 0u) {
    let slot = params.acc_off + member * params.acc_stride + params.index;
    let before = acc[slot];
    var value = before + params.scale * loss_part[0];
    if (bad_part[0] > 0u || !finite(before) || !finite(value)) { value = bitcast<f32>(0x7fc00000u); }
    acc[slot] = value;
    acc[slot + 1u] = acc[slot + 1u] + hit_part[0];
  }
}
