"""Which matmul kernel a product runs, from its shape and the device: the one
table of the choice (shaders/matmul.wgsl has the kernels).

==============================  ========================================================
the product                     strategy
==============================  ========================================================
tiles for at most half the      split-K: ``splits`` workgroups share each tile's k,
device, and k ≥ SPLIT_MIN_K     each writing a partial product, then a deterministic
                                second pass sums them (matmul_reduce); on small tiles
m ≤ SMALL_M or n ≤ SMALL_N,     small tiles (32 × 32): more workgroups and less
or large tiles under a quarter  padding work for small products
of the device
otherwise                       large tiles (64 × 128), 8 × 16 outputs an invocation;
                                on a hardware GPU, big tiles (128 × 128, 256
                                invocations of 8 × 8, double-buffered) when they
                                fill at least half the device
any of the above but big, on a  the same tiles' subgroup kernel (large_subgroup,
device with full subgroups of   small_subgroup in matmul_subgroup.wgsl): op(a) passed
8 to 64 (probed at start-up)    between lanes by shuffles instead of workgroup memory
==============================  ========================================================

The subgroup kernels measured 1.04–1.23 times (large tiles, 2026-12-05 and
-07) and 1.20–1.35 times (small tiles, 2026-12-07) the speed of the plain ones
on lavapipe, with bit-identical results (subgroups of 8; benchmarks/README.md),
so they replace them wherever they can run; on hardware GPUs they are not
yet measured.

On lavapipe the big tiles measured as fast as the large ones on 1024 squares
and 40% slower at the MLP's 128 × 784 × 128 (benchmarks/README.md), so a
software adapter keeps the large ones; on hardware GPUs the big ones are the
shape fast fp32 products use (more invocations a workgroup to hide memory
latency, loads of the next slice beside the current one's sums) — not yet
measured here on one (see benchmarks/README.md).

"Filling the device" is having at least ``device.workgroups`` workgroups in
flight: a few per compute unit on a GPU (an H100 has 132 multiprocessors),
one per host core on a software adapter, where every workgroup is a thread's
work. wgpu does not tell how many compute units an adapter has, so the
figure comes from the adapter's type (:func:`device_shape`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

#: the tiles of each kernel, (rows, columns), and its entry point
TILES = {"large": (64, 128), "small": (32, 32), "big": (128, 128),
         "large_subgroup": (64, 128), "small_subgroup": (32, 32)}
ENTRY_POINTS = {"large": "matmul", "small": "matmul_small", "big": "matmul_big",
                "large_subgroup": "matmul_subgroup", "small_subgroup": "matmul_small_subgroup"}
#: the kernels that pass op(a) by subgroup shuffles, in place of the plain ones
SUBGROUP_VARIANTS = {"large": "large_subgroup", "small": "small_subgroup"}
SMALL_M, SMALL_N = 32, 64
#: split only reductions at least this long, and give each split at least this much of k
SPLIT_MIN_K = 1024
SPLIT_MIN_CHUNK = 256
MAX_SPLITS = 256
#: k is split in multiples of the kernels' k slice
K_SLICE = 16


@dataclass(frozen=True)
class DeviceShape:
    """What the choice needs of a device: how many workgroups fill it."""

    name: str
    workgroups: int
    #: whether large products take the big 128 × 128 tiles (hardware GPUs)
    big_tiles: bool = False
    #: the size of its full subgroups where the subgroup kernels can use them, else 0
    subgroup_size: int = 0


#: what "filling" means, by wgpu adapter type
_BY_TYPE = {"DiscreteGPU": 528, "IntegratedGPU": 96, "VirtualGPU": 96, "Unknown": 96}
#: an NVIDIA H100 (132 multiprocessors, 4 workgroups each), for the tests and benchmarks
H100 = DeviceShape("NVIDIA H100 (132 SMs)", 528, big_tiles=True)


def device_shape(adapter_type: str, name: str = "", subgroup_size: int = 0) -> DeviceShape:
    """The device shape of a wgpu adapter of ``adapter_type`` whose full
    subgroups have ``subgroup_size`` invocations (0: none usable)."""
    if adapter_type == "CPU":  # software: one workgroup a core keeps it busy
        return DeviceShape(name or "software adapter", 2 * (os.cpu_count() or 2), subgroup_size=subgroup_size)
    return DeviceShape(name or adapter_type, _BY_TYPE.get(adapter_type, 96), big_tiles=True,
                       subgroup_size=subgroup_size)


@dataclass(frozen=True)
class MatmulPlan:
    """A product's kernel (a key of TILES), its workgroups' tile, and
    how many splits of k (1: no split, no second pass)."""

    kernel: str
    splits: int
    k_chunk: int

    def __str__(self) -> str:
        tile = "×".join(map(str, TILES[self.kernel]))
        return f"{self.kernel} {tile}" + (f", split-K {self.splits}" if self.splits > 1 else "")


def _tiles(kernel: str, m: int, n: int) -> int:
    tm, tn = TILES[kernel]
    return -(-m // tm) * -(-n // tn)


def plan_matmul(m: int, n: int, k: int, device: DeviceShape) -> MatmulPlan:
    """The strategy for op(a) (m, k) · op(b) (k, n) on ``device``."""
    target = device.workgroups
    kernel = "small" if (m <= SMALL_M or n <= SMALL_N or 4 * _tiles("large", m, n) < target) else "large"
    if kernel == "large" and device.big_tiles and 2 * _tiles("big", m, n) >= target:
        kernel = "big"
    if device.subgroup_size:
        kernel = SUBGROUP_VARIANTS.get(kernel, kernel)
    tiles = _tiles(kernel, m, n)
    splits = 1
    if 2 * tiles <= target and k >= SPLIT_MIN_K:
        splits = min(-(-target // tiles), k // SPLIT_MIN_CHUNK, MAX_SPLITS)
    if splits <= 1:
        return MatmulPlan(kernel, 1, k)
    chunk = -(-k // splits)
    chunk = -(-chunk // K_SLICE) * K_SLICE
    return MatmulPlan(kernel, -(-k // chunk), chunk)


__all__ = ["DeviceShape", "MatmulPlan", "plan_matmul", "device_shape", "H100", "TILES", "ENTRY_POINTS"]
