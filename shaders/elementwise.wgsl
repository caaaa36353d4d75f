// elementwise.wgsl — sums, products and scaled copies of arrays, and copies
// of column slices: the merge layers (Add, Subtract, Multiply, Average,
// Concatenate) and the gradients that meet where a tensor has several consumers.
//
// includes: grid.wgsl
//
// Entry points:
//   add         out[i] = scale · (a[i] + b[i])
//   multiply    out[i] = a[i] · b[i]
//   scale       out[i] = scale · a[i]
//   copy_slice  out[r, out_start + j] = a[r, a_start + j] for r < count / width,
//               j < width; rows of a_cols values in a, of out_cols in out
// Where a_in_out (b_in_out) is 1, a (b) is the buffer out is in: it is read
// through out's binding (a buffer may not be bound for reading and writing in
// one dispatch), which lets a gradient accumulate in place.
// Bindings (group 0):
//   0 params  uniform Params, one slot per dispatch (dynamic offset)
//   1 a       storage, read        from element a_off
//   2 b       storage, read        from element b_off (add and multiply)
//   3 out     storage, read_write  from element out_off
// Dispatch: one invocation per element written (count of them), 256 a
// workgroup, (x, y) layout.

struct Params {
  count: u32, a_off: u32, b_off: u32, out_off: u32,
  a_in_out: u32, b_in_out: u32, scale: f32, width: u32,
  a_cols: u32, a_start: u32, out_cols: u32, out_start: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn read_a(i: u32) -> f32 {
  if (params.a_in_out == 1u) { return out[params.a_off + i]; }
  return a[params.a_off + i];
}

fn read_b(i: u32) -> f32 {
  if (params.b_in_out == 1u) { return out[params.b_off + i]; }
  return b[params.b_off + i];
}

@compute @workgroup_size(256)
fn add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
       @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = flat_index(wid, groups, lid);
  if (i >= params.count) { return; }
  out[params.out_off + i] = params.scale * (read_a(i) + read_b(i));
}

@compute @workgroup_size(256)
fn multiply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
            @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = flat_index(wid, groups, lid);
  if (i >= params.count) { return; }
  out[params.out_off + i] = read_a(i) * read_b(i);
}

@compute @workgroup_size(256)
fn scale(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
         @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = flat_index(wid, groups, lid);
  if (i >= params.count) { return; }
  out[params.out_off + i] = params.scale * read_a(i);
}

@compute @workgroup_size(256)
fn copy_slice(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = flat_index(wid, groups, lid);
  if (i >= params.count) { return; }
  let r = i / params.width;
  let j = i % params.width;
  out[params.out_off + r * params.out_cols + params.out_start + j] = a[params.a_off + r * params.a_cols + params.a_start + j];
}
