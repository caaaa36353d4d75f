"""The GPU backend: every operation of :mod:`intricate_py.backends.base` as a
WGSL compute kernel dispatched through wgpu-py.

How work reaches the device:

* Arrays are views (element offset + shape) into pooled storage buffers. A
  buffer whose last array is gone returns to the pool; a later array of the
  same size takes it back, so repeated fits and predictions create none.
* Every dispatch packs its parameters into a slot of one uniform "arena"
  buffer and binds it at a dynamic offset; bind groups bind whole buffers
  and are cached per (kernel file, buffers).
* Dispatches are recorded into one open command encoder. ``end_step`` submits
  once enough work has gathered (several training steps a submission);
  reading a result (``to_numpy``), or writing host data into a buffer that
  recorded work may still use, submits first. Readbacks go through one
  reused staging buffer.
* A training step (or a prediction) can be recorded once and replayed:
  ``record`` keeps each dispatch's pipeline, bind group and parameter
  bytes, ``replay`` issues them again with the parameters that change from
  step to step written in. ``profile`` times dispatches with timestamp
  queries (wgpu_recording.py).
* Products pick their kernel from matmul_plan.py's table.

Threads: one backend serves every model on its adapter, so each operation
holds the backend's lock (``lock``, re-entrant), a recording holds it from
start to end (no other thread's dispatches land in it), and so do a replay
and a product's split-K pair. Buffers freed by the garbage collector, on
whatever thread, are queued and pooled by the next allocation. Work of
several threads shares the open encoder: it runs in the order it was
recorded, each thread's operations in its own order.

Asynchronous exceptions (a signal handler's KeyboardInterrupt): the
submission and the readback hold Python's signal handlers until they end
(``uninterrupted``), and the rest of the state is written in an order that
an exception between any two statements leaves consistent.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import itertools
import math
import struct
import threading
import weakref
from typing import Sequence

import numpy as np
import wgpu

from .._threads import holding
from ..device_choice import Adapter
from .base import (ACCURACIES, ACTIVATIONS, LOSSES, METRIC_BINS, METRIC_COUNTS, METRIC_TRANSFORMS, Backend,
                   BindingTooLarge, StepFloat, StepInt, dropout_threshold, sides, window_positions)
from .matmul_plan import ENTRY_POINTS, TILES, MatmulPlan, device_shape, plan_matmul
from .shaders import Kernels
from .wgpu_recording import Dispatch, Profile, Recording, uninterrupted

_USAGE = wgpu.BufferUsage.STORAGE | wgpu.BufferUsage.COPY_SRC | wgpu.BufferUsage.COPY_DST
_ROUND = 256  # buffer sizes are rounded up to this many bytes, for reuse
_MAX_GROUPS = 65535  # workgroups per dispatch dimension

ACTIVATION_KIND = {kind: i for i, kind in enumerate(ACTIVATIONS)}  # the shaders' ACTIVATION_* constants
LOSS_KIND = {kind: i for i, kind in enumerate(LOSSES)}  # the order losses.wgsl numbers them
ACCURACY_KIND = {kind: i for i, kind in enumerate(ACCURACIES)}
#: the adapter's limits a device asks for (the defaults cap bindings at 128 MiB, buffers at 256 MiB)
REQUESTED_LIMITS = ("max-storage-buffer-binding-size", "max-buffer-size")

#: a method run holding the backend's lock: one thread's operation at a time
_serialised = holding("lock")


class _Allocation:
    """One storage buffer lent from the pool; returned when no array uses it."""

    __slots__ = ("buffer", "nbytes", "serial", "__weakref__")

    def __init__(self, buffer, nbytes: int, serial: int):
        self.buffer, self.nbytes, self.serial = buffer, nbytes, serial


class GPUArray:
    """``shape`` elements of ``dtype`` (float32 or int32) from element
    ``offset`` of a storage buffer."""

    __slots__ = ("alloc", "offset", "shape", "size", "dtype")

    def __init__(self, alloc: _Allocation, offset: int, shape: tuple[int, ...], dtype):
        self.alloc, self.offset, self.shape = alloc, offset, shape
        self.size = math.prod(shape)
        self.dtype = dtype

    def __repr__(self) -> str:
        return f"GPUArray(shape={self.shape}, dtype={np.dtype(self.dtype).name})"


class GPUDataset:
    """Rows too many for one storage binding, split over several buffers:
    ``chunks`` of (array, first row, end row). Only ``take_rows`` reads it."""

    def __init__(self, chunks: list[tuple[GPUArray, int, int]], shape: tuple[int, ...]):
        self.chunks, self.shape = chunks, shape


class WgpuBackend(Backend):
    """float32 arrays and kernels on one wgpu adapter; one instance per adapter."""

    kind = "gpu"
    records = True
    #: a submission goes out at the end of a step once this many dispatches wait
    DISPATCHES_PER_SUBMIT = 256
    #: slots in the uniform arena (a fuller arena submits)
    ARENA_SLOTS = 4096
    #: pooled bytes kept for reuse beyond which freed buffers are destroyed
    POOL_BYTES = 1 << 30
    #: compilations of users' kernels kept once no live Kernel uses them
    UNUSED_KERNELS_KEPT = 8

    _instances: dict[int, "WgpuBackend"] = {}
    _opening = threading.Lock()  # two threads making the first GPU models open one device

    @classmethod
    def for_adapter(cls, adapter: Adapter) -> "WgpuBackend":
        key = id(adapter.handle)
        with cls._opening:
            if key not in cls._instances:
                cls._instances[key] = cls(adapter)
            return cls._instances[key]

    def __init__(self, adapter: Adapter):
        self.adapter = adapter
        self.dtype = np.dtype(np.float32)
        #: held by each operation, by a recording from start to end, and by a replay
        self.lock = threading.RLock()
        self._members: tuple[int, dict[str, int]] | None = None  # run_members's, while it runs
        # the adapter's own largest bindings and buffers (not the defaults);
        # timestamps where offered, for profiling; subgroups where offered,
        # for matmul_subgroup.wgsl
        features = [f for f in ("timestamp-query", "subgroup") if f in adapter.handle.features]
        wanted = {name: adapter.handle.limits[name] for name in REQUESTED_LIMITS}
        self.device = adapter.handle.request_device_sync(required_features=features, required_limits=wanted)
        self.queue = self.device.queue
        limits = self.device.limits
        #: the most bytes one array may take: a storage binding, and a buffer
        self.max_binding_bytes = min(int(limits["max-storage-buffer-binding-size"]), int(limits["max-buffer-size"]))
        self.kernels = Kernels(self.device)
        align = int(limits["min-uniform-buffer-offset-alignment"])
        biggest = max(k.packer.size for k in self.kernels.files.values())
        self._slot = -(-biggest // align) * align
        self._arena = bytearray(self._slot * self.ARENA_SLOTS)
        self._arena_buffer = self.device.create_buffer(
            size=len(self._arena), usage=wgpu.BufferUsage.UNIFORM | wgpu.BufferUsage.COPY_DST
        )
        self._arena_used = 0
        self._recording: Recording | None = None
        self._profile: Profile | None = None
        self._encoder = None
        self._pass = None
        self._pass_pipeline = None
        self._pending = 0
        self._serials = itertools.count()
        self._pool: dict[int, list[tuple[object, int]]] = {}
        self._pool_bytes = 0
        self._released: collections.deque = collections.deque()  # (buffer, size, serial) freed, not yet pooled
        self._bind_groups: dict[tuple, object] = {}
        self._bind_groups_of: dict[int, list[tuple]] = {}  # serial -> cache keys using it
        self._staging = None
        self._counters = dict.fromkeys(
            ("submits", "readbacks", "bytes_read_back", "buffers_created", "dispatches",
             "uploads", "bytes_uploaded"), 0
        )
        # distinct stand-ins for bindings an entry point leaves unused
        self._dummies = [self._create(16) for _ in range(8)]
        self._scratches: dict[int, GPUArray] = {}
        #: the users' kernels compiled here (custom.Kernel -> its name in self.kernels)
        self._custom_kernels: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        #: how many live Kernels use each such name, and the names whose Kernels
        #: died since (appended by their finalizers, counted down by run_kernel)
        self._custom_users: dict[str, int] = {}
        self._custom_dead: collections.deque = collections.deque()
        #: compilations no live Kernel uses, kept for one of the same name and
        #: source made again (a layer that makes its Kernel in each call), oldest first
        self._custom_unused: collections.OrderedDict[str, None] = collections.OrderedDict()
        #: how many workgroups fill this device, and its subgroups, for the choice of matmul kernels
        self.shape = device_shape(adapter.adapter_type, adapter.name, self._probe_subgroups())
        self.last_matmul_plan: MatmulPlan | None = None

    def _probe_subgroups(self) -> int:
        """The subgroup size of a 64-invocation workgroup where the subgroups
        are full and 8 to 64 wide (what matmul_subgroup assumes); 0 where
        they are not, or the device has none. One readback, at start-up."""
        if "subgroup_probe" not in self.kernels.entry_file:
            return 0
        found = self.empty((2,))
        self._dispatch("subgroup_probe", (1, 1), (None, None, None, None, None, found, None), out_off=found.offset)
        size, covered = (int(v) for v in self.to_numpy(found))
        return size if covered == 64 and 8 <= size <= 64 else 0

    def __repr__(self) -> str:
        return f"WgpuBackend({self.adapter})"

    @property
    def name(self) -> str:
        return f"gpu: {self.adapter}"

    # ------------------------------------------------------------ buffers
    def _create(self, nbytes: int):
        self._counters["buffers_created"] += 1
        return self.device.create_buffer(size=nbytes, usage=_USAGE)

    @_serialised
    def _allocate(self, nbytes: int) -> _Allocation:
        if nbytes > self.max_binding_bytes:
            raise BindingTooLarge(nbytes, self.max_binding_bytes)
        self._pool_released()
        size = max(_ROUND, -(-nbytes // _ROUND) * _ROUND)
        free = self._pool.get(size)
        if free:
            buffer, serial = free.pop()
            self._pool_bytes -= size
        else:
            buffer, serial = self._create(size), next(self._serials)
        alloc = _Allocation(buffer, size, serial)
        weakref.finalize(alloc, self._released.append, (buffer, size, serial))
        return alloc

    def _pool_released(self) -> None:
        """Pool the buffers freed since the last allocation (the garbage
        collector frees them on any thread, at any moment: it only queues
        them), destroying those beyond ``POOL_BYTES``."""
        while self._released:
            buffer, size, serial = self._released.popleft()
            if self._pool_bytes + size > self.POOL_BYTES:
                for key in self._bind_groups_of.pop(serial, ()):
                    self._bind_groups.pop(key, None)
                buffer.destroy()
                continue
            self._pool.setdefault(size, []).append((buffer, serial))
            self._pool_bytes += size

    def _new(self, shape: Sequence[int], dtype=np.float32) -> GPUArray:
        shape = tuple(int(s) for s in shape)
        return GPUArray(self._allocate(4 * math.prod(shape)), 0, shape, np.dtype(dtype))

    # ------------------------------------------------------------ recording
    # An encoder or a pass begun and not known to the backend, or a pass
    # known and not ended, makes the next submission invalid (wgpu then
    # aborts the process): they begin and end uninterrupted.
    def _open_pass(self, timestamps: dict | None = None):
        if self._pass is None:
            with uninterrupted():
                self._open_encoder()
                self._pass_pipeline = None  # a new pass has no pipeline set
                self._pass = self._encoder.begin_compute_pass(timestamp_writes=timestamps)
        return self._pass

    def _open_encoder(self):
        if self._encoder is None:
            with uninterrupted():
                self._encoder = self.device.create_command_encoder()
        return self._encoder

    def _end_pass(self) -> None:
        if self._pass is not None:
            with uninterrupted():
                compute, self._pass = self._pass, None  # forgotten first: an ended pass is never used again
                compute.end()

    def _close_pass(self):
        """End the compute pass for a copy or clear; returns the open encoder."""
        self._not_replayable()
        self._end_pass()
        return self._open_encoder()

    def _bind_group(self, entry: str, arrays: Sequence[GPUArray | None]):
        """The bind group of ``arrays`` in the order of the kernel file's
        storage bindings; None, or none given at the end, for those the
        entry point leaves unused."""
        kernel = self.kernels.entry_file[entry]
        arrays = list(arrays) + [None] * (len(kernel.bindings) - 1 - len(arrays))
        buffers = [a.alloc if a is not None else None for a in arrays]
        key = (kernel.name, *(b.serial if b is not None else -1 - i for i, b in enumerate(buffers)))
        group = self._bind_groups.get(key)
        if group is None:
            entries = [{"binding": 0, "resource": {"buffer": self._arena_buffer, "offset": 0,
                                                   "size": kernel.packer.size}}]
            for (index, _, _), b, i in zip(kernel.bindings[1:], buffers, itertools.count()):
                buffer = b.buffer if b is not None else self._dummies[i]
                entries.append({"binding": index, "resource": {"buffer": buffer}})
            group = self._bind_groups[key] = self.device.create_bind_group(
                layout=self.kernels.layout(entry), entries=entries
            )
            for b in buffers:
                if b is not None:
                    self._bind_groups_of.setdefault(b.serial, []).append(key)
        return group

    @_serialised
    def _dispatch(self, entry: str, groups: tuple[int, int], arrays: Sequence[GPUArray | None], **params) -> None:
        if self._members is not None:  # run_members: a member per z group, each array its stride on
            count, strides = self._members
            groups, params = (*groups[:2], count), {**params, **strides}
        kernel = self.kernels.entry_file[entry]
        if self._arena_used + self._slot > len(self._arena):
            self.flush()
        offset = self._arena_used
        values = [params.get(f, 0) for f in kernel.fields]
        kernel.packer.pack_into(self._arena, offset, *values)
        group = self._bind_group(entry, arrays)
        pipeline = self.kernels.pipeline(entry)
        if self._recording is not None:
            patches = tuple((4 * i, "<" + kernel.packer.format[1 + i], v.name)
                            for i, v in enumerate(values) if isinstance(v, (StepFloat, StepInt)))
            params_bytes = bytes(self._arena[offset : offset + kernel.packer.size])
            self._recording.dispatches.append(Dispatch(pipeline, group, params_bytes, tuple(groups), patches))
        self._record_dispatch(pipeline, group, groups)

    def _record_dispatch(self, pipeline, group, groups) -> None:
        """Dispatch with the parameters just written at the arena's next slot."""
        offset = self._arena_used
        self._arena_used += self._slot
        if self._profile is not None and self._profile.room():
            self._end_pass()  # a pass of its own, timed at both ends
            self._open_pass(self._profile.next(pipeline.label))
        compute = self._open_pass()
        if pipeline is not self._pass_pipeline:
            self._pass_pipeline = None  # unknown until set_pipeline has returned
            compute.set_pipeline(pipeline)
            self._pass_pipeline = pipeline
        compute.set_bind_group(0, group, [offset])
        compute.dispatch_workgroups(groups[0], groups[1], groups[2] if len(groups) > 2 else 1)
        self._pending += 1
        self._counters["dispatches"] += 1
        if self._profile is not None:
            self._end_pass()

    @contextlib.contextmanager
    def profile(self, capacity: int = 2048):
        """A context in which each dispatch (up to ``capacity``) is timed on
        the device with timestamp queries; yields a :class:`Profile` whose
        ``times()`` gives the seconds of each entry point (those of every
        thread's dispatches meanwhile). RuntimeError on an adapter without
        timestamp queries."""
        if "timestamp-query" not in self.device.features:
            raise RuntimeError(f"{self.adapter} offers no timestamp queries: no per-kernel times")
        self.flush()
        self._profile = profile = Profile(self, capacity)
        try:
            yield profile
        finally:
            self._end_pass()
            self._profile = None

    @contextlib.contextmanager
    def record(self):
        """The base class's ``record``, holding the backend's lock until the
        block ends: no other thread's work lands in the recording."""
        with self.lock:
            if self._recording is not None:
                raise RuntimeError("already recording")
            self._recording = recording = Recording()
            try:
                yield recording
            finally:
                self._recording = None

    def _not_replayable(self) -> None:
        """Work other than dispatches was done: the recording is incomplete."""
        if self._recording is not None:
            self._recording.complete = False

    @_serialised
    def replay(self, recording: Recording, values: dict) -> None:
        if not recording.complete:
            raise ValueError("this recording did more than dispatch work, so it cannot be replayed")
        arena = self._arena
        for d in recording.dispatches:
            if self._arena_used + self._slot > len(arena):
                self.flush()
            offset = self._arena_used
            arena[offset : offset + len(d.params)] = d.params
            for at, fmt, name in d.patches:
                struct.pack_into(fmt, arena, offset + at, values[name])
            self._record_dispatch(d.pipeline, d.group, d.groups)

    @staticmethod
    def _grid(count: int, per_group: int = 256) -> tuple[int, int]:
        """Workgroups for ``count`` invocations, as (x, y) with x ≤ 65535."""
        groups = max(1, -(-count // per_group))
        x = min(groups, _MAX_GROUPS)
        return x, -(-groups // x)

    def _channel_groups(self, c: int) -> tuple[int, int]:
        """One workgroup per channel, (x, y) layout."""
        return self._grid(c, per_group=1)

    @staticmethod
    def _column_groups(cols: int) -> tuple[int, int]:
        """One workgroup per 16 columns (reductions.wgsl's and
        normalization.wgsl's 16 × 16 column sums)."""
        return max(1, -(-cols // 16)), 1

    @_serialised
    def flush(self) -> None:
        if self._encoder is None:
            return
        with uninterrupted():
            # forget the encoder, its pass and the arena's slots before
            # anything that may fail: whatever fails in the submission, the
            # next operation starts afresh (nothing is left to discard, so
            # work other threads record after this is never dropped)
            encoder, compute, used = self._encoder, self._pass, self._arena_used
            self._encoder = self._pass = None
            self._arena_used = self._pending = 0
            if compute is not None:
                compute.end()
            if used:
                self.queue.write_buffer(self._arena_buffer, 0, self._arena, 0, used)
            self.queue.submit([encoder.finish()])
            self._counters["submits"] += 1

    @_serialised
    def discard(self) -> None:
        self._pass = self._encoder = None
        self._arena_used = self._pending = 0

    @_serialised
    def end_step(self) -> None:
        if self._pending >= self.DISPATCHES_PER_SUBMIT:
            self.flush()

    def synchronize(self) -> None:
        """Wait until every recorded dispatch has run (a 4-byte readback)."""
        self.to_numpy(GPUArray(_Allocation(self._dummies[0], 16, -1), 0, (1,), np.float32))

    def stats(self) -> dict[str, int]:
        return dict(self._counters)

    # ------------------------------------------------------------------ memory
    def empty(self, shape: Sequence[int], dtype=None) -> GPUArray:
        return self._new(shape, dtype or np.float32)

    @_serialised
    def zeros(self, shape: Sequence[int]) -> GPUArray:
        a = self._new(shape)
        if a.size:
            self._close_pass().clear_buffer(a.alloc.buffer, 0, a.alloc.nbytes)
        return a

    @_serialised
    def _upload(self, dst: GPUArray, host: np.ndarray) -> None:
        self._not_replayable()
        # queue.write_buffer lands before every recorded dispatch: submit those first
        if self._encoder is not None:
            self.flush()
        if host.nbytes:
            self.queue.write_buffer(dst.alloc.buffer, 4 * dst.offset, host)
        self._counters["uploads"] += 1
        self._counters["bytes_uploaded"] += host.nbytes

    def from_numpy(self, a: np.ndarray) -> GPUArray:
        a = np.asarray(a)
        dtype = np.int32 if np.issubdtype(a.dtype, np.integer) else np.float32
        host = np.ascontiguousarray(a, dtype=dtype)
        out = self._new(host.shape, dtype)
        self._upload(out, host)
        return out

    def asarray(self, a: np.ndarray) -> GPUArray:
        return self.from_numpy(np.asarray(a, dtype=np.float32))

    def dataset(self, a: np.ndarray) -> GPUArray | GPUDataset:
        host = np.ascontiguousarray(a, dtype=np.float32)
        row_bytes = max(4, host[:1].nbytes)
        per_chunk = self.max_binding_bytes // row_bytes
        if per_chunk == 0:
            raise ValueError(
                f"one sample of {row_bytes:,} bytes is larger than the device's largest "
                f"storage binding ({self.max_binding_bytes:,} bytes)"
            )
        if len(host) <= per_chunk:
            return self.from_numpy(host)
        chunks = [
            (self.from_numpy(host[s : s + per_chunk]), s, min(s + per_chunk, len(host)))
            for s in range(0, len(host), per_chunk)
        ]
        return GPUDataset(chunks, host.shape)

    @_serialised
    def to_numpy(self, a: GPUArray) -> np.ndarray:
        nbytes = 4 * a.size
        if nbytes == 0:
            return np.empty(a.shape, a.dtype)
        with uninterrupted():  # never leave the staging buffer mapped
            # taken from the backend while in use: a readback cut short by
            # an error leaves no mapped buffer for the next one to copy into
            staging, self._staging = self._staging, None
            if staging is None or staging.size < nbytes:
                staging = self._new_staging(nbytes)
            self._close_pass().copy_buffer_to_buffer(a.alloc.buffer, 4 * a.offset, staging, 0, nbytes)
            self.flush()
            staging.map_sync(wgpu.MapMode.READ, 0, nbytes)
            data = staging.read_mapped(0, nbytes)
            staging.unmap()
            self._staging = staging
        self._counters["readbacks"] += 1
        self._counters["bytes_read_back"] += nbytes
        return np.frombuffer(data, dtype=a.dtype).reshape(a.shape)

    def _new_staging(self, nbytes: int):
        """A mappable buffer for readbacks of at least ``nbytes``."""
        self._counters["buffers_created"] += 1
        size = 1 << max(12, (nbytes - 1).bit_length())
        return self.device.create_buffer(size=size, usage=wgpu.BufferUsage.MAP_READ | wgpu.BufferUsage.COPY_DST)

    def write(self, dst: GPUArray, a: np.ndarray) -> None:
        host = np.ascontiguousarray(a, dtype=dst.dtype)
        if host.size != dst.size:
            raise ValueError(f"write needs data of shape {dst.shape}. Received: {host.shape}")
        self._upload(dst, host)

    @_serialised
    def clear(self, a: GPUArray) -> None:
        if a.size:
            self._close_pass().clear_buffer(a.alloc.buffer, 4 * a.offset, 4 * a.size)

    @_serialised
    def copy(self, src: GPUArray, dst: GPUArray) -> None:
        if src.size != dst.size:
            raise ValueError(f"copy needs equal sizes. Received: {src.shape} and {dst.shape}")
        if src.alloc is dst.alloc:
            raise ValueError("copy within one buffer is not supported")
        if src.size:
            self._close_pass().copy_buffer_to_buffer(
                src.alloc.buffer, 4 * src.offset, dst.alloc.buffer, 4 * dst.offset, 4 * src.size
            )

    def rows(self, a: GPUArray, start: int, stop: int) -> GPUArray:
        row = math.prod(a.shape[1:])
        return GPUArray(a.alloc, a.offset + start * row, (stop - start, *a.shape[1:]), a.dtype)

    def view(self, a: GPUArray, offset: int, shape: Sequence[int]) -> GPUArray:
        return GPUArray(a.alloc, a.offset + offset, tuple(shape), a.dtype)

    def take_rows(self, src, indices, out, first=0, src2=None, out2=None) -> None:
        if src2 is not None and not isinstance(src, GPUDataset) and not isinstance(src2, GPUDataset):
            rows = out.shape[0]
            len1, len2 = math.prod(out.shape[1:]), math.prod(out2.shape[1:])
            self._dispatch(
                "take_rows", self._grid(rows * (len1 + len2)), (src, indices, out, src2, out2),
                count=rows * len1, row_len=len1, src_off=src.offset, idx_off=indices.offset, first=first,
                out_off=out.offset, row_lo=0, row_hi=src.shape[0],
                count2=rows * len2, row_len2=len2, src2_off=src2.offset, out2_off=out2.offset,
            )
            return
        for source, target in ((src, out), (src2, out2)) if src2 is not None else ((src, out),):
            chunks = source.chunks if isinstance(source, GPUDataset) else [(source, 0, source.shape[0])]
            row_len = math.prod(target.shape[1:])
            for chunk, lo, hi in chunks:
                self._dispatch(
                    "take_rows", self._grid(target.size), (chunk, indices, target, None, None),
                    count=target.size, row_len=row_len, src_off=chunk.offset, idx_off=indices.offset,
                    first=first, out_off=target.offset, row_lo=lo, row_hi=hi,
                )

    # ----------------------------------------------------------- dense algebra
    @_serialised  # a split-K product's two dispatches share a scratch array
    def matmul(self, a, b, out, transpose_a=False, transpose_b=False, bias=None, activation=None,
               grad_of=None, bias_grad=None, activation_param=0.0) -> None:
        self.matmul_members(1, {}, a, b, out, transpose_a, transpose_b, bias, activation, grad_of, bias_grad,
                            activation_param)

    @_serialised  # as matmul's: a split-K product's two dispatches share a scratch array
    def matmul_members(self, members: int, strides: dict[str, int], a, b, out, transpose_a=False,
                       transpose_b=False, bias=None, activation=None, grad_of=None, bias_grad=None,
                       activation_param=0.0) -> None:
        """:meth:`matmul` for the ``members`` products of a population in one
        dispatch: member p's operands lie ``p · strides[name]`` elements
        after those given (names "a", "b", "out", "bias", "aux" (grad_of's
        y), "bias_grad"; a name left out: an operand the members share),
        each product computed as :meth:`matmul` computes it alone."""
        m, k = a.shape[::-1] if transpose_a else a.shape
        k2, n = b.shape[::-1] if transpose_b else b.shape
        if k != k2 or out.shape != (m, n) or (bias is not None and bias.size != n):
            raise ValueError(
                f"matmul shapes do not fit: op(a) {(m, k)}, op(b) {(k2, n)}, out {out.shape}"
                + (f", bias {bias.shape}" if bias is not None else "")
            )
        if bias_grad is not None and bias_grad.alloc is not out.alloc:
            # the kernels write bias_grad into out's buffer (where a model packs it)
            if members > 1:
                raise ValueError("a population's bias_grad must lie in out's buffer")
            if transpose_b:
                raise ValueError("bias_grad outside out's buffer needs b untransposed")
            self.matmul(a, b, out, transpose_a, transpose_b, bias, activation, grad_of,
                        activation_param=activation_param)
            self.sum_rows(b, bias_grad)
            return
        plan = self.matmul_plan(m, n, k)
        self.last_matmul_plan = plan
        grad_kind, y = grad_of if grad_of is not None else (None, None)
        if plan.splits * members > _MAX_GROUPS:  # too many z groups for one dispatch: members in parts
            part = _MAX_GROUPS // plan.splits
            for first in range(0, members, part):
                def moved(x, name):
                    return None if x is None else self.view(x, first * strides.get(name, 0), x.shape)
                self.matmul_members(min(part, members - first), strides, moved(a, "a"), moved(b, "b"),
                                    moved(out, "out"), transpose_a, transpose_b, moved(bias, "bias"), activation,
                                    None if grad_of is None else (grad_kind, moved(y, "aux")),
                                    moved(bias_grad, "bias_grad"), activation_param)
            return
        rows = m + (bias_grad is not None)  # the row of ones that gives bias_grad
        tile_m, tile_n = TILES[plan.kernel]
        groups = (max(1, -(-n // tile_n)), max(1, -(-rows // tile_m)), plan.splits * members)
        a_stride, b_stride = strides.get("a", 0), strides.get("b", 0)
        params = dict(
            m=m, n=n, k=k, transpose_a=int(transpose_a), transpose_b=int(transpose_b),
            a_off=a.offset, b_off=b.offset, out_off=out.offset,
            a_vec4=int(transpose_a and a.offset % 4 == 0 and m % 4 == 0 and a_stride % 4 == 0),
            b_vec4=int(not transpose_b and b.offset % 4 == 0 and n % 4 == 0 and b_stride % 4 == 0),
            has_bias_grad=int(bias_grad is not None),
            bias_grad_off=bias_grad.offset if bias_grad is not None else 0, k_chunk=plan.k_chunk, splits=1,
            a_stride=a_stride, b_stride=b_stride, out_stride=strides.get("out", 0),
            bias_grad_stride=strides.get("bias_grad", 0),
        )
        epilogue = dict(
            has_bias=int(bias is not None), bias_off=bias.offset if bias is not None else 0,
            activation=0 if activation is None else 1 + ACTIVATION_KIND[activation],
            grad_kind=0 if grad_kind is None else 1 + ACTIVATION_KIND[grad_kind],
            aux_off=y.offset if y is not None else 0, param=activation_param,
            bias_stride=strides.get("bias", 0), aux_stride=strides.get("aux", 0),
        )
        entry = ENTRY_POINTS[plan.kernel]
        if plan.splits == 1:
            self._dispatch(entry, groups, (a, a, b, b, bias, out, y), **params, **epilogue)
            return
        # split-K: raw partial products into scratch (each member's after the last's), then one
        # pass sums them in order
        stride = rows * n
        partials = self._scratch(plan.splits * stride * members)
        split = {"splits": plan.splits, "split_stride": stride}
        self._dispatch(entry, groups, (a, a, b, b, None, partials, None),
                       **{**params, "out_off": partials.offset, "out_stride": plan.splits * stride, **split})
        self._dispatch("matmul_reduce", (*self._grid(stride), members), (partials, None, None, None, bias, out, y),
                       **{**params, "a_off": partials.offset, "a_stride": plan.splits * stride, **split},
                       **epilogue)

    #: the operations whose kernels take a population's member per z group (conv.wgsl's,
    #: pool.wgsl's, sum_channels, flag_nonfinite), and the names of their arrays' strides, in the
    #: arrays' order
    MEMBER_OPERATIONS = {
        "im2col": ("src", "out"), "col2im": ("src", "out"), "to_channels_first": ("src", "out"),
        "to_channels_last": ("src", "out"), "maxpool2d": ("src", "out", "idx"),
        "maxpool2d_grad": ("src", "idx", "out"), "avgpool2d": ("src", "out"), "avgpool2d_grad": ("src", "out"),
        "sum_channels": ("a", "out"), "flag_nonfinite": ("a", "out"),
    }

    @_serialised
    def run_members(self, operation: str, members: int, strides: dict[str, int], *args, **kwargs) -> None:
        """Operation ``operation`` (one of MEMBER_OPERATIONS) for the
        ``members`` of a population in one dispatch: the arguments are member
        0's, and member z's arrays lie ``z · strides[name]`` elements on
        (names ``src_stride``, ``out_stride``, ``idx_stride``, ``bias_stride``,
        ``aux_stride`` as the kernel names its offsets; left out: shared)."""
        if operation not in self.MEMBER_OPERATIONS:
            raise ValueError(f"expected one of {sorted(self.MEMBER_OPERATIONS)}. Received: {operation!r}")
        self._members = (members, strides)
        try:
            getattr(self, operation)(*args, **kwargs)
        finally:
            self._members = None

    @staticmethod
    def shares_buffer(a: GPUArray, b: GPUArray) -> bool:
        """Whether ``a`` and ``b`` lie in one buffer (a product writes its bias gradient in its own)."""
        return a.alloc is b.alloc

    def matmul_plan(self, m: int, n: int, k: int) -> MatmulPlan:
        """The kernel, tile and splits of k a product of this shape runs with here."""
        return plan_matmul(m, n, k, self.shape)

    def _scratch(self, size: int) -> GPUArray:
        """A float32 scratch array of at least ``size`` elements, kept per size
        class: recordings that bind one stay valid, and products run one
        after another may share one (each dispatch sees the last's writes)."""
        key = max(1024, 1 << (size - 1).bit_length())
        scratch = self._scratches.get(key)
        if scratch is None:
            scratch = self._scratches[key] = self._new((key,))
        return scratch

    def sum_rows(self, x: GPUArray, out: GPUArray) -> None:
        rows, cols = x.shape[0], math.prod(x.shape[1:])
        self._dispatch(
            "sum_rows", self._column_groups(cols), (x, out),
            rows=rows, cols=cols, a_off=x.offset, out_off=out.offset,
        )

    def sum_channels(self, x: GPUArray, out: GPUArray) -> None:
        n, c = x.shape[:2]
        self._dispatch(
            "sum_channels", self._channel_groups(c), (x, out),
            rows=n, cols=c, inner=x.size // (n * c), a_off=x.offset, out_off=out.offset,
        )

    def flag_nonfinite(self, x: GPUArray, acc: GPUArray, index: int) -> None:
        self._dispatch(
            "flag_nonfinite", self._grid(x.size), (x, acc),
            rows=x.size, cols=1, a_off=x.offset, out_off=acc.offset + index,
        )

    # ------------------------------------------------------------- elementwise
    def _elementwise(self, entry: str, a, b, out, scale: float = 1.0) -> None:
        """``entry`` of elementwise.wgsl on arrays of one size; an operand in
        out's buffer is read through out's binding."""
        if a.size != out.size or (b is not None and b.size != out.size):
            raise ValueError(f"{entry} needs arrays of one size. Received: {a.shape}, "
                             f"{None if b is None else b.shape} and {out.shape}")
        a_in, b_in = a.alloc is out.alloc, b is not None and b.alloc is out.alloc
        self._dispatch(
            entry, self._grid(out.size), (None if a_in else a, None if b_in or b is None else b, out),
            count=out.size, a_off=a.offset, b_off=b.offset if b is not None else 0, out_off=out.offset,
            a_in_out=int(a_in), b_in_out=int(b_in), scale=scale,
        )

    def add(self, a, b, out, scale=1.0) -> None:
        self._elementwise("add", a, b, out, scale)

    def multiply(self, a, b, out) -> None:
        self._elementwise("multiply", a, b, out)

    def scale(self, a, factor, out) -> None:
        self._elementwise("scale", a, None, out, factor)

    def copy_slice(self, src, dst, src_start, dst_start, width) -> None:
        if src.alloc is dst.alloc:
            raise ValueError("copy_slice needs arrays in different buffers")
        rows = dst.shape[0]
        self._dispatch(
            "copy_slice", self._grid(rows * width), (src, None, dst), count=rows * width, width=width,
            a_off=src.offset, a_cols=src.shape[1], a_start=src_start,
            out_off=dst.offset, out_cols=dst.shape[1], out_start=dst_start,
        )

    # ------------------------------------------------------------- activations
    def activation(self, kind: str, x, out, param: float = 0.0) -> None:
        self._dispatch(
            "activation_forward", self._grid(x.size), (x, None, out),
            count=x.size, kind=ACTIVATION_KIND[kind], a_off=x.offset, out_off=out.offset, param=param,
        )

    def activation_grad(self, kind: str, y, dy, out, param: float = 0.0) -> None:
        self._activation_backward("activation_backward", kind, y, dy, out, param)

    def activation_grad_from_input(self, kind: str, x, dy, out, param: float = 0.0) -> None:
        self._activation_backward("activation_input_backward", kind, x, dy, out, param)

    def _activation_backward(self, entry: str, kind: str, a, dy, out, param: float) -> None:
        self._dispatch(
            entry, self._grid(a.size), (a, dy, out),
            count=a.size, kind=ACTIVATION_KIND[kind], a_off=a.offset, b_off=dy.offset,
            out_off=out.offset, param=param,
        )

    def softmax(self, x, out) -> None:
        rows, cols = x.shape
        self._dispatch(
            "softmax_forward", self._grid(rows), (x, None, out),
            rows=rows, cols=cols, a_off=x.offset, out_off=out.offset,
        )

    def softmax_grad(self, y, dy, out) -> None:
        rows, cols = y.shape
        self._dispatch(
            "softmax_backward", self._grid(rows), (y, dy, out),
            rows=rows, cols=cols, a_off=y.offset, b_off=dy.offset, out_off=out.offset,
        )

    # ------------------------------------------------------------------ losses
    def loss(self, kind, p, t, acc, index, accuracy, scale, grad=None, grad_scale=1.0, weights=None) -> None:
        self.loss_members(1, {}, kind, p, t, acc, index, accuracy, scale, grad, grad_scale, weights)

    def loss_members(self, members: int, strides: dict[str, int], kind, p, t, acc, index, accuracy, scale,
                     grad=None, grad_scale=1.0, weights=None) -> None:
        """:meth:`loss` for the ``members`` of a population in one dispatch:
        member m's arrays lie ``m · strides[name]`` elements after those
        given (names "p", "t", "acc", "grad", "w"; left out: shared)."""
        rows = p.shape[0]
        cols = p.size // rows
        self._dispatch(
            "loss", (1, 1, members), (p, t, acc, grad, weights),
            p_stride=strides.get("p", 0), t_stride=strides.get("t", 0), acc_stride=strides.get("acc", 0),
            grad_stride=strides.get("grad", 0), w_stride=strides.get("w", 0),
            has_weights=int(weights is not None), w_off=weights.offset if weights is not None else 0,
            rows=rows, cols=cols, labels=int(cols > 1 and t.size == rows), kind=LOSS_KIND[kind],
            accuracy=ACCURACY_KIND[accuracy],
            p_off=p.offset, t_off=t.offset, acc_off=acc.offset, index=index,
            grad_off=grad.offset if grad is not None else 0, has_grad=int(grad is not None),
            scale=scale, grad_scale=grad_scale,
        )

    # ----------------------------------------------------------------- metrics
    def _metric_params(self, p, t, acc, index, transform) -> dict:
        rows = p.shape[0]
        cols = p.size // rows
        return dict(rows=rows, cols=cols, labels=int(cols > 1 and t.size == rows),
                    transform=METRIC_TRANSFORMS.index(transform), p_off=p.offset, t_off=t.offset,
                    acc_off=acc.offset, index=index)

    def metric_counts(self, kind, p, t, acc, index, bins, threshold=0.5, k=1, thresholds=None, per_class=False,
                      row_max=False, columns=None, transform="none", then_sigmoid=False, top_k=0) -> None:
        if bins > METRIC_BINS:
            raise ValueError(f"expected at most {METRIC_BINS} bins in one metric_counts. Received: {bins}")
        params = self._metric_params(p, t, acc, index, transform)
        lo, hi = columns if columns is not None else (0, params["cols"])
        self._dispatch(
            "metric_counts", (1, 1), (p, t, acc, thresholds), kind=METRIC_COUNTS.index(kind), bins=bins,
            threshold=threshold, k=top_k or k, per_class=int(per_class), row_max=2 if top_k else int(row_max),
            col_lo=lo, col_hi=hi,
            then_sigmoid=int(then_sigmoid), thresholds_off=thresholds.offset if thresholds is not None else 0,
            n_thresholds=thresholds.size if thresholds is not None else 0, **params,
        )

    def metric_sums(self, kind, p, t, acc, index, transform="none") -> None:
        params = self._metric_params(p, t, acc, index, transform)
        if kind == "columns":
            self._dispatch("metric_columns", self._grid(params["cols"], per_group=64), (p, t, acc), **params)
        else:
            self._dispatch("metric_sums", (1, 1), (p, t, acc), kind=int(kind == "squared"), **params)

    # ---------------------------------------------------------- regularisation
    def dropout(self, x, out, mask, rate, key) -> None:
        threshold, scale = dropout_threshold(rate)
        self._dispatch(
            "dropout_forward", self._grid(x.size), (x, mask, out), count=x.size, key=key,
            threshold=threshold, scale=scale, a_off=x.offset, mask_off=mask.offset, out_off=out.offset,
        )

    def dropout_grad(self, dy, mask, out) -> None:
        self._dispatch(
            "dropout_backward", self._grid(dy.size), (dy, mask, out), count=dy.size,
            a_off=dy.offset, mask_off=mask.offset, out_off=out.offset,
        )

    # ---------------------------------------------------------- images (NCHW)
    @staticmethod
    def _image_params(image_shape, kernel, stride, padding, dilation=(1, 1)) -> dict:
        """Kernel parameters of a window sliding over NCHW images: the
        padding above (ph) and to the left (pw), and the output's size,
        which the padding below and to the right changes."""
        n, c, h, w = image_shape
        top, _, left, _ = sides(padding)
        out_hw = window_positions((h, w), kernel, stride, padding, dilation)
        return dict(n=n, c=c, h=h, w=w, kh=kernel[0], kw=kernel[1], sh=stride[0], sw=stride[1],
                    ph=top, pw=left, oh=out_hw[0], ow=out_hw[1], dh=dilation[0], dw=dilation[1])

    def im2col(self, x, cols_t, kernel, stride, padding, dilation=(1, 1)) -> None:
        self._dispatch(
            "im2col", self._grid(cols_t.size), (x, None, cols_t), count=cols_t.size,
            src_off=x.offset, out_off=cols_t.offset,
            **self._image_params(x.shape, kernel, stride, padding, dilation),
        )

    def col2im(self, cols_t, out, kernel, stride, padding, dilation=(1, 1)) -> None:
        self._dispatch(
            "col2im", self._grid(out.size), (cols_t, None, out), count=out.size,
            src_off=cols_t.offset, out_off=out.offset,
            **self._image_params(out.shape, kernel, stride, padding, dilation),
        )

    def to_channels_first(self, rows_t, out, bias=None, activation=None, activation_param=0.0) -> None:
        n, f = out.shape[:2]
        self._dispatch(
            "to_channels_first", self._grid(out.size), (rows_t, bias, out), count=out.size, n=n, f=f,
            p=out.size // (n * f), src_off=rows_t.offset, out_off=out.offset,
            has_bias=int(bias is not None), bias_off=bias.offset if bias is not None else 0,
            activation=0 if activation is None else 1 + ACTIVATION_KIND[activation], param=activation_param,
        )

    def to_channels_last(self, x, rows_t, grad_of=None, activation_param=0.0) -> None:
        n, f = x.shape[:2]
        kind, y = grad_of if grad_of is not None else (None, None)
        self._dispatch(
            "to_channels_last", self._grid(rows_t.size), (x, None, rows_t, y), count=rows_t.size, n=n, f=f,
            p=x.size // (n * f), src_off=x.offset, out_off=rows_t.offset,
            grad_kind=0 if kind is None else 1 + ACTIVATION_KIND[kind], aux_off=y.offset if y is not None else 0,
            param=activation_param,
        )

    def maxpool2d(self, x, out, argmax, pool, stride, padding) -> None:
        self._dispatch(
            "maxpool_forward", self._grid(out.size), (x, argmax, out), count=out.size,
            src_off=x.offset, idx_off=argmax.offset, out_off=out.offset,
            **self._image_params(x.shape, pool, stride, padding),
        )

    def maxpool2d_grad(self, dy, argmax, dx, pool, stride, padding) -> None:
        self._dispatch(
            "maxpool_backward", self._grid(dx.size), (dy, argmax, dx), count=dx.size,
            src_off=dy.offset, idx_off=argmax.offset, out_off=dx.offset,
            **self._image_params(dx.shape, pool, stride, padding),
        )

    # ----------------------------------------------------------- normalization
    def _norm_dispatch(self, entry: str, groups: tuple[int, int], x, b, gamma, mean, var, out, first, second,
                       **params) -> None:
        """``entry`` of normalization.wgsl: a variance in the mean's buffer
        (a second in the first's) is read and written through that binding."""
        var_in_mean = var.alloc is mean.alloc
        second_in_first = first is not None and second is not None and second.alloc is first.alloc
        arrays = (x, b, gamma, mean, None if var_in_mean else var, out, first, None if second_in_first else second)
        self._dispatch(
            entry, groups, arrays, x_off=x.offset, b_off=b.offset if b is not None else 0,
            gamma_off=gamma.offset if gamma is not None else 0, has_gamma=int(gamma is not None),
            mean_off=mean.offset, var_off=var.offset, var_in_mean=int(var_in_mean),
            out_off=out.offset if out is not None else 0, has_out=int(out is not None),
            first_off=first.offset if first is not None else 0, has_first=int(first is not None),
            second_off=second.offset if second is not None else 0, has_second=int(second is not None),
            second_in_first=int(second_in_first), **params,
        )

    @staticmethod
    def _around(shape: tuple[int, ...], axis: int) -> dict:
        """(outer, c, inner) of a batch of ``shape`` around ``axis``."""
        return dict(outer=math.prod(shape[:axis]), c=shape[axis], inner=math.prod(shape[axis + 1:]))

    def batch_norm(self, x, out, mean, var, gamma, beta, axis, epsilon) -> None:
        self._norm_dispatch(
            "batch_norm_forward", self._grid(x.size), x, beta, gamma, mean, var, out, None, None,
            count=x.size, has_beta=int(beta is not None), epsilon=epsilon, **self._around(x.shape, axis),
        )

    def batch_norm_train(self, x, out, mean, var, gamma, beta, moving_mean, moving_var, axis, epsilon,
                         momentum) -> None:
        around = self._around(x.shape, axis)
        self._norm_dispatch(
            "batch_norm_train", self._channel_groups(around["c"]), x, beta, gamma, mean, var, out,
            moving_mean, moving_var, count=x.size, has_beta=int(beta is not None), epsilon=epsilon,
            momentum=momentum, one_minus_momentum=1.0 - momentum, **around,
        )

    def batch_norm_grad(self, x, dy, mean, var, gamma, dx, dgamma, dbeta, axis, epsilon,
                        batch_statistics=True) -> None:
        around = self._around(x.shape, axis)
        self._norm_dispatch(
            "batch_norm_backward", self._channel_groups(around["c"]), x, dy, gamma, mean, var, dx,
            dgamma, dbeta, count=x.size, epsilon=epsilon, frozen=int(not batch_statistics), **around,
        )

    def layer_norm(self, x, out, mean, var, gamma, beta, epsilon) -> None:
        rows, c = x.shape
        self._norm_dispatch(
            "layer_norm_forward", self._grid(rows), x, beta, gamma, mean, var, out, None, None,
            count=rows, c=c, has_beta=int(beta is not None), epsilon=epsilon,
        )

    def layer_norm_grad(self, x, dy, mean, var, gamma, dx, dgamma, dbeta, epsilon) -> None:
        rows, c = x.shape
        if dx is not None:
            self._norm_dispatch("layer_norm_backward", self._grid(rows), x, dy, gamma, mean, var, dx, None, None,
                                count=rows, c=c, epsilon=epsilon)
        if dgamma is not None or dbeta is not None:
            self._norm_dispatch("layer_norm_params", self._column_groups(c), x, dy, None, mean, var, None,
                                dgamma, dbeta, count=rows, c=c, epsilon=epsilon)

    # ---------------------------------------------------------- images (NCHW)
    def avgpool2d(self, x, out, pool, stride, padding) -> None:
        self._dispatch(
            "avgpool_forward", self._grid(out.size), (x, None, out), count=out.size,
            src_off=x.offset, out_off=out.offset, **self._image_params(x.shape, pool, stride, padding),
        )

    def avgpool2d_grad(self, dy, dx, pool, stride, padding) -> None:
        self._dispatch(
            "avgpool_backward", self._grid(dx.size), (dy, None, dx), count=dx.size,
            src_off=dy.offset, out_off=dx.offset, **self._image_params(dx.shape, pool, stride, padding),
        )

    def _resize(self, entry: str, src, out, small, large, **params) -> None:
        """``entry`` of resize.wgsl between the images ``small`` and ``large``
        (NCHW shapes), one invocation per element of ``out``."""
        self._dispatch(
            entry, self._grid(out.size), (src, out), count=out.size, h=small[2], w=small[3],
            oh=large[2], ow=large[3], src_off=src.offset, out_off=out.offset, **params,
        )

    def upsample2d(self, x, out, size) -> None:
        self._resize("upsample_forward", x, out, x.shape, out.shape, sh=size[0], sw=size[1])

    def upsample2d_grad(self, dy, dx, size) -> None:
        self._resize("upsample_backward", dy, dx, dx.shape, dy.shape, sh=size[0], sw=size[1])

    def pad2d(self, x, out, padding) -> None:
        self._resize("pad_forward", x, out, x.shape, out.shape, top=padding[0], left=padding[2])

    def pad2d_grad(self, dy, dx, padding) -> None:
        self._resize("pad_backward", dy, dx, dx.shape, dy.shape, top=padding[0], left=padding[2])

    # --------------------------------------------------------------- sequences
    def embedding(self, ids, table, out) -> None:
        vocab, cols = table.shape
        self._dispatch("embedding", self._grid(out.size), (ids, table, None, out), count=out.size, cols=cols,
                       vocab=vocab, a_off=ids.offset, b_off=table.offset, out_off=out.offset)

    def embedding_grad(self, ids, dy, dtable) -> None:
        vocab, cols = dtable.shape
        self._dispatch("embedding_grad", self._grid(dtable.size), (ids, dy, None, dtable), count=dtable.size,
                       cols=cols, rows=dy.shape[0], a_off=ids.offset, b_off=dy.offset, out_off=dtable.offset)

    def broadcast_rows(self, src, out) -> None:
        self._dispatch("broadcast_rows", self._grid(out.size), (src, None, None, out), count=out.size,
                       cols=src.size, a_off=src.offset, out_off=out.offset)

    @staticmethod
    def _attention_params(q, v, probs) -> dict:
        n, h, tq, tk = probs.shape
        return dict(n=n, h=h, tq=tq, tk=tk, d=q.shape[3], dv=v.shape[3])

    def attention_probs(self, q, k, probs, scale, causal) -> None:
        rows = math.prod(probs.shape[:3])
        self._dispatch("attention_probs", self._grid(rows), (q, k, None, probs), count=rows,
                       causal=int(causal), scale=scale, a_off=q.offset, b_off=k.offset, out_off=probs.offset,
                       **self._attention_params(q, q, probs))

    def attention_apply(self, probs, v, out) -> None:
        self._dispatch("attention_apply", self._grid(out.size), (probs, v, None, out), count=out.size,
                       a_off=probs.offset, b_off=v.offset, out_off=out.offset, **self._attention_params(v, v, probs))

    def attention_apply_grad(self, probs, v, dout, dprobs, dv) -> None:
        self._dispatch("attention_apply_grad", self._grid(dprobs.size + dv.size), (probs, v, dout, dprobs, dv),
                       count=dprobs.size, count2=dv.size, a_off=probs.offset, b_off=v.offset, c_off=dout.offset,
                       out_off=dprobs.offset, out2_off=dv.offset, **self._attention_params(v, v, probs))

    def attention_probs_grad(self, q, k, probs, dprobs, dq, dk, scale) -> None:
        rows = math.prod(probs.shape[:3])
        shape = self._attention_params(q, q, probs)
        self._dispatch("attention_softmax_grad", self._grid(rows), (probs, None, None, dprobs), count=rows,
                       a_off=probs.offset, out_off=dprobs.offset, **shape)
        self._dispatch("attention_qk_grad", self._grid(dq.size + dk.size), (dprobs, k, q, dq, dk), count=dq.size,
                       count2=dk.size, scale=scale, a_off=dprobs.offset, b_off=k.offset, c_off=q.offset,
                       out_off=dq.offset, out2_off=dk.offset, **shape)

    # -------------------------------------------------------------- optimizers
    def sgd_step(self, p, g, velocity, lr, momentum, nesterov, weight_decay=0.0) -> None:
        self.sgd_step_members(1, 0, None, p, g, velocity, lr, momentum, nesterov, weight_decay)

    def adagrad_step(self, p, g, sum_sq, lr, eps, weight_decay=0.0) -> None:
        self.adagrad_step_members(1, 0, None, p, g, sum_sq, lr, eps, weight_decay)

    def adam_step(self, p, g, m, v, step_size, beta1, beta2, eps, bias_correction2_sqrt,
                  weight_decay=0.0, decay=1.0) -> None:
        self.adam_step_members(1, 0, None, p, g, m, v, step_size, beta1, beta2, eps, bias_correction2_sqrt,
                               weight_decay, decay)

    # A population's updates, one dispatch for every member: member z's arrays lie
    # z · stride elements after those given, and with ``table`` (an array of
    # members × 16 floats in base.OPTIMIZER_SCALARS' order) its scalars are its row's
    # rather than the arguments (which are then ignored).
    def _update(self, entry: str, members: int, stride: int, table, arrays: tuple, **params) -> None:
        p = arrays[1]
        if table is not None:
            params = {k: (v if k in ("count", "mode") or k.endswith("_off") else 0.0) for k, v in params.items()}
        self._dispatch(entry, (*self._grid(p.size), members), (*arrays, table), stride=stride,
                       per_member=int(table is not None), **params)

    def sgd_step_members(self, members, stride, table, p, g, velocity, lr, momentum, nesterov,
                         weight_decay=0.0) -> None:
        mode = 0 if velocity is None else (2 if nesterov else 1)
        self._update("sgd", members, stride, table, (g, p, velocity, None), count=p.size, g_off=g.offset,
                     p_off=p.offset, s1_off=velocity.offset if velocity is not None else 0, mode=mode, lr=lr,
                     momentum=momentum, weight_decay=weight_decay)

    def adagrad_step_members(self, members, stride, table, p, g, sum_sq, lr, eps, weight_decay=0.0) -> None:
        self._update("adagrad", members, stride, table, (g, p, sum_sq, None), count=p.size, g_off=g.offset,
                     p_off=p.offset, s1_off=sum_sq.offset, lr=lr, eps=eps, weight_decay=weight_decay)

    def adam_step_members(self, members, stride, table, p, g, m, v, step_size, beta1, beta2, eps,
                          bias_correction2_sqrt, weight_decay=0.0, decay=1.0) -> None:
        scalars = {} if table is not None else dict(
            one_minus_beta1=1 - beta1, beta2=beta2, one_minus_beta2=1 - beta2, eps=eps, step_size=step_size,
            bias_correction2_sqrt=bias_correction2_sqrt, weight_decay=weight_decay, decay=decay)
        self._update("adam", members, stride, table, (g, p, m, v), count=p.size, g_off=g.offset, p_off=p.offset,
                     s1_off=m.offset, s2_off=v.offset, **scalars)

    # ------------------------------------------------------- gradient clipping
    #: clipping.wgsl's chunks: a workgroup of 256 lanes, 16 values a lane
    NORM_CHUNK = 4096

    def norm_layouts(self, arrays, joint):
        """The base class's layouts, each with its table on the device: a
        row (start, stop, first, end) per chunk (clipping.wgsl)."""
        layouts, slots = super().norm_layouts(arrays, joint)
        for layout in layouts:
            starts = [start for start, _, _, _ in layout.groups]
            rows = [(lo, hi, *layout.groups[max(0, bisect.bisect_right(starts, lo) - 1)][2:])
                    for lo, hi, _ in layout.sums]
            layout.table = self.from_numpy(np.array(rows, np.int32).reshape(-1, 4)) if rows else None
        return layouts, slots

    def _clipping(self, entry: str, x, acc, layout, clip: float = 0.0) -> None:
        if layout.sums:
            self._dispatch(
                entry, self._grid(len(layout.sums), per_group=1), (layout.table, x, acc),
                chunks=len(layout.sums), table_off=layout.table.offset, x_off=x.offset, acc_off=acc.offset,
                sum_off=layout.sums[0][2], clip=clip,
            )

    def sum_squares(self, x, acc, layout) -> None:
        self._clipping("sum_squares", x, acc, layout)

    def clip_norm(self, x, acc, layout, clip) -> None:
        self._clipping("clip_norm", x, acc, layout, clip)

    # ---------------------------------------------------------- custom kernels
    @_serialised
    def run_kernel(self, kernel, entry, workgroups, arrays, params) -> None:
        bound, offsets = [], {}
        for _, access, binding in kernel.file.bindings[1:]:
            a = arrays.get(binding)
            if a is not None and not isinstance(a, GPUArray):
                raise ValueError(f"{kernel!r}: {binding} takes an array of the GPU backend (a layer's buffers and "
                                 f"parameters). Received: {type(a).__name__}")
            bound.append(a)
            offsets[f"{binding}_off"] = a.offset if a is not None else 0
        # (Kernel.dispatch has refused views of one buffer read and written, on every backend)
        self._forget_dead_kernels()
        name = self._custom_kernels.get(kernel)
        if name is None:
            name = self._compile(kernel)
        self._dispatch(f"{name}/{entry}", workgroups, bound, **params, **offsets)

    def _compile(self, kernel) -> str:
        """Add a user's kernel to this device's kernels; its name there."""
        file = kernel.file
        if file.packer.size > self._slot:
            raise ValueError(f"{kernel!r}: its Params take {file.packer.size} bytes; a dispatch's parameters take at "
                             f"most {self._slot} on this device ({self._slot // 4} fields)")
        missing = sorted(set(file.requires) - set(self.device.features))
        if missing:
            raise ValueError(f"{kernel!r} requires {missing}, which {self.adapter} does not offer")
        # compiled already by a Kernel of this name and source, alive or not long gone
        compiled = file.name in self._custom_users or file.name in self._custom_unused
        self._custom_unused.pop(file.name, None)
        if not compiled:
            try:
                self.kernels.add(file)
            except Exception as error:  # wgpu's validation errors: the WGSL compiler's message
                raise ValueError(f"{kernel!r} does not compile on {self.adapter}: {error}") from None
        self._custom_kernels[kernel] = file.name
        self._custom_users[file.name] = self._custom_users.get(file.name, 0) + 1
        weakref.finalize(kernel, self._custom_dead.append, file.name)
        return file.name

    def _forget_dead_kernels(self) -> None:
        """Count down the users of the dead Kernels' compilations; drop those
        (pipelines, module, layout, bind groups) that no live Kernel has used
        for the longest, beyond the ``UNUSED_KERNELS_KEPT`` latest."""
        while self._custom_dead:
            name = self._custom_dead.popleft()
            self._custom_users[name] -= 1
            if self._custom_users[name]:
                continue
            del self._custom_users[name]
            self._custom_unused[name] = None
            while len(self._custom_unused) > self.UNUSED_KERNELS_KEPT:
                old, _ = self._custom_unused.popitem(last=False)
                self.kernels.remove(old)
                for key in [k for k in self._bind_groups if k[0] == old]:
                    del self._bind_groups[key]
