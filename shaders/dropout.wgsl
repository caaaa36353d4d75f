// dropout.wgsl — inverted dropout with counter-based random bits, identical
// to the numpy backend's, so both backends drop the same elements.
//
// includes: grid.wgsl
//
// Entry points:
//   dropout_forward   mask[i] = scale if pcg(i ^ key) >= threshold else 0;
//                     out[i] = a[i] · mask[i]   (key: the host's pcg(seed ^ pcg(step)),
//                     threshold: rate · 2³², scale: 1 / (1 - rate))
//   dropout_backward  out[i] = a[i] · mask[i]   (a: dE/dy)
//   pcg(v): s = v·747796405 + 2891336453; w = ((s >> ((s >> 28) + 4)) ^ s)·277803737;
//           (w >> 22) ^ w, all in wrapping u32 ("Hash Functions for GPU Rendering")
// Bindings (group 0):
//   0 params  uniform Params, one slot per dispatch (dynamic offset)
//   1 a       storage, read        x or dy, from a_off
//   2 mask    storage, read_write  from mask_off
//   3 out     storage, read_write  from out_off
// Dispatch: one invocation per element, 256 a workgroup, (x, y) layout.

struct Params {
  count: u32, key: u32, threshold: u32, a_off: u32,
  mask_off: u32, out_off: u32, _pad0: u32, scale: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> mask: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn pcg(v: u32) -> u32 {
  let s = v * 747796405u + 2891336453u;
  let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
  return (w >> 22u) ^ w;
}

@compute @workgroup_size(256)
fn dropout_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                   @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = flat_index(wid, groups, lid);
  if (i >= params.count) { return; }
  let m = select(0.0, params.scale, pcg(i ^ params.key) >= params.threshold);
  mask[params.mask_off + i] = m;
  out[params.out_off + i] = a[params.a_off + i] * m;
}

@compute @workgroup_size(256)
fn dropout_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                    @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = flat_index(wid, groups, lid);
  if (i >= params.count) { return; }
  out[params.out_off + i] = a[params.a_off + i] * mask[params.mask_off + i];
}
