// grid.wgsl — the index of an invocation in the (x, y) grids of 256-wide
// workgroups that the element-wise kernel files dispatch (WgpuBackend._grid:
// x ≤ 65535 workgroups, y rows of them); those files name this one in an
// "includes:" line.
//
// library
//
// Functions:
//   flat_index(wid, groups, lid)  (wid.y · groups.x + wid.x) · 256 + lid.x

fn flat_index(wid: vec3<u32>, groups: vec3<u32>, lid: vec3<u32>) -> u32 {
  return (wid.y * groups.x + wid.x) * 256u + lid.x;
}
