"""Intricate's XoR example: 2 -> Dense 3 -> TanH -> Dense 1 -> TanH, trained
with mean squared error and SGD(0.1) until the loss is below 0.01.

    python examples/xor/main.py [--device auto|cpu|gpu] [--seed N]
"""

from __future__ import annotations

import argparse

import numpy as np

from intricate_py import MinLossReached, Model
from intricate_py.layers import Dense, TanH
from intricate_py.losses import MeanSquared
from intricate_py.optimizers import SGD

INPUTS = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
TARGETS = np.array([[0.0], [1.0], [1.0], [0.0]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-epochs", type=int, default=10_000)
    args = parser.parse_args(argv)

    model = Model([Dense(3), TanH(), Dense(1), TanH()], input_size=2, device=args.device, seed=args.seed)
    print(model)
    history = model.fit(
        INPUTS, TARGETS, loss=MeanSquared(), optimizer=SGD(0.1), epochs=args.max_epochs,
        batch_size=4, halting_condition=MinLossReached(0.01), verbose=2,
    )
    loss = history.history["loss"][-1]
    print(f"\nloss {loss:.5f} after {len(history.epoch)} epochs")
    for x, y in zip(INPUTS, model.predict(INPUTS)):
        print(f"  {x[0]:.0f} xor {x[1]:.0f} -> {y[0]:.4f}")
    if loss >= 0.01:
        print("did not reach a loss below 0.01")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
