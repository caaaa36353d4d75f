// reductions.wgsl — column sums (the bias gradient Σ_rows dY), and a check
// that every value is finite.
//
// Entry points:
//   sum_rows        out[j] = Σ_i a[i, j] for a of rows × cols
//   flag_nonfinite  out[0] = 1 when any of the rows values of a is NaN or ±inf
//                   (every writer writes the same 1: the result does not depend
//                   on their order); one invocation per value, 256 a
//                   workgroup, (x, y) layout
// Bindings (group 0):
//   0 params  uniform Params, one slot per dispatch (dynamic offset)
//   1 a       storage, read        rows × cols from element a_off
//   2 out     storage, read_write  cols values from out_off
// Dispatch: ceil(cols / 16) workgroups of 16 × 16 invocations: 16 columns a
// workgroup, 16 lanes a column striding over the rows, then a fixed-order tree
// sum of the 16 lanes (deterministic).

struct Params {
  rows: u32, cols: u32, a_off: u32, out_off: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> partial: array<f32, 256>;

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
fn flag_nonfinite(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                  @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = (wid.y * groups.x + wid.x) * 256u + lid.x;
  if (i >= params.rows) { return; }
  // NaN and inf have every exponent bit set; WGSL promises nothing for x != x
  if ((bitcast<u32>(a[params.a_off + i]) & 0x7f800000u) == 0x7f800000u) { out[params.out_off] = 1.0; }
}
