"""Darknet-53, the ImageNet classifier of YOLOv3's authors, from Darknet's own
files: the top-5 classes of an image, and the time per image.

    python examples/darknet/main.py IMAGE --weights darknet53.weights [--device auto|cpu|gpu]
    python examples/darknet/main.py --random-weights [--images 8] [--device ...]

The network comes from intricate_py's own darknet53.cfg (256 × 256 inputs);
the weights are Darknet's darknet53.weights, which the project does not
download or ship (see examples/darknet/README.md for where to get them).
IMAGE is read with Pillow, scaled so that its short side is 256, centre-
cropped to 256 × 256, and given as RGB in [0, 1], channels first, as
Darknet's classifier takes it. The top-5 are printed as ImageNet class
indices (0-999, Darknet's imagenet.shortnames.list order) with their
probabilities.

Without weights, --random-weights runs the same network with random
weights to show its speed: images per second on the chosen device, and on
PyTorch CPU running the same network, when torch is installed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from intricate_py import darknet

SIDE = 256


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", type=Path, nargs="?", help="an image file (any format Pillow reads)")
    parser.add_argument("--weights", type=Path, help="Darknet's darknet53.weights")
    parser.add_argument("--random-weights", action="store_true", help="time the network with random weights")
    parser.add_argument("--images", type=int, default=4, help="images per timing batch (--random-weights)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"])
    args = parser.parse_args(argv)
    if args.random_weights == (args.weights is not None):
        parser.error("give --weights (with an IMAGE) or --random-weights")
    if args.weights is not None and args.image is None:
        parser.error("--weights needs an IMAGE to classify")
    return args


def load_image(path: Path) -> np.ndarray:
    """(1, 3, 256, 256) float32 in [0, 1]: the short side scaled to 256, the centre cut."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        scale = SIDE / min(image.size)
        size = (max(SIDE, round(image.width * scale)), max(SIDE, round(image.height * scale)))
        image = image.resize(size, Image.BILINEAR)
        left, top = (size[0] - SIDE) // 2, (size[1] - SIDE) // 2
        image = image.crop((left, top, left + SIDE, top + SIDE))
        pixels = np.asarray(image, np.float32) / 255.0
    return pixels.transpose(2, 0, 1)[None]


def classify(args) -> None:
    model = darknet.load(darknet.DARKNET53, args.weights, device=args.device)
    image = load_image(args.image)
    model.predict(image)  # the first call compiles and records
    start = time.perf_counter()
    probabilities = model.predict(image)[0]
    seconds = time.perf_counter() - start
    print(f"{args.image} on {model.device.name}: {seconds * 1000:.0f} ms")
    for rank, index in enumerate(np.argsort(probabilities)[::-1][:5], start=1):
        print(f"  {rank}. class {index:4d}  {probabilities[index]:.4f}")


def seconds_per_batch(run, rounds: int = 3) -> float:
    run()  # warm
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def speed(args) -> None:
    images = np.random.default_rng(0).random((args.images, 3, SIDE, SIDE)).astype(np.float32)
    model = darknet.load(darknet.DARKNET53, device=args.device, seed=0)
    ours = seconds_per_batch(lambda: model.predict(images))
    print(f"Darknet-53, {args.images} images of 256 x 256, random weights")
    print(f"  intricate-py on {model.device.name}: {args.images / ours:.2f} images/s")
    try:
        import torch
    except ImportError:
        print("  PyTorch CPU: not installed")
        return
    net = torch_darknet(model)
    with torch.no_grad():
        x = torch.from_numpy(images)
        theirs = seconds_per_batch(lambda: net(x))
    print(f"  PyTorch {torch.__version__} CPU, {torch.get_num_threads()} threads: {args.images / theirs:.2f} images/s")


def torch_darknet(model):
    """The same network in PyTorch, with the model's weights, for the timing."""
    import torch

    modules = {}
    for node in model.plan.nodes:
        layer = node.layer
        kind = type(layer).__name__
        if kind == "Conv2D":
            state = layer.state_dict()
            conv = torch.nn.Conv2d(layer.input_shape[0], layer.filters, layer.kernel_size, layer.stride,
                                   layer.padding, bias="bias" in state)
            conv.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
            modules[layer.name] = conv
        elif kind == "BatchNormalization":
            norm = torch.nn.BatchNorm2d(len(layer.gamma), eps=layer.epsilon).eval()
            norm.weight.data, norm.bias.data = torch.from_numpy(layer.gamma), torch.from_numpy(layer.beta)
            norm.running_mean.data = torch.from_numpy(layer.moving_mean)
            norm.running_var.data = torch.from_numpy(layer.moving_variance)
            modules[layer.name] = norm
    network = torch.nn.ModuleDict(modules).eval()

    def run(x):
        values = {id(model.inputs[0]): x}
        for node in model.plan.nodes:
            layer, xs = node.layer, [values[id(s)] for s in node.inputs]
            kind = type(layer).__name__
            if layer.name in network:
                y = network[layer.name](xs[0])
            elif kind == "LeakyReLU":
                y = torch.nn.functional.leaky_relu(xs[0], layer.negative_slope)
            elif kind == "Add":
                y = xs[0] + xs[1]
            elif kind == "GlobalAveragePooling2D":
                y = xs[0].mean(dim=(2, 3), keepdim=True)
            elif kind == "Flatten":
                y = xs[0].flatten(1)
            elif kind == "Softmax":
                y = torch.softmax(xs[0], dim=1)
            else:
                raise ValueError(f"no PyTorch twin for {layer!r}")
            values[id(node.output)] = y
        return values[id(model.outputs[0])]

    return run


def main(argv=None) -> int:
    args = parse(argv)
    if args.random_weights:
        speed(args)
    else:
        classify(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
