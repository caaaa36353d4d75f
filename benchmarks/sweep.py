"""Trials a minute of the Ray Tune sweep example (examples/sweep/main.py),
run as a user runs it: a process of its own, Ray started and stopped by it.

    python benchmarks/sweep.py [--concurrent 1 2] [--rounds 2] [--json results.json]
        [-- any further arguments of the example]

Each round runs the example once per ``--concurrent`` value, in rotating
order (the host's drift falls on all alike), with the same fixed search
seed, so that every run draws the same trials; the time is the process's
whole wall time, Ray's start included. The defaults are the README's:
``--samples 8 --epochs 3 --limit 12000 --device cpu --seed 0``, the MLP,
ASHA on. Needs the ``tune`` extra and Fashion-MNIST. With the example's
``--population N`` (after ``--``) each trial trains N configurations as a
Population: the results give configurations a minute beside trials a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "sweep" / "main.py"
DEFAULTS = ["--samples", "8", "--epochs", "3", "--limit", "12000", "--device", "cpu", "--seed", "0"]


def run_once(arguments: list[str], concurrent: int) -> float:
    """Seconds the example takes with at most ``concurrent`` trials at once."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, str(EXAMPLE), *arguments, "--concurrent", str(concurrent), "--out", out]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"the example failed:\n{done.stderr[-3000:]}")
    return seconds


def option(arguments: list[str], name: str) -> str:
    """The value of the last ``name`` in ``arguments``: the one argparse keeps."""
    last = max(i for i, a in enumerate(arguments) if a == name)
    return arguments[last + 1]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrent", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    arguments = DEFAULTS + extra  # later options win in argparse
    samples = int(option(arguments, "--samples"))
    packed = int(option(arguments, "--population")) if "--population" in arguments else 1
    times: dict[int, list[float]] = {c: [] for c in args.concurrent}
    loads: list[float] = []  # the host's 1-minute load average before each run: a shared machine drifts
    for round_ in range(args.rounds):
        shift = round_ % len(args.concurrent)
        for concurrent in args.concurrent[shift:] + args.concurrent[:shift]:
            loads.append(round(os.getloadavg()[0], 2))
            seconds = run_once(arguments, concurrent)
            times[concurrent].append(seconds)
            print(f"round {round_ + 1}, --concurrent {concurrent}: {seconds:.1f} s (load {loads[-1]})", flush=True)
    results = {
        "command": f"python examples/sweep/main.py {' '.join(arguments)} --concurrent N",
        "search_seed": int(option(arguments, "--seed")),
        "samples": samples,
        "configurations_per_trial": packed,
        "rounds": args.rounds,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "system": platform.platform()},
        "load_averages_before_runs": loads,
        "runs": {
            str(c): {"seconds": [round(t, 2) for t in ts], "median_seconds": round(statistics.median(ts), 2),
                     "trials_per_minute": round(60 * samples / statistics.median(ts), 1),
                     "configurations_per_minute": round(60 * samples * packed / statistics.median(ts), 1)}
            for c, ts in times.items()
        },
    }
    print(json.dumps(results["runs"], indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
