"""What the GPU backend records and measures, beside its operations:
recordings of dispatches to replay, timestamps of dispatches, and a guard
that keeps Ctrl-C out of a submission or a readback."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import wgpu

if TYPE_CHECKING:
    from .wgpu_backend import WgpuBackend


@contextlib.contextmanager
def uninterrupted():
    """Hold Ctrl-C (SIGINT) until the block ends, so that a submission or a
    readback is never cut in half; the interrupt is raised right after it."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and callable(previous):
            previous(signal.SIGINT, caught[0])
        elif caught and previous == signal.SIG_DFL:
            signal.raise_signal(signal.SIGINT)


class Dispatch(NamedTuple):
    """A dispatch as recorded: what it binds, its parameter bytes, and the
    (byte offset, struct format, name) of each parameter that changes from
    step to step."""

    pipeline: object
    group: object
    params: bytes
    groups: tuple[int, int]
    patches: tuple[tuple[int, str, str], ...]


class Recording:
    """The dispatches of a piece of work (a training step), replayable with
    new values for its marked parameters. ``complete`` is False when the
    work did more than dispatch (a copy, an upload, a readback): such work
    is not replayed."""

    def __init__(self):
        self.dispatches: list[Dispatch] = []
        self.complete = True


class Profile:
    """Timestamps around dispatches, and what they add up to by entry point."""

    def __init__(self, backend: "WgpuBackend", capacity: int):
        self.backend, self.capacity = backend, capacity
        self.query_set = backend.device.create_query_set(type="timestamp", count=2 * capacity)
        self.entries: list[str] = []

    def room(self) -> bool:
        return len(self.entries) < self.capacity

    def next(self, entry: str) -> dict:
        """The timestamp writes of the pass of the next dispatch, of ``entry``."""
        i = len(self.entries)
        self.entries.append(entry)
        return {"query_set": self.query_set, "beginning_of_pass_write_index": 2 * i,
                "end_of_pass_write_index": 2 * i + 1}

    def times(self) -> dict[str, float]:
        """Seconds of GPU time by entry point, over the dispatches timed."""
        backend, count = self.backend, 2 * len(self.entries)
        if not count:
            return {}
        device = backend.device
        resolved = device.create_buffer(size=8 * count, usage=wgpu.BufferUsage.QUERY_RESOLVE | wgpu.BufferUsage.COPY_SRC)
        host = device.create_buffer(size=8 * count, usage=wgpu.BufferUsage.MAP_READ | wgpu.BufferUsage.COPY_DST)
        backend.flush()
        encoder = device.create_command_encoder()
        encoder.resolve_query_set(self.query_set, 0, count, resolved, 0)
        encoder.copy_buffer_to_buffer(resolved, 0, host, 0, 8 * count)
        backend.queue.submit([encoder.finish()])
        host.map_sync(wgpu.MapMode.READ)
        stamps = np.frombuffer(host.read_mapped(), dtype=np.uint64).astype(np.float64)
        host.unmap()
        totals: dict[str, float] = {}
        for entry, begin, end in zip(self.entries, stamps[0::2], stamps[1::2]):
            totals[entry] = totals.get(entry, 0.0) + float(max(end - begin, 0.0)) * 1e-9  # nanoseconds
        return totals
