"""What benchmarks/resnet.py, charlm.py and population.py share: an
example's main.py loaded as a module, rounds of runs in rotating order, and
where a run's time goes (every backend operation timed where the layers
call it, added up by family)."""

from __future__ import annotations

import importlib.util
import time
from collections import defaultdict
from pathlib import Path
from types import ModuleType
from typing import Callable

from intricate_py.backends.base import Backend


def load_example(name: str) -> ModuleType:
    """examples/{name}/main.py, as a module."""
    path = Path(__file__).resolve().parent.parent / "examples" / name / "main.py"
    spec = importlib.util.spec_from_file_location(f"{name}_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def alternating(runs: dict[str, Callable[[], float]], rounds: int,
                show: Callable[[int, str, float], None] | None = None) -> dict[str, list[float]]:
    """The seconds each of ``runs`` returns, in each of ``rounds`` rounds,
    the runs in an order rotated by one each round (the host's drift falls
    on all alike); ``show(round, label, seconds)`` after each run."""
    labels = list(runs)
    times: dict[str, list[float]] = {label: [] for label in labels}
    for r in range(rounds):
        for label in labels[r % len(labels):] + labels[: r % len(labels)]:
            times[label].append(runs[label]())
            if show is not None:
                show(r, label, times[label][-1])
    return times


def operation_times(backend: Backend, families: list[tuple[str, str]], run: Callable[[], float],
                    whole: str) -> dict[str, float]:
    """Seconds of each operation family while ``run()`` runs on
    ``backend`` — ``families`` gives (the start of an operation's name, the
    family's label), "other" for the rest — and under ``whole`` what
    ``run`` returns (its own measure of the whole). An operation that calls
    another counts once."""
    spent: dict[str, float] = defaultdict(float)
    depth = [0]

    def family(operation: str) -> str:
        return next((label for prefix, label in families if operation.startswith(prefix)), "other")

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
