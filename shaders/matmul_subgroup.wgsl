// matmul_subgroup.wgsl — the large- and small-tile products with op(a) passed between
// the invocations of a subgroup (subgroupShuffle) instead of through workgroup memory.
//
// extends: matmul.wgsl
// requires: subgroup
//
// This file is compiled after matmul.wgsl's source (its Params, bindings and
// helpers: WGSL has no includes), and only on a device with the `subgroup`
// feature. It assumes full subgroups of 8 to 64 invocations; subgroup_probe,
// run once when the device is made, checks that, and the host uses these
// kernels only where it holds.
//
// Entry points:
//   matmul_subgroup  what matmul computes (same 64 × 128 tiles, dispatch, split-K
//                    partials, bias and epilogues), 64 invocations in one dimension
//   matmul_small_subgroup  what matmul_small computes, the same way (32 × 32 tiles)
//   subgroup_probe   one workgroup of 64: out[out_off] = the subgroup size,
//                    out[out_off + 1] = subgroups × size (64 when they are full)
// Bindings: matmul.wgsl's.
//
// An invocation t (= subgroup_id · size + lane) computes rows 8 (t / 8) .. + 7 and
// columns 16 (t % 8) .. + 15 of the tile, as in matmul; the 8 invocations that share
// those rows are 8 neighbouring lanes of one subgroup. For each slice of 16 k, lane
// q of the 8 reads op(a)'s 8 rows at k0 + q and k0 + 8 + q from memory, as four
// vec4s in registers, and at step kk every lane of the 8 takes the rows at k0 + kk
// from lane kk % 8 by a shuffle. Only op(b) goes through workgroup memory, staged as
// matmul stages it: per kk 2 shuffles and 4 workgroup reads for 128 multiply-adds,
// where matmul reads 6.

@compute @workgroup_size(64)
fn matmul_subgroup(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_id) subgroup: u32,
                   @builtin(subgroup_size) size: u32, @builtin(subgroup_invocation_id) lane: u32) {
  set_member(wid.z / params.splits);
  let z = wid.z % params.splits;
  let row0 = wid.y * TILE_M;
  let col0 = wid.x * TILE_N;
  let t = subgroup * size + lane;
  let ty = t / 8u;
  let tx = t % 8u;
  let q = lane % 8u;
  let first = lane - q;  // the lane of the 8 that holds k0 + 0 and k0 + 8
  let i0 = row0 + 8u * ty;
  var acc: Block;  // out[i0 + r][col0 + 16 tx + 4c .. + 3] in acc.c{r}{c}
  for (var k0 = z * params.k_chunk; k0 < k_end(z); k0 = k0 + TK) {
    // this lane's share of op(a): rows i0 .. i0 + 7 at k0 + q and k0 + 8 + q
    let lo0 = a_rows(i0, k0 + q);
    let hi0 = a_rows(i0 + 4u, k0 + q);
    let lo8 = a_rows(i0, k0 + 8u + q);
    let hi8 = a_rows(i0 + 4u, k0 + 8u + q);
    stage_b(t, k0, col0);
    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk = kk + 1u) {
      let src = first + kk % 8u;
      let a_lo = subgroupShuffle(select(lo0, lo8, kk >= 8u), src);
      let a_hi = subgroupShuffle(select(hi0, hi8, kk >= 8u), src);
      mad_block(&acc, a_lo, a_hi, kk, tx);
    }
    workgroupBarrier();
  }
  let j0 = col0 + 16u * tx;
  store_block(&acc, i0, j0, z);
}

// The small tiles (32 × 32, 4 × 4 outputs an invocation) the same way: the 8
// lanes that share rows 4 (t / 8) .. + 3 hold op(a) at k0 + q and k0 + 8 + q, one
// vec4 each; per kk 1 shuffle and 1 workgroup read for 16 multiply-adds, where
// matmul_small makes 2 reads.
@compute @workgroup_size(64)
fn matmul_small_subgroup(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_id) subgroup: u32,
                         @builtin(subgroup_size) size: u32, @builtin(subgroup_invocation_id) lane: u32) {
  set_member(wid.z / params.splits);
  let z = wid.z % params.splits;
  let row0 = wid.y * 32u;
  let col0 = wid.x * 32u;
  let t = subgroup * size + lane;
  let q = lane % 8u;
  let first = lane - q;
  let i0 = row0 + 4u * (t / 8u);
  let j0 = col0 + 4u * (t % 8u);
  // acc{r}: out[i0 + r][j0 .. j0 + 3]
  var acc0 = vec4<f32>(0.0); var acc1 = vec4<f32>(0.0); var acc2 = vec4<f32>(0.0); var acc3 = vec4<f32>(0.0);
  for (var k0 = z * params.k_chunk; k0 < k_end(z); k0 = k0 + TK) {
    let a0 = a_rows(i0, k0 + q);
    let a8 = a_rows(i0, k0 + 8u + q);
    stage_b_small(t, k0, col0);
    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk = kk + 1u) {
      let av = subgroupShuffle(select(a0, a8, kk >= 8u), first + kk % 8u);
      let bv = tile_b[kk * 8u + t % 8u];
      acc0 = acc0 + av.x * bv; acc1 = acc1 + av.y * bv; acc2 = acc2 + av.z * bv; acc3 = acc3 + av.w * bv;
    }
    workgroupBarrier();
  }
  store4(i0, j0, z, acc0); store4(i0 + 1u, j0, z, acc1); store4(i0 + 2u, j0, z, acc2); store4(i0 + 3u, j0, z, acc3);
  apply_epilogue(i0, 4u, j0, 4u);
}

@compute @workgroup_size(64)
fn subgroup_probe(@builtin(local_invocation_index) t: u32, @builtin(subgroup_size) size: u32,
                  @builtin(num_subgroups) subgroups: u32) {
  if (t == 0u) {
    out[params.out_off] = f32(size);
    out[params.out_off + 1u] = f32(subgroups * size);
  }
}
