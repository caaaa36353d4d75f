"""Intricate's XoR example: 2 -> Dense 3 -> TanH -> Dense 1 -> TanH, trained
with mean squared error and SGD(0.1) until the loss is below 0.01; then, as
in Intricate's README, both Dense layers are saved, loaded into new layers
and the rebuilt model predicts the same. ``--export DIR`` also writes the
trained network as ``xor_net.onnx`` and as C source, ``xor_net.c`` and
``xor_net.h``, which examples/deploy/main.c compiles into a program.

    python examples/xor/main.py [--device auto|cpu|gpu] [--seed N] [--out DIR] [--export DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from intricate_py import MinLossReached, Model
from intricate_py.layers import Dense, Layer, TanH
from intricate_py.losses import MeanSquared
from intricate_py.optimizers import SGD

INPUTS = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
TARGETS = np.array([[0.0], [1.0], [1.0], [0.0]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-epochs", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out",
                        help="folder for the saved layers")
    parser.add_argument("--export", type=Path, metavar="DIR",
                        help="also write the network as xor_net.onnx, xor_net.c and xor_net.h in DIR")
    args = parser.parse_args(argv)

    model = Model([Dense(3), TanH(), Dense(1), TanH()], input_size=2, device=args.device, seed=args.seed)
    print(model)
    history = model.fit(
        INPUTS, TARGETS, loss=MeanSquared(), optimizer=SGD(0.1), epochs=args.max_epochs,
        batch_size=4, halting_condition=MinLossReached(0.01), verbose=2,
    )
    loss = history.history["loss"][-1]
    print(f"\nloss {loss:.5f} after {len(history.epoch)} epochs")
    if loss >= 0.01:
        print("did not reach a loss below 0.01")
        return 1

    # Intricate's flow: save the Dense layers, load them into new layers, rebuild.
    args.out.mkdir(parents=True, exist_ok=True)
    first, second = args.out / "xor-first-dense.safetensors", args.out / "xor-second-dense.safetensors"
    model.layers[0].save(first)
    model.layers[2].save(second)
    loaded = Model([Layer.load(first), TanH(), Layer.load(second), TanH()], device=args.device)
    print(f"saved the Dense layers to {first} and {second.name}, and loaded them back")

    predicted, reloaded = model.predict(INPUTS), loaded.predict(INPUTS)
    print("  input   trained  loaded")
    for x, y, z in zip(INPUTS, predicted, reloaded):
        print(f"  {x[0]:.0f} xor {x[1]:.0f}  {y[0]:.4f}   {z[0]:.4f}")
    if not np.array_equal(predicted, reloaded):
        print("the loaded layers predict differently")
        return 1
    if args.export is not None:
        args.export.mkdir(parents=True, exist_ok=True)
        written = model.export(args.export, format="c", name="xor_net")
        try:
            written += model.export(args.export / "xor_net.onnx")
        except ImportError as error:  # onnx is the optional extra 'export'
            print(f"no ONNX file: {error}")
        print("exported the network to", ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
