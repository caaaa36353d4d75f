// reductions.wgsl — column sums (the bias gradient Σ_rows dY), sums per
// channel (a convolution's), and a check that every value is finite.
//
// includes: grid.wgsl
//
// Entry points:
//   sum_rows        out[j] = Σ_i a[i, j] for a of rows × cols
//   sum_channels    out[ch] = Σ a[o, ch, i] for a of rows × cols × inner (o < rows,
//                   ch < cols, i < inner); one workgroup of 256 a channel, (x, y)
//                   layout, each lane striding over the rows · inner values, then
//                   a fixed-order tree sum of the lanes (deterministic)
//   flag_nonfinite  out[0] = 1 when any of the rows values of a is NaN or ±inf
//                   (every writer writes the same 1: the result does not depend
//                   on their order); one invocation per value, 256 a
//                   workgroup, (x, y) layout
// Bindings (group 0):
//   0 params  uniform Params, one slot per dispatch (dynamic offset)
//   1 a       storage, read        rows × cols from element a_off
//   2 out     storage, read_write  cols values from out_off
// Dispatch: sum_rows, ceil(cols / 16) workgroups of 16 × 16 invocations: 16
// columns a workgroup, 16 lanes a column striding over the rows, then a
// fixed-order tree sum of the 16 lanes (deterministic); sum_channels, one
// workgroup a channel; flag_nonfinite, one invocation a value (sum_channels and
// flag_nonfinite for a population: z the member, a and out member · a_stride and
// out_stride on).

struct Params {
  rows: u32, cols: u32, a_off: u32, out_off: u32,
  inner: u32, a_stride: u32, out_stride: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> partial: array<f32, 256>;
var<workgroup> lanes: array<f32, 256>;

@compute @workgroup_size(16, 16)
fn sum_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let j = wid.x * 16u + lid.x;
  var s = 0.0;
  if (j < params.cols) {
    for (var i = lid.y; i < params.rows; i = i + 16u) { s = s + a[params.a_off + i * params.cols + j]; }
  }
  partial[lid.y * 16u + lid.x] = s;
  for (var stride = 8u; stride > 0u; stride = stride / 2u) {
    workgroupBarrier();
    if (lid.y < stride) {
      partial[lid.y * 16u + lid.x] = partial[lid.y * 16u + lid.x] + partial[(lid.y + stride) * 16u + lid.x];
    }
  }
  if (lid.y == 0u && j < params.cols) { out[params.out_off + j] = partial[lid.x]; }
}

@compute @workgroup_size(256)
fn sum_channels(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
  let ch = wid.y * groups.x + wid.x;
  let m = params.rows * params.inner;
  let member = wid.z;  // of a population: its a and out lie member · *_stride further on
  let a_off = params.a_off + member * params.a_stride;
  var s = 0.0;
  if (ch < params.cols) {
    for (var t = lid.x; t < m; t = t + 256u) {
      let o = t / params.inner;
      s = s + a[a_off + (o * params.cols + ch) * params.inner + t % params.inner];
    }
  }
  lanes[lid.x] = s;
  for (var stride = 128u; stride > 0u; stride = stride / 2u) {
    workgroupBarrier();
    if (lid.x < stride) { lanes[lid.x] = lanes[lid.x] + lanes[lid.x + stride]; }
  }
  if (lid.x == 0u && ch < params.cols) { out[params.out_off + member * params.out_stride + ch] = lanes[0]; }
}

@compute @workgroup_size(256)
fn flag_nonfinite(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                  @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = flat_index(wid, groups, lid);
  if (i >= params.rows) { return; }
  let member = wid.z;  // of a population: its a and out lie member · *_stride further on
  // NaN and inf have every exponent bit set; WGSL promises nothing for x != x
  if ((bitcast<u32>(a[params.a_off + member * params.a_stride + i]) & 0x7f800000u) == 0x7f800000u) {
    out[params.out_off + member * params.out_stride] = 1.0;
  }
}
