// matmul.wgsl — tiled matrix products with transpose flags, an optional bias
// and an optional epilogue, in three strategies (intricate_py.backends.matmul_plan
// picks one from the shape and the device).
//
// (matmul_subgroup.wgsl extends this file with subgroup variants of the large
// and small tiles.)
//
// includes: activation_functions.wgsl
// includes: grid.wgsl
//
// Entry points:
//   matmul          out = op(a) · op(b) (+ bias broadcast over rows), 64 × 128 tiles
//   matmul_small    the same with 32 × 32 tiles, for products too small to fill
//                   a device with the large ones
//   matmul_big      the same with 128 × 128 tiles of 256 invocations (8 × 8 outputs
//                   each), k in slices of 8 staged double-buffered: one barrier a
//                   slice, the next slice's loads beside the current one's sums
//   matmul_reduce   the second pass of a split-K product: out = the sum, in the
//                   order of the splits, of the `splits` partial products that
//                   matmul or matmul_small left in `a` (then bias, epilogue)
//   op(a) is (m, k): a stored as (m, k), or as (k, m) when transpose_a = 1;
//   op(b) is (k, n): b stored as (k, n), or as (n, k) when transpose_b = 1; so
//   x·W, xᵀ·dY and dY·Wᵀ all read their operands where they lie.
//   Epilogues: activation = 1 + kind (an ACTIVATION_* constant), param its scalar:
//   out = f(op(a) · op(b) + bias); grad_kind = 1 + kind: out = f'(y) · (op(a) · op(b))
//   from the saved output y = aux (activation_functions.wgsl's gradient_from_output;
//   NaN for a kind whose output does not determine its gradient); has_bias_grad = 1: also
//   bias_grad[j] = Σ_p op(b)[p, j], as row m of the product of op(a) with a row of
//   ones appended (bias_grad in out's buffer: a model packs dW and db together).
//   Split-K (splits > 1): workgroup z takes k from z · k_chunk (a multiple of 16)
//   to the next split's start, and writes its raw (m + has_bias_grad) × n partial
//   product to out at out_off + z · split_stride; matmul_reduce, one invocation per
//   element, sums them in a fixed order: no atomics, so results are deterministic.
//   Populations: the workgroups of z = member · splits + split compute member
//   `member`'s product (members = the z groups / splits), every offset moved by
//   member · its *_stride (a_stride ... bias_grad_stride; 0 for an operand the
//   members share, as the batch they all read): one dispatch for every member.
// Bindings (group 0):
//   0 params  uniform Params, one slot per dispatch (dynamic offset)
//   1 a       storage, read        op(a) from element a_off (matmul_reduce: the partials)
//   2 a4      storage, read        the same buffer as a, read as vec4s
//   3 b       storage, read        op(b) from element b_off
//   4 b4      storage, read        the same buffer as b, read as vec4s
//   5 bias    storage, read        n values from bias_off, read when has_bias = 1
//   6 out     storage, read_write  m × n row-major from out_off
//   7 aux     storage, read        y (m × n) from aux_off, read when grad_kind > 0
//   (bias_grad: n values from bias_grad_off in out's buffer, when has_bias_grad = 1)
// Dispatch: matmul (ceil(n / 128), ceil((m + has_bias_grad) / 64), splits · members) workgroups
// of 8 × 8 invocations; matmul_small the same with 32 × 32 tiles; matmul_big with
// 128 × 128 tiles of 16 × 16 invocations; matmul_reduce one
// invocation per element of (m + has_bias_grad) × n, 256 a workgroup, (x, y) layout,
// z the member.
// A large workgroup computes a 64 × 128 tile of out, stepping through k in
// slices of 16 staged in workgroup memory; each invocation accumulates an 8 × 16
// block in registers: 128 multiply-adds for every 24 values it reads from the
// tiles. (On a software adapter every memory access costs a loop over the
// SIMD lanes, so reads per multiply-add set the speed; 8 × 16 does 1.3×
// better than 8 × 8 there.) A small one, 32 × 32 with a 4 × 4 block an
// invocation. Staging reads 4 consecutive elements as one vec4 wherever they
// are contiguous and 16-byte aligned (a_vec4 / b_vec4).

struct Params {
  m: u32, n: u32, k: u32, transpose_a: u32,
  transpose_b: u32, has_bias: u32, a_off: u32, b_off: u32,
  bias_off: u32, out_off: u32, a_vec4: u32, b_vec4: u32,
  activation: u32, grad_kind: u32, aux_off: u32, has_bias_grad: u32,
  bias_grad_off: u32, k_chunk: u32, split_stride: u32, splits: u32,
  param: f32, a_stride: u32, b_stride: u32, out_stride: u32,
  bias_stride: u32, aux_stride: u32, bias_grad_stride: u32, _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) var<storage, read> aux: array<f32>;

// A population's products: the workgroups of member z compute its product, each
// operand lying member · *_stride elements after the offset given (0 for an operand
// the members share). set_member, first thing in each entry point, leaves
// where this workgroup's operands start.
var<private> a_base: u32;
var<private> b_base: u32;
var<private> out_base: u32;
var<private> bias_base: u32;
var<private> aux_base: u32;
var<private> bias_grad_base: u32;

fn set_member(member: u32) {
  a_base = params.a_off + member * params.a_stride;
  b_base = params.b_off + member * params.b_stride;
  out_base = params.out_off + member * params.out_stride;
  bias_base = params.bias_off + member * params.bias_stride;
  aux_base = params.aux_off + member * params.aux_stride;
  bias_grad_base = params.bias_grad_off + member * params.bias_grad_stride;
}

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
  if (params.transpose_a == 1u) { return a[a_base + p * params.m + i]; }
  return a[a_base + i * params.k + p];
}

fn op_b(p: u32, j: u32) -> f32 {
  if (p >= params.k || j >= params.n) { return 0.0; }
  if (params.transpose_b == 1u) { return b[b_base + j * params.k + p]; }
  return b[b_base + p * params.n + j];
}

// op(a)[i .. i + 3][p]: contiguous in memory when a is stored transposed
fn a_rows(i: u32, p: u32) -> vec4<f32> {
  if (params.a_vec4 == 1u && p < params.k && i + 3u < params.m) {
    return a4[(a_base + p * params.m + i) / 4u];
  }
  return vec4<f32>(op_a(i, p), op_a(i + 1u, p), op_a(i + 2u, p), op_a(i + 3u, p));
}

// op(b)[p][j .. j + 3]: contiguous in memory when b is stored as (k, n)
fn b_cols(p: u32, j: u32) -> vec4<f32> {
  if (params.b_vec4 == 1u && p < params.k && j + 3u < params.n) {
    return b4[(b_base + p * params.n + j) / 4u];
  }
  return vec4<f32>(op_b(p, j), op_b(p, j + 1u), op_b(p, j + 2u), op_b(p, j + 3u));
}

// f(x) for an activation, f'(y) · x for an activation's gradient (the
// functions of activation_functions.wgsl), else x
fn epilogue(x: f32, at: u32) -> f32 {
  if (params.activation != 0u) { return activate(params.activation - 1u, x, params.param); }
  if (params.grad_kind == 0u) { return x; }
  return gradient_from_output(params.grad_kind - 1u, aux[aux_base + at], x, params.param);
}

// Where row i of the product goes: out's row i, bias_grad for row m, or, when
// the product is split, row i of split z's partial product; NONE when nowhere.
const NONE: u32 = 0xffffffffu;

fn row_start(i: u32, z: u32) -> u32 {
  if (i > params.m || (i == params.m && params.has_bias_grad == 0u)) { return NONE; }
  if (params.splits > 1u) { return out_base + z * params.split_stride + i * params.n; }
  return select(out_base + i * params.n, bias_grad_base, i == params.m);
}

// out[i][j .. j + 3] = v (+ bias), the parts inside the product
fn store4(i: u32, j: u32, z: u32, v: vec4<f32>) {
  let row = row_start(i, z);
  if (row == NONE) { return; }
  for (var c = 0u; c < 4u; c = c + 1u) {
    if (j + c >= params.n) { return; }
    var x = v[c];
    if (params.has_bias == 1u) { x = x + bias[bias_base + j + c]; }
    out[row + j + c] = x;
  }
}

// The epilogue, in place over an invocation's own rows × cols block at (i0, j0):
// one call site, since software adapters pay for every inlined copy.
fn apply_epilogue(i0: u32, rows: u32, j0: u32, cols: u32) {
  if (params.activation == 0u && params.grad_kind == 0u) { return; }
  for (var r = 0u; r < rows; r = r + 1u) {
    let i = i0 + r;
    if (i >= params.m) { return; }
    for (var c = 0u; c < cols; c = c + 1u) {
      let j = j0 + c;
      if (j >= params.n) { break; }
      let at = i * params.n + j;
      out[out_base + at] = epilogue(out[out_base + at], at);
    }
  }
}

// The k range of split z: [z · k_chunk, min((z + 1) · k_chunk, k)).
fn k_end(z: u32) -> u32 { return min(z * params.k_chunk + params.k_chunk, params.k); }

// An invocation's 8 × 16 block of a 64 × 128 tile (matmul and matmul_subgroup):
// c{r}{c} holds row r, columns 4c .. 4c + 3. Named fields, not an array: a
// software adapter keeps those in registers.
struct Block {
  c00: vec4<f32>, c01: vec4<f32>, c02: vec4<f32>, c03: vec4<f32>,
  c10: vec4<f32>, c11: vec4<f32>, c12: vec4<f32>, c13: vec4<f32>,
  c20: vec4<f32>, c21: vec4<f32>, c22: vec4<f32>, c23: vec4<f32>,
  c30: vec4<f32>, c31: vec4<f32>, c32: vec4<f32>, c33: vec4<f32>,
  c40: vec4<f32>, c41: vec4<f32>, c42: vec4<f32>, c43: vec4<f32>,
  c50: vec4<f32>, c51: vec4<f32>, c52: vec4<f32>, c53: vec4<f32>,
  c60: vec4<f32>, c61: vec4<f32>, c62: vec4<f32>, c63: vec4<f32>,
  c70: vec4<f32>, c71: vec4<f32>, c72: vec4<f32>, c73: vec4<f32>,
}

// tile_b[pk * width + r] = op(b)[k0 + pk][col0 + 4r .. 4r + 3] for a tile `width`
// vec4s wide, by invocation t of 64: width × 16 slots, width / 4 an invocation,
// ordered so that neighbouring invocations read neighbouring addresses
// (matmul's 64 × 128 tiles: width 32; matmul_small's 32 × 32: width 8)
fn stage_b_tile(t: u32, k0: u32, col0: u32, width: u32) {
  for (var s = 0u; s < width / 4u; s = s + 1u) {
    let slot = t + 64u * s;
    var r = slot % width;
    var pk = slot / width;
    if (params.transpose_b == 1u) { pk = slot % TK; r = slot / TK; }
    tile_b[pk * width + r] = b_cols(k0 + pk, col0 + 4u * r);
  }
}

fn stage_b(t: u32, k0: u32, col0: u32) { stage_b_tile(t, k0, col0, 32u); }

// block += op(a)'s rows at k0 + kk (a_lo: rows 0-3, a_hi: rows 4-7) ⊗ op(b)'s
// columns 16 tx .. + 15 at k0 + kk, from tile_b
fn mad_block(acc: ptr<function, Block>, a_lo: vec4<f32>, a_hi: vec4<f32>, kk: u32, tx: u32) {
  let b0 = tile_b[kk * 32u + 4u * tx + 0u];
  let b1 = tile_b[kk * 32u + 4u * tx + 1u];
  let b2 = tile_b[kk * 32u + 4u * tx + 2u];
  let b3 = tile_b[kk * 32u + 4u * tx + 3u];
  (*acc).c00 = (*acc).c00 + a_lo.x * b0; (*acc).c01 = (*acc).c01 + a_lo.x * b1; (*acc).c02 = (*acc).c02 + a_lo.x * b2; (*acc).c03 = (*acc).c03 + a_lo.x * b3;
  (*acc).c10 = (*acc).c10 + a_lo.y * b0; (*acc).c11 = (*acc).c11 + a_lo.y * b1; (*acc).c12 = (*acc).c12 + a_lo.y * b2; (*acc).c13 = (*acc).c13 + a_lo.y * b3;
  (*acc).c20 = (*acc).c20 + a_lo.z * b0; (*acc).c21 = (*acc).c21 + a_lo.z * b1; (*acc).c22 = (*acc).c22 + a_lo.z * b2; (*acc).c23 = (*acc).c23 + a_lo.z * b3;
  (*acc).c30 = (*acc).c30 + a_lo.w * b0; (*acc).c31 = (*acc).c31 + a_lo.w * b1; (*acc).c32 = (*acc).c32 + a_lo.w * b2; (*acc).c33 = (*acc).c33 + a_lo.w * b3;
  (*acc).c40 = (*acc).c40 + a_hi.x * b0; (*acc).c41 = (*acc).c41 + a_hi.x * b1; (*acc).c42 = (*acc).c42 + a_hi.x * b2; (*acc).c43 = (*acc).c43 + a_hi.x * b3;
  (*acc).c50 = (*acc).c50 + a_hi.y * b0; (*acc).c51 = (*acc).c51 + a_hi.y * b1; (*acc).c52 = (*acc).c52 + a_hi.y * b2; (*acc).c53 = (*acc).c53 + a_hi.y * b3;
  (*acc).c60 = (*acc).c60 + a_hi.z * b0; (*acc).c61 = (*acc).c61 + a_hi.z * b1; (*acc).c62 = (*acc).c62 + a_hi.z * b2; (*acc).c63 = (*acc).c63 + a_hi.z * b3;
  (*acc).c70 = (*acc).c70 + a_hi.w * b0; (*acc).c71 = (*acc).c71 + a_hi.w * b1; (*acc).c72 = (*acc).c72 + a_hi.w * b2; (*acc).c73 = (*acc).c73 + a_hi.w * b3;
}

// out[i0 ..][j0 ..] = the block (+ bias, then the epilogue), what lies inside the product
fn store_block(acc: ptr<function, Block>, i0: u32, j0: u32, z: u32) {
  store4(i0, j0, z, (*acc).c00); store4(i0, j0 + 4u, z, (*acc).c01); store4(i0, j0 + 8u, z, (*acc).c02); store4(i0, j0 + 12u, z, (*acc).c03);
  store4(i0 + 1u, j0, z, (*acc).c10); store4(i0 + 1u, j0 + 4u, z, (*acc).c11); store4(i0 + 1u, j0 + 8u, z, (*acc).c12); store4(i0 + 1u, j0 + 12u, z, (*acc).c13);
  store4(i0 + 2u, j0, z, (*acc).c20); store4(i0 + 2u, j0 + 4u, z, (*acc).c21); store4(i0 + 2u, j0 + 8u, z, (*acc).c22); store4(i0 + 2u, j0 + 12u, z, (*acc).c23);
  store4(i0 + 3u, j0, z, (*acc).c30); store4(i0 + 3u, j0 + 4u, z, (*acc).c31); store4(i0 + 3u, j0 + 8u, z, (*acc).c32); store4(i0 + 3u, j0 + 12u, z, (*acc).c33);
  store4(i0 + 4u, j0, z, (*acc).c40); store4(i0 + 4u, j0 + 4u, z, (*acc).c41); store4(i0 + 4u, j0 + 8u, z, (*acc).c42); store4(i0 + 4u, j0 + 12u, z, (*acc).c43);
  store4(i0 + 5u, j0, z, (*acc).c50); store4(i0 + 5u, j0 + 4u, z, (*acc).c51); store4(i0 + 5u, j0 + 8u, z, (*acc).c52); store4(i0 + 5u, j0 + 12u, z, (*acc).c53);
  store4(i0 + 6u, j0, z, (*acc).c60); store4(i0 + 6u, j0 + 4u, z, (*acc).c61); store4(i0 + 6u, j0 + 8u, z, (*acc).c62); store4(i0 + 6u, j0 + 12u, z, (*acc).c63);
  store4(i0 + 7u, j0, z, (*acc).c70); store4(i0 + 7u, j0 + 4u, z, (*acc).c71); store4(i0 + 7u, j0 + 8u, z, (*acc).c72); store4(i0 + 7u, j0 + 12u, z, (*acc).c73);
  apply_epilogue(i0, 8u, j0, 16u);
}

@compute @workgroup_size(8, 8)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  set_member(wid.z / params.splits);
  let z = wid.z % params.splits;
  let row0 = wid.y * TILE_M;
  let col0 = wid.x * TILE_N;
  let t = lid.y * 8u + lid.x;
  var acc: Block;  // out[row0 + 8 lid.y + r][col0 + 16 lid.x + 4c .. + 3] in acc.c{r}{c}
  for (var k0 = z * params.k_chunk; k0 < k_end(z); k0 = k0 + TK) {
    // 256 vec4 slots of tile_a (4 an invocation), ordered so that
    // neighbouring invocations read neighbouring addresses; then tile_b
    for (var s = 0u; s < 4u; s = s + 1u) {
      let slot = t + 64u * s;
      var kk = slot % TK;
      var q = slot / TK;
      if (params.transpose_a == 1u) { q = slot % 16u; kk = slot / 16u; }
      tile_a[kk * 16u + q] = a_rows(row0 + 4u * q, k0 + kk);
    }
    stage_b(t, k0, col0);
    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk = kk + 1u) {
      let a_lo = tile_a[kk * 16u + 2u * lid.y];
      let a_hi = tile_a[kk * 16u + 2u * lid.y + 1u];
      mad_block(&acc, a_lo, a_hi, kk, lid.x);
    }
    workgroupBarrier();
  }
  let i0 = row0 + 8u * lid.y;
  let j0 = col0 + 16u * lid.x;
  store_block(&acc, i0, j0, z);
}

// tile_b of a 32 × 32 tile: its first 128 slots
fn stage_b_small(t: u32, k0: u32, col0: u32) { stage_b_tile(t, k0, col0, 8u); }

// tile_a[kk * 8 + q] = op(a)[row0 + 4q .. 4q + 3][k0 + kk] and tile_b[kk * 8 + r] =
// op(b)[k0 + kk][col0 + 4r .. 4r + 3], in the first 128 slots of each tile
@compute @workgroup_size(8, 8)
fn matmul_small(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  set_member(wid.z / params.splits);
  let z = wid.z % params.splits;
  let row0 = wid.y * 32u;
  let col0 = wid.x * 32u;
  let t = lid.y * 8u + lid.x;
  // acc{r}: out[row0 + 4 lid.y + r][col0 + 4 lid.x .. + 3]
  var acc0 = vec4<f32>(0.0); var acc1 = vec4<f32>(0.0); var acc2 = vec4<f32>(0.0); var acc3 = vec4<f32>(0.0);
  for (var k0 = z * params.k_chunk; k0 < k_end(z); k0 = k0 + TK) {
    for (var s = 0u; s < 2u; s = s + 1u) {
      let slot = t + 64u * s;
      var kk = slot % TK;
      var q = slot / TK;
      if (params.transpose_a == 1u) { q = slot % 8u; kk = slot / 8u; }
      tile_a[kk * 8u + q] = a_rows(row0 + 4u * q, k0 + kk);
    }
    stage_b_small(t, k0, col0);
    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk = kk + 1u) {
      let av = tile_a[kk * 8u + lid.y];
      let bv = tile_b[kk * 8u + lid.x];
      acc0 = acc0 + av.x * bv; acc1 = acc1 + av.y * bv; acc2 = acc2 + av.z * bv; acc3 = acc3 + av.w * bv;
    }
    workgroupBarrier();
  }
  let i0 = row0 + 4u * lid.y;
  let j0 = col0 + 4u * lid.x;
  store4(i0, j0, z, acc0); store4(i0 + 1u, j0, z, acc1); store4(i0 + 2u, j0, z, acc2); store4(i0 + 3u, j0, z, acc3);
  apply_epilogue(i0, 4u, j0, 4u);
}

// The big kernel's tiles, two of each (double buffering): slice k0 computes
// from one while the next slice is staged into the other, one barrier a slice.
// big_a[buf · 256 + kk · 32 + q] = op(a)[row0 + 4q .. 4q + 3][k0 + kk], and
// big_b[buf · 256 + kk · 32 + r] = op(b)[k0 + kk][col0 + 4r .. 4r + 3]
var<workgroup> big_a: array<vec4<f32>, 512>;
var<workgroup> big_b: array<vec4<f32>, 512>;

fn stage_big(t: u32, buf: u32, row0: u32, col0: u32, k0: u32) {
  var kk = t % 8u;
  var q = t / 8u;
  if (params.transpose_a == 1u) { q = t % 32u; kk = t / 32u; }
  big_a[buf * 256u + kk * 32u + q] = a_rows(row0 + 4u * q, k0 + kk);
  var r = t % 32u;
  var pk = t / 32u;
  if (params.transpose_b == 1u) { pk = t % 8u; r = t / 8u; }
  big_b[buf * 256u + pk * 32u + r] = b_cols(k0 + pk, col0 + 4u * r);
}

// 128 × 128 tiles, 256 invocations of 8 × 8 outputs, k in slices of 8, double-buffered
@compute @workgroup_size(16, 16)
fn matmul_big(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  set_member(wid.z / params.splits);
  let z = wid.z % params.splits;
  let row0 = wid.y * 128u;
  let col0 = wid.x * 128u;
  let t = lid.y * 16u + lid.x;
  // acc{r}{c}: out[row0 + 8 lid.y + r][col0 + 8 lid.x + 4c .. + 3]
  var acc00 = vec4<f32>(0.0); var acc01 = vec4<f32>(0.0); var acc10 = vec4<f32>(0.0); var acc11 = vec4<f32>(0.0);
  var acc20 = vec4<f32>(0.0); var acc21 = vec4<f32>(0.0); var acc30 = vec4<f32>(0.0); var acc31 = vec4<f32>(0.0);
  var acc40 = vec4<f32>(0.0); var acc41 = vec4<f32>(0.0); var acc50 = vec4<f32>(0.0); var acc51 = vec4<f32>(0.0);
  var acc60 = vec4<f32>(0.0); var acc61 = vec4<f32>(0.0); var acc70 = vec4<f32>(0.0); var acc71 = vec4<f32>(0.0);
  let begin = z * params.k_chunk;
  let end = k_end(z);
  if (begin < end) { stage_big(t, 0u, row0, col0, begin); }
  workgroupBarrier();
  var buf = 0u;
  for (var k0 = begin; k0 < end; k0 = k0 + 8u) {
    if (k0 + 8u < end) { stage_big(t, 1u - buf, row0, col0, k0 + 8u); }
    for (var kk = 0u; kk < 8u; kk = kk + 1u) {
      let base = buf * 256u + kk * 32u;
      let a_lo = big_a[base + 2u * lid.y];
      let a_hi = big_a[base + 2u * lid.y + 1u];
      let b0 = big_b[base + 2u * lid.x];
      let b1 = big_b[base + 2u * lid.x + 1u];
      acc00 = acc00 + a_lo.x * b0; acc01 = acc01 + a_lo.x * b1; acc10 = acc10 + a_lo.y * b0; acc11 = acc11 + a_lo.y * b1;
      acc20 = acc20 + a_lo.z * b0; acc21 = acc21 + a_lo.z * b1; acc30 = acc30 + a_lo.w * b0; acc31 = acc31 + a_lo.w * b1;
      acc40 = acc40 + a_hi.x * b0; acc41 = acc41 + a_hi.x * b1; acc50 = acc50 + a_hi.y * b0; acc51 = acc51 + a_hi.y * b1;
      acc60 = acc60 + a_hi.z * b0; acc61 = acc61 + a_hi.z * b1; acc70 = acc70 + a_hi.w * b0; acc71 = acc71 + a_hi.w * b1;
    }
    workgroupBarrier();
    buf = 1u - buf;
  }
  let i0 = row0 + 8u * lid.y;
  let j0 = col0 + 8u * lid.x;
  store4(i0, j0, z, acc00); store4(i0, j0 + 4u, z, acc01); store4(i0 + 1u, j0, z, acc10); store4(i0 + 1u, j0 + 4u, z, acc11);
  store4(i0 + 2u, j0, z, acc20); store4(i0 + 2u, j0 + 4u, z, acc21); store4(i0 + 3u, j0, z, acc30); store4(i0 + 3u, j0 + 4u, z, acc31);
  store4(i0 + 4u, j0, z, acc40); store4(i0 + 4u, j0 + 4u, z, acc41); store4(i0 + 5u, j0, z, acc50); store4(i0 + 5u, j0 + 4u, z, acc51);
  store4(i0 + 6u, j0, z, acc60); store4(i0 + 6u, j0 + 4u, z, acc61); store4(i0 + 7u, j0, z, acc70); store4(i0 + 7u, j0 + 4u, z, acc71);
  apply_epilogue(i0, 8u, j0, 8u);
}

@compute @workgroup_size(256)
fn matmul_reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                 @builtin(local_invocation_id) lid: vec3<u32>) {
  set_member(wid.z);
  let e = flat_index(wid, groups, lid);
  let rows = params.m + params.has_bias_grad;
  if (e >= rows * params.n) { return; }
  let i = e / params.n;
  let j = e % params.n;
  var x = 0.0;
  for (var z = 0u; z < params.splits; z = z + 1u) { x = x + a[a_base + z * params.split_stride + e]; }
  if (i == params.m) {  // the row of ones: the bias gradient
    out[bias_grad_base + j] = x;
    return;
  }
  if (params.has_bias == 1u) { x = x + bias[bias_base + j]; }
  if (params.activation != 0u || params.grad_kind != 0u) { x = epilogue(x, e); }
  out[out_base + e] = x;
}
