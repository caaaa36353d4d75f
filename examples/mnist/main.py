"""Fashion-MNIST: a 784 -> Dense 128 -> ReLU -> Dense 10 -> Softmax network
(--model mlp), or a small convolutional network (--model cnn), trained with
categorical cross-entropy and Adam (cosine-decayed learning rate).

    python examples/mnist/main.py [--model mlp|cnn] [--device auto|cpu|gpu] [--epochs N]
        [--batch-size 64] [--learning-rate 1e-3] [--limit N] [--seed 0] [--out DIR] [--data DIR]

The data comes from Debian's dataset-fashion-mnist package; --data takes any
folder of MNIST-format IDX files (the original MNIST digits too). It prints a
progress bar per epoch and a per-class accuracy table, saves the trained
model, reloads it for the final evaluation, and leaves in --out: the model
file, loss and accuracy curves, a confusion matrix and a grid of
misclassified images.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from intricate_py import FormatError, Model
from intricate_py.datasets import MISSING_DATA_ADVICE, FASHION_CLASSES, FASHION_MNIST, load_mnist
from intricate_py.layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU, Softmax
from intricate_py.losses import CategoricalCrossEntropy
from intricate_py.optimizers import Adam
from intricate_py.schedules import CosineDecay


#: default epochs of each network
EPOCHS = {"mlp": 20, "cnn": 20}


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlp", choices=sorted(EPOCHS))
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"])
    parser.add_argument("--epochs", type=int, default=None, help="20 (both networks)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--limit", type=int, default=None, help="train on the first N images only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    parser.add_argument("--data", type=Path, default=FASHION_MNIST, help="folder of MNIST-format IDX files")
    args = parser.parse_args(argv)
    args.epochs = args.epochs or EPOCHS[args.model]
    return args


def build_model(args) -> Model:
    if args.model == "cnn":
        layers = [Conv2D(32, 5), ReLU(), MaxPool2D(2), Conv2D(64, 5), ReLU(), MaxPool2D(2),
                  Flatten(), Dropout(0.25), Dense(256), ReLU(), Dropout(0.5), Dense(10), Softmax()]
        return Model(layers, input_size=(1, 28, 28), device=args.device, seed=args.seed)
    return Model([Dense(128), ReLU(), Dense(10), Softmax()], input_size=784, device=args.device, seed=args.seed)


def prepare(images: np.ndarray, mean: float, std: float, model: str) -> np.ndarray:
    """uint8 images (n, 28, 28) -> standardised float32: rows (n, 784) for the
    MLP, single-channel images (n, 1, 28, 28) for the CNN."""
    shape = (len(images), 1, *images.shape[1:]) if model == "cnn" else (len(images), -1)
    return ((images.reshape(shape).astype(np.float32) / 255) - mean) / std


def class_names(folder: Path) -> list[str]:
    return list(FASHION_CLASSES) if "fashion" in str(folder).lower() else [str(i) for i in range(10)]


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        (train_images, train_labels), (test_images, test_labels) = load_mnist(args.data)
    except FileNotFoundError as error:
        print(f"{error}\n{MISSING_DATA_ADVICE}", file=sys.stderr)
        return 2
    except FormatError as error:
        print(f"unreadable data: {error}", file=sys.stderr)
        return 2
    if args.limit:
        train_images, train_labels = train_images[: args.limit], train_labels[: args.limit]
    scaled = train_images.astype(np.float32) / 255
    mean, std = float(scaled.mean()), float(scaled.std())
    x_train, x_test = prepare(train_images, mean, std, args.model), prepare(test_images, mean, std, args.model)
    names = class_names(args.data)

    model = build_model(args)
    print(model)
    # the learning rate falls on a cosine from its start to 0 over the whole fit, step by step
    steps = args.epochs * -(-len(x_train) // args.batch_size)
    optimizer = Adam(CosineDecay(args.learning_rate, decay_steps=steps))
    history = model.fit(
        x_train, train_labels, loss=CategoricalCrossEntropy(), optimizer=optimizer, epochs=args.epochs,
        batch_size=args.batch_size, validation_data=(x_test, test_labels), verbose=1,
    )
    if history.stop_reason:
        print(history.stop_reason)

    args.out.mkdir(parents=True, exist_ok=True)
    model_path = args.out / f"fashion-mnist-{args.model}.safetensors"
    model.save(model_path)
    loaded = Model.load(model_path, device=args.device)
    result = loaded.evaluate(x_test, test_labels, CategoricalCrossEntropy())
    predicted = loaded.predict(x_test).argmax(axis=1)

    print(f"\nsaved {model_path} and reloaded it: test loss {result['loss']:.4f}, "
          f"test accuracy {result['accuracy']:.4f}\n")
    print(per_class_table(test_labels, predicted, names))
    plots = write_plots(args.out, history, test_labels, predicted, test_images, names)
    print("\nwrote " + ", ".join(str(p) for p in plots))
    return 0


def per_class_table(labels: np.ndarray, predicted: np.ndarray, names: list[str]) -> str:
    lines = [f"{'class':<13} {'accuracy':>8}  {'images':>6}"]
    for k, name in enumerate(names):
        mine = labels == k
        lines.append(f"{name:<13} {np.mean(predicted[mine] == k):8.4f}  {mine.sum():6d}")
    lines.append(f"{'all':<13} {np.mean(predicted == labels):8.4f}  {len(labels):6d}")
    return "\n".join(lines)


def write_plots(out: Path, history, labels, predicted, images, names) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = history.history
    epochs = [e + 1 for e in history.epoch]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for axes, key, title in ((left, "loss", "loss"), (right, "accuracy", "accuracy")):
        axes.plot(epochs, h[key], "o-", label="training")
        axes.plot(epochs, h["val_" + key], "o-", label="test")
        axes.set(xlabel="epoch", title=title)
        axes.grid(alpha=0.3)
        axes.legend()
    fig.tight_layout()
    curves = out / "curves.png"
    fig.savefig(curves, dpi=100)
    plt.close(fig)

    confusion = np.zeros((10, 10), int)
    np.add.at(confusion, (labels, predicted), 1)
    fig, axes = plt.subplots(figsize=(8, 7))
    axes.imshow(confusion, cmap="Blues")
    for (i, j), count in np.ndenumerate(confusion):
        axes.text(j, i, str(count), ha="center", va="center", fontsize=7,
                  color="white" if count > confusion.max() / 2 else "black")
    axes.set(xticks=range(10), yticks=range(10), xlabel="predicted", ylabel="true", title="confusion matrix")
    axes.set_xticklabels(names, rotation=45, ha="right")
    axes.set_yticklabels(names)
    fig.tight_layout()
    matrix = out / "confusion.png"
    fig.savefig(matrix, dpi=100)
    plt.close(fig)

    wrong = np.flatnonzero(predicted != labels)[:25]
    fig, grid = plt.subplots(5, 5, figsize=(9, 10))
    for axes, i in zip(grid.flat, list(wrong) + [None] * (25 - len(wrong))):
        axes.axis("off")
        if i is not None:
            axes.imshow(images[i], cmap="gray_r")
            axes.set_title(f"{names[labels[i]]}\n→ {names[predicted[i]]}", fontsize=8)
    fig.suptitle("misclassified test images: true → predicted")
    fig.tight_layout()
    gallery = out / "misclassified.png"
    fig.savefig(gallery, dpi=100)
    plt.close(fig)
    return [curves, matrix, gallery]


if __name__ == "__main__":
    raise SystemExit(main())
