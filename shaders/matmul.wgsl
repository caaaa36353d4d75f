// matmul.wgsl — tiled matrix product with transpose flags, an optional bias
// and an optional epilogue.
//
// Entry point:
//   matmul    out = op(a) · op(b) (+ bias broadcast over rows)
//             op(a) is (m, k): a stored as (m, k), or as (k, m) when transpose_a = 1
//             op(b) is (k, n): b stored as (k, n), or as (n, k) when transpose_b = 1
//             so x·W, xᵀ·dY and dY·Wᵀ all read their operands where they lie.
//             Epilogues: activation = 1 + kind (0 tanh, 1 sigmoid, 2 relu):
//             out = f(op(a) · op(b) + bias); grad_kind = 1 + kind: out =
//             f'(y) · (op(a) · op(b)) from the saved output y = aux (activations.wgsl's
//             formulas); has_bias_grad = 1: also bias_grad[j] = Σ_p op(b)[p, j], as
//             row m of the product of op(a) with a row of ones appended (bias_grad in
//             out's buffer: a model packs dW and db together).
// Bindings (group 0):
//   0 params  uniform Params, one slot per dispatch (dynamic offset)
//   1 a       storage, read        op(a) from element a_off
//   2 a4      storage, read        the same buffer as a, read as vec4s
//   3 b       storage, read        op(b) from element b_off
//   4 b4      storage, read        the same buffer as b, read as vec4s
//   5 bias    storage, read        n values from bias_off, read when has_bias = 1
//   6 out     storage, read_write  m × n row-major from out_off
//   7 aux     storage, read        y (m × n) from aux_off, read when grad_kind > 0
//   (bias_grad: n values from bias_grad_off in out's buffer, when has_bias_grad = 1)
// Dispatch: (ceil(n / 128), ceil((m + has_bias_grad) / 64)) workgroups of 8 × 8 invocations.
// A workgroup computes a 64 × 128 tile of out, stepping through k in slices
// of 16 staged in workgroup memory; each invocation accumulates an 8 × 16
// block in registers: 128 multiply-adds for every 24 values it reads from the
// tiles. (On a software adapter every memory access costs a loop over the
// SIMD lanes, so reads per multiply-add set the speed; 8 × 16 does 1.3×
// better than 8 × 8 there.) Staging reads 4 consecutive elements as one vec4
// wherever they are contiguous and 16-byte aligned (a_vec4 / b_vec4).

struct Params {
  m: u32, n: u32, k: u32, transpose_a: u32,
  transpose_b: u32, has_bias: u32, a_off: u32, b_off: u32,
  bias_off: u32, out_off: u32, a_vec4: u32, b_vec4: u32,
  activation: u32, grad_kind: u32, aux_off: u32, has_bias_grad: u32,
  bias_grad_off: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) var<storage, read> aux: array<f32>;

const TILE_M: u32 = 64u;
const TILE_N: u32 = 128u;
const TK: u32 = 16u;

// tile_a[kk * 16 + q] = op(a)[row0 + 4q .. 4q + 3][k0 + kk]
// tile_b[kk * 32 + r] = op(b)[k0 + kk][col0 + 4r .. 4r + 3]
var<workgroup> tile_a: array<vec4<f32>, 256>;
var<workgroup> tile_b: array<vec4<f32>, 512>;

fn op_a(i: u32, p: u32) -> f32 {
  if (i >= params.m || p >= params.k) {
    // past the edges: zeros, but for the row of ones that gives bias_grad
    return select(0.0, 1.0, i == params.m && params.has_bias_grad == 1u && p < params.k);
  }
  if (params.transpose_a == 1u) { return a[params.a_off + p * params.m + i]; }
  return a[params.a_off + i * params.k + p];
}

fn op_b(p: u32, j: u32) -> f32 {
  if (p >= params.k || j >= params.n) { return 0.0; }
  if (params.transpose_b == 1u) { return b[params.b_off + j * params.k + p]; }
  return b[params.b_off + p * params.n + j];
}

// op(a)[i .. i + 3][p]: contiguous in memory when a is stored transposed
fn a_rows(i: u32, p: u32) -> vec4<f32> {
  if (params.a_vec4 == 1u && p < params.k && i + 3u < params.m) {
    return a4[(params.a_off + p * params.m + i) / 4u];
  }
  return vec4<f32>(op_a(i, p), op_a(i + 1u, p), op_a(i + 2u, p), op_a(i + 3u, p));
}

// op(b)[p][j .. j + 3]: contiguous in memory when b is stored as (k, n)
fn b_cols(p: u32, j: u32) -> vec4<f32> {
  if (params.b_vec4 == 1u && p < params.k && j + 3u < params.n) {
    return b4[(params.b_off + p * params.n + j) / 4u];
  }
  return vec4<f32>(op_b(p, j), op_b(p, j + 1u), op_b(p, j + 2u), op_b(p, j + 3u));
}

// activations.wgsl's tanh_ and sigmoid (WGSL has no includes)
fn tanh_(x: f32) -> f32 {
  let ax = abs(x);
  if (ax < 0.125) {
    let x2 = x * x;
    return x + x * x2 * (-0.33333334 + x2 * (0.13333334 + x2 * (-0.053968254 + x2 * 0.021869488)));
  }
  let e = exp(-2.0 * min(ax, 10.0));
  return sign(x) * ((1.0 - e) / (1.0 + e));
}

fn sigmoid(x: f32) -> f32 {
  let e = exp(-abs(x));
  let s = 1.0 / (1.0 + e);
  return select(s, e * s, x < 0.0);
}

fn epilogue(x: f32, at: u32) -> f32 {
  switch params.activation {
    case 1u: { return tanh_(x); }
    case 2u: { return sigmoid(x); }
    case 3u: { return max(x, 0.0); }
    default: {}
  }
  if (params.grad_kind == 0u) { return x; }
  let y = aux[params.aux_off + at];
  switch params.grad_kind {
    case 1u: { return ((1.0 - y) * (1.0 + y)) * x; }
    case 2u: { return ((1.0 - y) * y) * x; }
    default: { return select(0.0, x, y > 0.0); }
  }
}

// out[i][j .. j + 15] = v0 .. v3 (+ bias), the parts inside m × n; row m (the
// row of ones) goes to bias_grad, which lies in out's buffer
fn store(i: u32, j: u32, v0: vec4<f32>, v1: vec4<f32>, v2: vec4<f32>, v3: vec4<f32>) {
  if (i > params.m || (i == params.m && params.has_bias_grad == 0u)) { return; }
  let row = select(params.out_off + i * params.n, params.bias_grad_off, i == params.m);
  let v = array<vec4<f32>, 4>(v0, v1, v2, v3);
  for (var c = 0u; c < 16u; c = c + 1u) {
    if (j + c >= params.n) { return; }
    var x = v[c / 4u][c % 4u];
    if (params.has_bias == 1u) { x = x + bias[params.bias_off + j + c]; }
    out[row + j + c] = x;
  }
}

@compute @workgroup_size(8, 8)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let row0 = wid.y * TILE_M;
  let col0 = wid.x * TILE_N;
  let t = lid.y * 8u + lid.x;
  // acc{r}{c}: out[row0 + 8 lid.y + r][col0 + 16 lid.x + 4c .. + 3]
  var acc00 = vec4<f32>(0.0); var acc01 = vec4<f32>(0.0); var acc02 = vec4<f32>(0.0); var acc03 = vec4<f32>(0.0);
  var acc10 = vec4<f32>(0.0); var acc11 = vec4<f32>(0.0); var acc12 = vec4<f32>(0.0); var acc13 = vec4<f32>(0.0);
  var acc20 = vec4<f32>(0.0); var acc21 = vec4<f32>(0.0); var acc22 = vec4<f32>(0.0); var acc23 = vec4<f32>(0.0);
  var acc30 = vec4<f32>(0.0); var acc31 = vec4<f32>(0.0); var acc32 = vec4<f32>(0.0); var acc33 = vec4<f32>(0.0);
  var acc40 = vec4<f32>(0.0); var acc41 = vec4<f32>(0.0); var acc42 = vec4<f32>(0.0); var acc43 = vec4<f32>(0.0);
  var acc50 = vec4<f32>(0.0); var acc51 = vec4<f32>(0.0); var acc52 = vec4<f32>(0.0); var acc53 = vec4<f32>(0.0);
  var acc60 = vec4<f32>(0.0); var acc61 = vec4<f32>(0.0); var acc62 = vec4<f32>(0.0); var acc63 = vec4<f32>(0.0);
  var acc70 = vec4<f32>(0.0); var acc71 = vec4<f32>(0.0); var acc72 = vec4<f32>(0.0); var acc73 = vec4<f32>(0.0);
  for (var k0 = 0u; k0 < params.k; k0 = k0 + TK) {
    // 256 vec4 slots of tile_a (4 an invocation) and 512 of tile_b (8 an
    // invocation), ordered so that neighbouring invocations read
    // neighbouring addresses
    for (var s = 0u; s < 4u; s = s + 1u) {
      let slot = t + 64u * s;
      var kk = slot % TK;
      var q = slot / TK;
      if (params.transpose_a == 1u) { q = slot % 16u; kk = slot / 16u; }
      tile_a[kk * 16u + q] = a_rows(row0 + 4u * q, k0 + kk);
    }
    for (var s = 0u; s < 8u; s = s + 1u) {
      let slot = t + 64u * s;
      var r = slot % 32u;
      var pk = slot / 32u;
      if (params.transpose_b == 1u) { pk = slot % TK; r = slot / TK; }
      tile_b[pk * 32u + r] = b_cols(k0 + pk, col0 + 4u * r);
    }
    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk = kk + 1u) {
      let a_lo = tile_a[kk * 16u + 2u * lid.y];
      let a_hi = tile_a[kk * 16u + 2u * lid.y + 1u];
      let b0 = tile_b[kk * 32u + 4u * lid.x + 0u];
      let b1 = tile_b[kk * 32u + 4u * lid.x + 1u];
      let b2 = tile_b[kk * 32u + 4u * lid.x + 2u];
      let b3 = tile_b[kk * 32u + 4u * lid.x + 3u];
      acc00 = acc00 + a_lo.x * b0; acc01 = acc01 + a_lo.x * b1; acc02 = acc02 + a_lo.x * b2; acc03 = acc03 + a_lo.x * b3;
      acc10 = acc10 + a_lo.y * b0; acc11 = acc11 + a_lo.y * b1; acc12 = acc12 + a_lo.y * b2; acc13 = acc13 + a_lo.y * b3;
      acc20 = acc20 + a_lo.z * b0; acc21 = acc21 + a_lo.z * b1; acc22 = acc22 + a_lo.z * b2; acc23 = acc23 + a_lo.z * b3;
      acc30 = acc30 + a_lo.w * b0; acc31 = acc31 + a_lo.w * b1; acc32 = acc32 + a_lo.w * b2; acc33 = acc33 + a_lo.w * b3;
      acc40 = acc40 + a_hi.x * b0; acc41 = acc41 + a_hi.x * b1; acc42 = acc42 + a_hi.x * b2; acc43 = acc43 + a_hi.x * b3;
      acc50 = acc50 + a_hi.y * b0; acc51 = acc51 + a_hi.y * b1; acc52 = acc52 + a_hi.y * b2; acc53 = acc53 + a_hi.y * b3;
      acc60 = acc60 + a_hi.z * b0; acc61 = acc61 + a_hi.z * b1; acc62 = acc62 + a_hi.z * b2; acc63 = acc63 + a_hi.z * b3;
      acc70 = acc70 + a_hi.w * b0; acc71 = acc71 + a_hi.w * b1; acc72 = acc72 + a_hi.w * b2; acc73 = acc73 + a_hi.w * b3;
    }
    workgroupBarrier();
  }
  let i0 = row0 + 8u * lid.y;
  let j0 = col0 + 16u * lid.x;
  store(i0 + 0u, j0, acc00, acc01, acc02, acc03);
  store(i0 + 1u, j0, acc10, acc11, acc12, acc13);
  store(i0 + 2u, j0, acc20, acc21, acc22, acc23);
  store(i0 + 3u, j0, acc30, acc31, acc32, acc33);
  store(i0 + 4u, j0, acc40, acc41, acc42, acc43);
  store(i0 + 5u, j0, acc50, acc51, acc52, acc53);
  store(i0 + 6u, j0, acc60, acc61, acc62, acc63);
  store(i0 + 7u, j0, acc70, acc71, acc72, acc73);
  // the epilogue, in place over this invocation's own 8 × 16 block (one
  // call site: software adapters pay for every inlined copy)
  if (params.activation == 0u && params.grad_kind == 0u) { return; }
  for (var r = 0u; r < 8u; r = r + 1u) {
    let i = i0 + r;
    if (i >= params.m) { return; }
    for (var c = 0u; c < 16u; c = c + 1u) {
      let j = j0 + c;
      if (j >= params.n) { break; }
      let at = i * params.n + j;
      out[params.out_off + at] = epilogue(out[params.out_off + at], at);
    }
  }
}
