"""Draw the pictures in docs/ that the README shows.

    .venv/bin/python docs/make_pictures.py

needs the optional extra 'plot' (pip install 'intricate-py[plot]') and
Graphviz's dot program (on Debian: apt-get install graphviz).
"""

from pathlib import Path

from intricate_py import Input, Model, plot_model
from intricate_py.layers import Add, Dense, ReLU

DOCS = Path(__file__).resolve().parent


def residual_block() -> Model:
    """A small residual block: the input widened to 32, a Dense-ReLU branch
    added back to it, then 4 outputs."""
    x = Input(16)
    h = ReLU()(Dense(32, name="dense_in")(x))
    y = Add()([h, ReLU()(Dense(32)(h))])
    return Model(inputs=x, outputs=Dense(4, name="out")(y), device="cpu", seed=0)


def main() -> None:
    """Write every picture and say where."""
    print(plot_model(residual_block(), DOCS / "residual_block.svg"))


if __name__ == "__main__":
    main()
