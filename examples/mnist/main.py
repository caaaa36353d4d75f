"""Fashion-MNIST: a 784 -> Dense 128 -> ReLU -> Dense 10 -> Softmax network
(--model mlp), a small convolutional network (--model cnn), or a residual
network (--model resnet), trained with categorical cross-entropy and Adam
(cosine-decayed learning rate).

    python examples/mnist/main.py [--model mlp|cnn|resnet] [--device auto|cpu|gpu] [--epochs N]
        [--batch-size N] [--learning-rate X] [--limit N] [--test-limit N] [--seed 0] [--out DIR]
        [--data DIR] [--compare-torch]

The residual network (functional API: three stages of two residual blocks
of 3×3 convolutions with batch normalization, 16, 32 and 64 channels, the
last two stages starting at stride 2, global average pooling) takes the
images as the IDX files give them scaled to [0, 1], (n, 1, 28, 28): its
first layer, a BatchNormalization, does the rest. It trains on images
shifted by up to 2 pixels each way and flipped left-right at random, drawn
anew each epoch with numpy (a fit per epoch, each continuing the last with
``initial_epoch``). With --compare-torch the same network is built in
PyTorch from the same initial weights and trained with the same recipe
(the same augmented images, batch size, Adam and schedule) in the same run,
and both networks' test accuracy and time per epoch are printed side by
side (and written to comparison.json).

The data comes from Debian's dataset-fashion-mnist package; --data takes any
folder of MNIST-format IDX files (the original MNIST digits too). It prints a
progress bar per epoch and a per-class accuracy table, saves the trained
model, reloads it for the final evaluation, and leaves in --out: the model
file, loss and accuracy curves, a confusion matrix and a grid of
misclassified images.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from intricate_py import FormatError, Input, Model
from intricate_py.datasets import MISSING_DATA_ADVICE, FASHION_CLASSES, FASHION_MNIST, load_mnist
from intricate_py.layers import (Add, BatchNormalization, Conv2D, Dense, Dropout, Flatten, GlobalAveragePooling2D,
                                 MaxPool2D, ReLU, Softmax)
from intricate_py.losses import CategoricalCrossEntropy
from intricate_py.optimizers import Adam
from intricate_py.schedules import CosineDecay


#: each network's recipe: epochs, batch size, learning rate
RECIPES = {"mlp": (20, 64, 1e-3), "cnn": (20, 64, 1e-3), "resnet": (15, 128, 2e-3)}
#: the residual network's channels by stage, and its residual blocks a stage
WIDTHS, BLOCKS = (16, 32, 64), 2


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlp", choices=sorted(RECIPES))
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"])
    parser.add_argument("--epochs", type=int, default=None, help="20 (mlp, cnn), 15 (resnet)")
    parser.add_argument("--batch-size", type=int, default=None, help="64 (mlp, cnn), 128 (resnet)")
    parser.add_argument("--learning-rate", type=float, default=None, help="1e-3 (mlp, cnn), 2e-3 (resnet)")
    parser.add_argument("--limit", type=int, default=None, help="train on the first N images only")
    parser.add_argument("--test-limit", type=int, default=None, help="test on the first N images only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    parser.add_argument("--data", type=Path, default=FASHION_MNIST, help="folder of MNIST-format IDX files")
    parser.add_argument("--compare-torch", action="store_true",
                        help="train the same network with the same recipe in PyTorch too (resnet)")
    args = parser.parse_args(argv)
    epochs, batch_size, learning_rate = RECIPES[args.model]
    args.epochs = args.epochs or epochs
    args.batch_size = args.batch_size or batch_size
    args.learning_rate = args.learning_rate or learning_rate
    if args.compare_torch and args.model != "resnet":
        parser.error("--compare-torch trains the residual network: give --model resnet")
    return args


def build_model(args) -> Model:
    if args.model == "resnet":
        return residual_network(args.device, args.seed)
    if args.model == "cnn":
        layers = [Conv2D(32, 5), ReLU(), MaxPool2D(2), Conv2D(64, 5), ReLU(), MaxPool2D(2),
                  Flatten(), Dropout(0.25), Dense(256), ReLU(), Dropout(0.5), Dense(10), Softmax()]
        return Model(layers, input_size=(1, 28, 28), device=args.device, seed=args.seed)
    return Model([Dense(128), ReLU(), Dense(10), Softmax()], input_size=784, device=args.device, seed=args.seed)


def residual_network(device: str, seed: int) -> Model:
    """(n, 1, 28, 28) images in [0, 1] -> (n, 10) class probabilities.
    Normalizations use PyTorch's defaults (momentum 0.9 in Keras's terms,
    epsilon 1e-5) and convolutions PyTorch's symmetric padding, so that
    the PyTorch twin computes the same (but for the moving variances,
    which PyTorch updates with the unbiased batch variance, Keras and
    intricate-py with the biased one)."""

    def normalized(x, name: str):
        return BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)(x)

    def conv_bn(x, filters: int, name: str, strides: int = 1, kernel: int = 3, relu: bool = True):
        x = Conv2D(filters, kernel, strides=strides, padding=kernel // 2, use_bias=False, name=f"{name}_conv")(x)
        x = normalized(x, f"{name}_bn")
        return ReLU()(x) if relu else x

    images = Input((1, 28, 28), name="images")
    h = conv_bn(normalized(images, "input_bn"), WIDTHS[0], "stem")
    for stage, width in enumerate(WIDTHS):
        for block in range(BLOCKS):
            name, strides = f"s{stage}b{block}", 2 if stage and not block else 1
            y = conv_bn(conv_bn(h, width, f"{name}a", strides), width, f"{name}b", relu=False)
            same = strides == 1 and h.shape[0] == width
            shortcut = h if same else conv_bn(h, width, f"{name}s", strides, kernel=1, relu=False)
            h = ReLU()(Add()([shortcut, y]))
    logits = Dense(10, name="classifier")(GlobalAveragePooling2D()(h))
    return Model(images, Softmax()(logits), device=device, seed=seed, name="resnet")


def augmented(images: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """(n, 1, 28, 28) images each shifted by -2..2 pixels each way (zeros
    coming in) and flipped left-right half the time, drawn from (seed,
    epoch): the same images for every network trained with that seed."""
    rng = np.random.default_rng([seed, epoch])
    n, _, h, w = images.shape
    padded = np.pad(images, ((0, 0), (0, 0), (2, 2), (2, 2)))
    dy, dx = rng.integers(0, 5, n), rng.integers(0, 5, n)
    out = np.empty_like(images)
    for i in range(5):
        for j in range(5):
            chosen = (dy == i) & (dx == j)
            out[chosen] = padded[chosen, :, i : i + h, j : j + w]
    flipped = rng.random(n) < 0.5
    out[flipped] = out[flipped, :, :, ::-1]
    return out


def prepare(images: np.ndarray, mean: float, std: float, model: str) -> np.ndarray:
    """uint8 images (n, 28, 28) -> float32: standardised rows (n, 784) for
    the MLP, standardised single-channel images (n, 1, 28, 28) for the CNN,
    and for the residual network those images in [0, 1] (it normalizes
    them itself)."""
    shape = (len(images), -1) if model == "mlp" else (len(images), 1, *images.shape[1:])
    scaled = images.reshape(shape).astype(np.float32) / 255
    return scaled if model == "resnet" else (scaled - mean) / std


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
    if args.test_limit:
        test_images, test_labels = test_images[: args.test_limit], test_labels[: args.test_limit]
    scaled = train_images.astype(np.float32) / 255
    mean, std = float(scaled.mean()), float(scaled.std())
    x_train, x_test = prepare(train_images, mean, std, args.model), prepare(test_images, mean, std, args.model)
    names = class_names(args.data)

    model = build_model(args)
    print(model)
    twin = torch_twin(model) if args.compare_torch else None  # before training: the same initial weights
    if twin is not None:
        print(f"the PyTorch twin's probabilities differ from the model's by {twin_difference(model, twin, x_test[:64]):.1e}"
              " at most (the same initial weights)")
    # the learning rate falls on a cosine from its start to 0 over the whole fit, step by step
    steps = args.epochs * -(-len(x_train) // args.batch_size)
    model.compile(optimizer=Adam(CosineDecay(args.learning_rate, decay_steps=steps)), loss=CategoricalCrossEntropy())
    history = train(model, args, x_train, train_labels, (x_test, test_labels))

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
    if twin is not None:
        theirs = train_torch(twin, args, x_train, train_labels, (x_test, test_labels))
        plots.append(write_comparison(args.out, history, theirs, model.device.kind))
    print("\nwrote " + ", ".join(str(p) for p in plots))
    return 0


def train(model: Model, args, x, labels, test) -> dict[str, list[float]]:
    """Fit ``model`` (compiled) for args.epochs: at once, or for the
    residual network a fit per epoch on newly augmented images. The
    history of every epoch, with the seconds each took (its test
    evaluation included)."""
    merged: dict[str, list[float]] = {"seconds": []}
    chunks = [(0, args.epochs)] if args.model != "resnet" else [(e, e + 1) for e in range(args.epochs)]
    for first, last in chunks:
        images = x
        if args.model == "resnet":
            print(f"epoch {first + 1} of {args.epochs}, on newly shifted and flipped images:")
            images = augmented(x, args.seed, first)
        start = time.perf_counter()
        history = model.fit(images, labels, epochs=last, initial_epoch=first, batch_size=args.batch_size,
                            validation_data=test, verbose=1)
        seconds = (time.perf_counter() - start) / max(1, len(history.epoch))
        for key, values in history.history.items():
            merged.setdefault(key, []).extend(values)
        merged["seconds"] += [seconds] * len(history.epoch)
        if history.stop_reason:
            print(history.stop_reason)
            break
    return merged


# ---------------------------------------------------------------- PyTorch
def torch_twin(model: Model):
    """The residual network in PyTorch, its modules by our layers' names,
    holding our model's current weights."""
    import torch

    nn = torch.nn
    modules = nn.ModuleDict()
    for layer in model.layers:
        if isinstance(layer, Conv2D):
            module = nn.Conv2d(layer.input_shape[0], layer.filters, layer.kernel_size, layer.strides,
                               padding=layer.padding, bias=False)
            module.weight.data = torch.from_numpy(layer.weights.copy())
        elif isinstance(layer, BatchNormalization):
            module = nn.BatchNorm2d(layer.channels, eps=layer.epsilon, momentum=1 - layer.momentum)
            for name, value in (("weight", layer.gamma), ("bias", layer.beta), ("running_mean", layer.moving_mean),
                                ("running_var", layer.moving_variance)):
                getattr(module, name).data = torch.from_numpy(value.copy())
        elif isinstance(layer, Dense):
            module = nn.Linear(layer.input_shape[0], layer.units)
            module.weight.data, module.bias.data = torch.from_numpy(layer.weights.T.copy()), \
                torch.from_numpy(layer.biases.copy())
        else:
            continue
        modules[layer.name] = module
    modules.eval()  # the moving statistics, until training starts

    def conv_bn(x, name: str, relu: bool = True):
        x = modules[f"{name}_bn"](modules[f"{name}_conv"](x))
        return torch.relu(x) if relu else x

    def forward(images):
        """Logits, as residual_network computes them (its Softmax is in the loss)."""
        h = conv_bn(modules["input_bn"](images), "stem")
        for stage, width in enumerate(WIDTHS):
            for block in range(BLOCKS):
                name = f"s{stage}b{block}"
                y = conv_bn(conv_bn(h, f"{name}a"), f"{name}b", relu=False)
                h = torch.relu(y + (modules[f"{name}s_bn"](modules[f"{name}s_conv"](h)) if f"{name}s_conv" in modules
                                    else h))
        return modules["classifier"](h.mean(dim=(2, 3)))

    return modules, forward


def twin_difference(model: Model, twin, images: np.ndarray) -> float:
    """The largest difference between the model's and its twin's class
    probabilities on ``images``, in inference: how faithful the twin is."""
    import torch

    with torch.no_grad():
        theirs = torch.softmax(twin[1](torch.from_numpy(images)), dim=1).numpy()
    return float(np.abs(model.predict(images) - theirs).max())


def train_torch(twin, args, x, labels, test) -> dict[str, list[float]]:
    """The same recipe in PyTorch: the same augmented images each epoch,
    batch size, Adam and per-step cosine decay; test accuracy and seconds
    per epoch (its test evaluation included)."""
    import torch

    modules, forward = twin
    torch.manual_seed(args.seed)
    steps = args.epochs * -(-len(x) // args.batch_size)
    optimizer = torch.optim.Adam(modules.parameters(), args.learning_rate, eps=1e-8)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    targets, test_images = torch.from_numpy(labels.astype(np.int64)), torch.from_numpy(test[0])
    result: dict[str, list[float]] = {"val_accuracy": [], "seconds": []}
    for epoch in range(args.epochs):
        images = torch.from_numpy(augmented(x, args.seed, epoch))
        start = time.perf_counter()  # as ours: the augmentation aside, the test evaluation in
        modules.train()
        for batch in torch.randperm(len(x)).split(args.batch_size):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(forward(images[batch]), targets[batch]).backward()
            optimizer.step()
            schedule.step()
        modules.eval()
        with torch.no_grad():
            predicted = torch.cat([forward(chunk).argmax(1) for chunk in test_images.split(1000)]).numpy()
        result["val_accuracy"].append(float(np.mean(predicted == test[1])))
        result["seconds"].append(time.perf_counter() - start)
        print(f"PyTorch (CPU) epoch {epoch + 1}/{args.epochs}: test accuracy {result['val_accuracy'][-1]:.4f}, "
              f"{result['seconds'][-1]:.1f} s")
    return result


def write_comparison(out: Path, ours: dict, theirs: dict, device: str) -> Path:
    """Both networks' test accuracy and seconds per epoch (ours on
    ``device``, PyTorch's on the CPU), printed and as comparison.json."""
    print(f"\ntest accuracy and seconds per epoch, intricate-py on the {device}, PyTorch on the CPU:")
    print(f"{'epoch':>5} {'intricate-py':>13} {'PyTorch':>8} {'s/epoch':>8} {'PyTorch':>8}")
    for e, (a, b, s, t) in enumerate(zip(ours["val_accuracy"], theirs["val_accuracy"], ours["seconds"],
                                         theirs["seconds"])):
        print(f"{e + 1:>5} {a:13.4f} {b:8.4f} {s:8.1f} {t:8.1f}")
    ratio = float(np.median(ours["seconds"]) / np.median(theirs["seconds"]))
    print(f"median time per epoch: intricate-py ({device}) / PyTorch (CPU) = {ratio:.2f}")
    path = out / "comparison.json"
    path.write_text(json.dumps({"device": device, "intricate-py": {k: ours[k] for k in ("val_accuracy", "seconds")},
                                "pytorch": theirs, "time_ratio": ratio}, indent=1))
    return path


def per_class_table(labels: np.ndarray, predicted: np.ndarray, names: list[str]) -> str:
    lines = [f"{'class':<13} {'accuracy':>8}  {'images':>6}"]
    for k, name in enumerate(names):
        mine = labels == k
        lines.append(f"{name:<13} {np.mean(predicted[mine] == k):8.4f}  {mine.sum():6d}")
    lines.append(f"{'all':<13} {np.mean(predicted == labels):8.4f}  {len(labels):6d}")
    return "\n".join(lines)


def write_plots(out: Path, history: dict[str, list[float]], labels, predicted, images, names) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = history
    epochs = list(range(1, len(h["loss"]) + 1))
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
