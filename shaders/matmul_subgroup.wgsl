// matmul_subgroup.wgsl — the large-tile product with op(a) passed between the
// invocations of a subgroup (subgroupShuffle) instead of through workgroup memory.
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
  let z = wid.z;
  let row0 = wid.y * TILE_M;
  let col0 = wid.x * TILE_N;
  let t = subgroup * size + lane;
  let ty = t / 8u;
  let tx = t % 8u;
  let q = lane % 8u;
  let first = lane - q;  // the lane of the 8 that holds k0 + 0 and k0 + 8
  let i0 = row0 + 8u * ty;
  // acc{r}{c}: out[i0 + r][col0 + 16 tx + 4c .. + 3]
  var acc00 = vec4<f32>(0.0); var acc01 = vec4<f32>(0.0); var acc02 = vec4<f32>(0.0); var acc03 = vec4<f32>(0.0);
  var acc10 = vec4<f32>(0.0); var acc11 = vec4<f32>(0.0); var acc12 = vec4<f32>(0.0); var acc13 = vec4<f32>(0.0);
  var acc20 = vec4<f32>(0.0); var acc21 = vec4<f32>(0.0); var acc22 = vec4<f32>(0.0); var acc23 = vec4<f32>(0.0);
  var acc30 = vec4<f32>(0.0); var acc31 = vec4<f32>(0.0); var acc32 = vec4<f32>(0.0); var acc33 = vec4<f32>(0.0);
  var acc40 = vec4<f32>(0.0); var acc41 = vec4<f32>(0.0); var acc42 = vec4<f32>(0.0); var acc43 = vec4<f32>(0.0);
  var acc50 = vec4<f32>(0.0); var acc51 = vec4<f32>(0.0); var acc52 = vec4<f32>(0.0); var acc53 = vec4<f32>(0.0);
  var acc60 = vec4<f32>(0.0); var acc61 = vec4<f32>(0.0); var acc62 = vec4<f32>(0.0); var acc63 = vec4<f32>(0.0);
  var acc70 = vec4<f32>(0.0); var acc71 = vec4<f32>(0.0); var acc72 = vec4<f32>(0.0); var acc73 = vec4<f32>(0.0);
  for (var k0 = z * params.k_chunk; k0 < k_end(z); k0 = k0 + TK) {
    // this lane's share of op(a): rows i0 .. i0 + 7 at k0 + q and k0 + 8 + q
    let lo0 = a_rows(i0, k0 + q);
    let hi0 = a_rows(i0 + 4u, k0 + q);
    let lo8 = a_rows(i0, k0 + 8u + q);
    let hi8 = a_rows(i0 + 4u, k0 + 8u + q);
    for (var s = 0u; s < 8u; s = s + 1u) {
      let slot = t + 64u * s;
      var r = slot % 32u;
      var pk = slot / 32u;
      if (params.transpose_b == 1u) { pk = slot % TK; r = slot / TK; }
      tile_b[pk * 32u + r] = b_cols(k0 + pk, col0 + 4u * r);
    }
    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk = kk + 1u) {
      let src = first + kk % 8u;
      let a_lo = subgroupShuffle(select(lo0, lo8, kk >= 8u), src);
      let a_hi = subgroupShuffle(select(hi0, hi8, kk >= 8u), src);
      let b0 = tile_b[kk * 32u + 4u * tx + 0u];
      let b1 = tile_b[kk * 32u + 4u * tx + 1u];
      let b2 = tile_b[kk * 32u + 4u * tx + 2u];
      let b3 = tile_b[kk * 32u + 4u * tx + 3u];
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
  let j0 = col0 + 16u * tx;
  store4(i0, j0, z, acc00); store4(i0, j0 + 4u, z, acc01); store4(i0, j0 + 8u, z, acc02); store4(i0, j0 + 12u, z, acc03);
  store4(i0 + 1u, j0, z, acc10); store4(i0 + 1u, j0 + 4u, z, acc11); store4(i0 + 1u, j0 + 8u, z, acc12); store4(i0 + 1u, j0 + 12u, z, acc13);
  store4(i0 + 2u, j0, z, acc20); store4(i0 + 2u, j0 + 4u, z, acc21); store4(i0 + 2u, j0 + 8u, z, acc22); store4(i0 + 2u, j0 + 12u, z, acc23);
  store4(i0 + 3u, j0, z, acc30); store4(i0 + 3u, j0 + 4u, z, acc31); store4(i0 + 3u, j0 + 8u, z, acc32); store4(i0 + 3u, j0 + 12u, z, acc33);
  store4(i0 + 4u, j0, z, acc40); store4(i0 + 4u, j0 + 4u, z, acc41); store4(i0 + 4u, j0 + 8u, z, acc42); store4(i0 + 4u, j0 + 12u, z, acc43);
  store4(i0 + 5u, j0, z, acc50); store4(i0 + 5u, j0 + 4u, z, acc51); store4(i0 + 5u, j0 + 8u, z, acc52); store4(i0 + 5u, j0 + 12u, z, acc53);
  store4(i0 + 6u, j0, z, acc60); store4(i0 + 6u, j0 + 4u, z, acc61); store4(i0 + 6u, j0 + 8u, z, acc62); store4(i0 + 6u, j0 + 12u, z, acc63);
  store4(i0 + 7u, j0, z, acc70); store4(i0 + 7u, j0 + 4u, z, acc71); store4(i0 + 7u, j0 + 8u, z, acc72); store4(i0 + 7u, j0 + 12u, z, acc73);
  apply_epilogue(i0, 8u, j0, 16u);
}

@compute @workgroup_size(64)
fn subgroup_probe(@builtin(local_invocation_index) t: u32, @builtin(subgroup_size) size: u32,
                  @builtin(num_subgroups) subgroups: u32) {
  if (t == 0u) {
    out[params.out_off] = f32(size);
    out[params.out_off + 1u] = f32(subgroups * size);
  }
}
