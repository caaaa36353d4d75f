// clipping.wgsl — gradient clipping by L2 norm (Keras's clipnorm and
// global_clipnorm) on the device: two dispatches a step, no readback.
//
// An array x is cut into chunks of at most 4096 values (NORM_CHUNK in
// wgpu_backend.py), none across a group's border (a group: one parameter for
// clipnorm, every parameter together for global_clipnorm). Row c of the
// table, 4 u32: the chunk's start and stop (elements of x from x_off), and
// the first and end slots of acc (from acc_off) whose total is its group's
// squared norm.
//
// Entry points:
//   sum_squares  acc[acc_off + sum_off + c] = Σ x[i]² over chunk c
//   clip_norm    x[i] *= clip / max(sqrt(Σ acc[first .. end]), clip) over
//                chunk c, NaN when that total is NaN or ±inf (nothing written
//                when the norm is at most clip); every workgroup of a group
//                sums its partial sums in the same order, so they all scale by
//                the same factor
// Both: one workgroup of 256 a chunk; each lane strides over the chunk's
// values (or the group's partial sums), then a fixed-order tree sum of the
// lanes (deterministic).
// Bindings (group 0):
//   0 params  uniform Params, one slot per dispatch (dynamic offset)
//   1 table   storage, read        4 u32 a chunk, from table_off
//   2 x       storage, read_write  the array, from x_off
//   3 acc     storage, read_write  the partial sums, from acc_off
// Dispatch: one workgroup a chunk (chunks of them), (x, y) layout.

struct Params {
  chunks: u32, table_off: u32, x_off: u32, acc_off: u32,
  sum_off: u32, clip: f32, _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> table: array<u32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> acc: array<f32>;

var<workgroup> lanes: array<f32, 256>;

// every lane's s summed in a fixed-order tree; the same total for every lane
fn lane_total(lane: u32, s: f32) -> f32 {
  lanes[lane] = s;
  for (var stride = 128u; stride > 0u; stride = stride / 2u) {
    workgroupBarrier();
    if (lane < stride) { lanes[lane] = lanes[lane] + lanes[lane + stride]; }
  }
  return workgroupUniformLoad(&lanes[0]);
}

@compute @workgroup_size(256)
fn sum_squares(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
  let c = wid.y * groups.x + wid.x;
  var s = 0.0;
  if (c < params.chunks) {
    let row = params.table_off + 4u * c;
    let stop = params.x_off + table[row + 1u];
    for (var i = params.x_off + table[row] + lid.x; i < stop; i = i + 256u) {
      let v = x[i];
      s = s + v * v;
    }
  }
  let total = lane_total(lid.x, s);
  if (lid.x == 0u && c < params.chunks) { acc[params.acc_off + params.sum_off + c] = total; }
}

@compute @workgroup_size(256)
fn clip_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
  let c = wid.y * groups.x + wid.x;
  let row = params.table_off + 4u * c;
  var s = 0.0;
  if (c < params.chunks) {
    for (var k = table[row + 2u] + lid.x; k < table[row + 3u]; k = k + 256u) { s = s + acc[params.acc_off + k]; }
  }
  let total = lane_total(lid.x, s);
  if (c >= params.chunks) { return; }
  var scale = 1.0;
  if ((bitcast<u32>(total) & 0x7f800000u) == 0x7f800000u) {
    scale = bitcast<f32>(0x7fc00000u);  // NaN: the sum was NaN or inf
  } else {
    let norm = sqrt(total);
    if (norm > params.clip) { scale = params.clip / norm; }
  }
  if (scale == 1.0) { return; }
  let stop = params.x_off + table[row + 1u];
  for (var i = params.x_off + table[row] + lid.x; i < stop; i = i + 256u) { x[i] = x[i] * scale; }
}
