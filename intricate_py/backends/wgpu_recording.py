"""What the GPU backend records and measures, beside its operations:
recordings of dispatches to replay, timestamps of dispatches, and a guard
that keeps Ctrl-C (and any other signal handler's exception) out of a
submission or a readback."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import wgpu

if TYPE_CHECKING:
    from .wgpu_backend import WgpuBackend


#: the signals whose Python handlers may be held (all but those no handler can take)
_SIGNALS = tuple(sorted(signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}))
try:  # signal's own functions: signal.getsignal and signal.signal give handler numbers as enums, at many times the cost
    from _signal import getsignal as _getsignal, signal as _setsignal
except ImportError:
    _getsignal, _setsignal = signal.getsignal, signal.signal


class _Blocks:
    """How many blocks of :func:`uninterrupted` are open on the main thread."""

    depth = 0


class _Hold:
    """A block of :func:`uninterrupted` on the main thread, and the
    stand-in signal handler it installs: while the block is open the hold
    notes each signal; afterwards (should it still be installed) it passes
    the signal straight on to the handler it stood in for.

    Where a handler may still raise: before ``__enter__`` has stood in for
    it, and once ``__exit__`` has closed the hold. In between (the calls
    into ``__exit__`` included) every Python-level handler is the hold,
    which raises nothing."""

    def __init__(self):
        self.open = True
        self.previous: dict[int, object] = {}
        self.caught: list[tuple[int, object]] = []

    def __call__(self, signum: int, frame) -> None:
        if self.open:
            self.caught.append((signum, frame))
            return
        handler = self.previous.get(signum)
        if callable(handler):
            handler(signum, frame)

    def __enter__(self) -> None:
        _Blocks.depth += 1
        try:
            self.install()
        except BaseException:  # a handler not yet stood in for raised: put back those that were
            self.__exit__()
            raise

    def __exit__(self, *exc_info) -> None:
        _Blocks.depth -= 1
        self.restore()

    def install(self) -> None:
        """Stand in for every Python-level handler (Ctrl-C's, a test
        runner's SIGALRM timeout, the user's own)."""
        for signum in _SIGNALS:
            handler = _getsignal(signum)
            if not callable(handler):  # none, or the system's default, or ignored
                continue
            if isinstance(handler, _Hold):
                # left by a block whose restore a signal cut short (no block
                # is open here): it stands for the real handler
                handler = handler.previous[signum]
            self.previous[signum] = handler  # noted first: restore() puts it back whatever happens next
            _setsignal(signum, self)

    def restore(self) -> None:
        """Put the handlers back, then run them for the signals caught. (A
        handler put back may run, and raise, before the others are: those
        left behind pass their signals on, and the next block puts back
        what they stand for.)"""
        self.open = False
        try:
            for signum, handler in self.previous.items():
                _setsignal(signum, handler)
        finally:
            for signum, frame in self.caught:
                self.previous[signum](signum, frame)


_NOTHING_TO_HOLD = contextlib.nullcontext()


def uninterrupted() -> contextlib.AbstractContextManager:
    """A block that holds the Python-level signal handlers (Ctrl-C's
    KeyboardInterrupt, a SIGALRM timeout's, any other) until it ends, so
    that a submission or a readback is never cut in half: whatever a
    handler raises is raised right after the block. Python runs handlers
    on the main thread only, so elsewhere there is nothing to hold; blocks
    nest (the outermost holds)."""
    if _Blocks.depth or threading.get_ident() != threading.main_thread().ident:
        return _NOTHING_TO_HOLD
    return _Hold()


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
