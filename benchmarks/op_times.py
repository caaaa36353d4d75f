"""Where a run's time goes: every backend operation timed where the layers
call it, added up by family (benchmarks/resnet.py and charlm.py)."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Callable

from intricate_py.backends.base import Backend


def operation_times(backend: Backend, family: Callable[[str], str], run: Callable[[], float],
                    whole: str) -> dict[str, float]:
    """Seconds of each operation family (``family(name)``) while ``run()``
    runs on ``backend``, and under ``whole`` what ``run`` returns (its own
    measure of the whole). An operation that calls another counts once."""
    spent: dict[str, float] = defaultdict(float)
    depth = [0]

    def timed(name, method):
        def run_timed(*args, **kwargs):
            depth[0] += 1
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    spent[family(name)] += time.perf_counter() - start
        return run_timed

    for name in sorted(Backend.__abstractmethods__):
        setattr(backend, name, timed(name, getattr(backend, name)))
    try:
        spent[whole] = run()
    finally:
        for name in Backend.__abstractmethods__:
            delattr(backend, name)
    return dict(spent)
