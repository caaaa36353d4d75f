// gather.wgsl — batches taken from a dataset on the device.
//
// includes: grid.wgsl
//
// Entry point:
//   take_rows  out[r, :] = src[idx[first + r] - row_lo, :] for every r with
//              row_lo <= idx[first + r] < row_hi (other rows are left alone, so
//              a dataset split into several buffers is gathered one buffer, one
//              dispatch, at a time); and when count2 > 0, in the same pass,
//              out2[r, :] = src2[idx[first + r], :] (a batch's targets beside its
//              samples)
// Bindings (group 0):
//   0 params  uniform Params, one slot per dispatch (dynamic offset)
//   1 src     storage, read        rows row_lo..row_hi of the dataset, from src_off
//   2 idx     storage, read        i32 row numbers from idx_off
//   3 out     storage, read_write  rows × row_len from out_off
//   4 src2    storage, read        the second dataset from src2_off (count2 > 0)
//   5 out2    storage, read_write  rows × row_len2 from out2_off (count2 > 0)
// Dispatch: one invocation per output element of out and out2, 256 a
// workgroup, (x, y) layout.

struct Params {
  count: u32, row_len: u32, src_off: u32, idx_off: u32,
  out_off: u32, row_lo: u32, row_hi: u32, first: u32,
  count2: u32, row_len2: u32, src2_off: u32, out2_off: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> idx: array<i32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> src2: array<f32>;
@group(0) @binding(5) var<storage, read_write> out2: array<f32>;

@compute @workgroup_size(256)
fn take_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = flat_index(wid, groups, lid);
  if (i < params.count) {
    let r = i / params.row_len;
    let row = u32(idx[params.idx_off + params.first + r]);
    if (row < params.row_lo || row >= params.row_hi) { return; }
    out[params.out_off + i] = src[params.src_off + (row - params.row_lo) * params.row_len + i % params.row_len];
    return;
  }
  let j = i - params.count;
  if (j >= params.count2) { return; }
  let r = j / params.row_len2;
  let row = u32(idx[params.idx_off + params.first + r]);
  out2[params.out2_off + j] = src2[params.src2_off + row * params.row_len2 + j % params.row_len2];
}
