"""Darknet's own files: networks from .cfg files, weights from .weights files,
against a PyTorch reference written here from Darknet's definitions
(its layers, its weight order, its inference normalization)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from intricate_py import FormatError, darknet

torch = pytest.importorskip("torch")
F = torch.nn.functional

SMALL = """
# a small network with every section the loader reads
[net]
width=12
height=8
channels=3
batch=64          # training settings are accepted and ignored

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=mish

[convolutional]
batch_normalize=1
filters=8
size=1
stride=1
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky

[shortcut]
from=-3
activation=linear

[maxpool]
size=2
stride=2

[upsample]
stride=2

[route]
layers=-1,-3

[convolutional]
filters=6
size=1
stride=1
pad=1
activation=logistic

[avgpool]

[connected]
output=5
activation=relu

[connected]
batch_normalize=1
output=4
activation=linear

[softmax]
groups=1
"""


def write_cfg(tmp_path: Path, text: str, name: str = "net.cfg") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------- Darknet, in PyTorch
def shapes_of(sections) -> list[list[tuple[str, tuple[int, ...]]]]:
    """Per weighted layer, the (name, shape) of each array in Darknet's file order."""
    net = sections[0].options
    c, h, w = int(net["channels"]), int(net["height"]), int(net["width"])
    sizes, arrays = [], []  # (c, h, w) after each layer
    for s in sections[1:]:
        o = s.options
        if s.name == "convolutional":
            n, k, st = int(o["filters"]), int(o["size"]), int(o.get("stride", 1))
            pad = k // 2 if int(o.get("pad", 0)) else int(o.get("padding", 0))
            bn = [("scales", (n,)), ("mean", (n,)), ("variance", (n,))] if o.get("batch_normalize") == "1" else []
            arrays.append([("biases", (n,)), *bn, ("weights", (n, c, k, k))])
            c, h, w = n, (h + 2 * pad - k) // st + 1, (w + 2 * pad - k) // st + 1
        elif s.name == "connected":
            n = int(o["output"])
            bn = [("scales", (n,)), ("mean", (n,)), ("variance", (n,))] if o.get("batch_normalize") == "1" else []
            arrays.append([("biases", (n,)), ("weights", (n, c * h * w)), *bn])
            c, h, w = n, 1, 1
        elif s.name == "maxpool":
            st = int(o.get("stride", 1))
            k = int(o.get("size", st))
            h, w = (h + k - 1 - k) // st + 1, (w + k - 1 - k) // st + 1
        elif s.name == "avgpool":
            h, w = 1, 1
        elif s.name == "upsample":
            h, w = h * int(o["stride"]), w * int(o["stride"])
        elif s.name == "route":
            picks = [int(t) for t in o["layers"].split(",")]
            picked = [sizes[len(sizes) + i if i < 0 else i] for i in picks]
            c, h, w = sum(p[0] for p in picked), picked[0][1], picked[0][2]
        sizes.append((c, h, w))
    return arrays


def random_arrays(sections, seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    layers = []
    for arrays in shapes_of(sections):
        values = {}
        for name, shape in arrays:
            if name == "variance":
                values[name] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
            elif name == "weights":
                values[name] = (rng.normal(size=shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)
            else:
                values[name] = rng.normal(0, 0.5, shape).astype(np.float32)
        layers.append(values)
    return layers


def write_weights(path: Path, sections, layers, version=(0, 2, 0), seen=12345):
    """A .weights file as Darknet writes it."""
    major, minor, revision = version
    with open(path, "wb") as f:
        f.write(struct.pack("<3i", major, minor, revision))
        f.write(struct.pack("<Q" if (major * 10 + minor) >= 2 else "<I", seen))
        for arrays, values in zip(shapes_of(sections), layers):
            for name, _ in arrays:
                f.write(values[name].astype("<f4").tobytes())


def activate(x, kind: str):
    return {"linear": lambda v: v, "leaky": lambda v: F.leaky_relu(v, 0.1), "relu": F.relu,
            "logistic": torch.sigmoid, "tanh": torch.tanh,
            "mish": lambda v: v * torch.tanh(F.softplus(v))}[kind](x)


def normalize(x, v: dict, dims: int):
    """Darknet's inference normalization: (x - mean) / (sqrt(var) + 1e-6) · scale + bias."""
    shape = (1, -1) + (1,) * dims
    t = lambda a: torch.tensor(a, dtype=torch.float64).reshape(shape)  # noqa: E731
    return (x - t(v["mean"])) / (torch.sqrt(t(v["variance"])) + 1e-6) * t(v["scales"]) + t(v["biases"])


def reference(sections, layers, image: np.ndarray) -> np.ndarray:
    """The network run by PyTorch in float64, following Darknet's C code."""
    x = torch.tensor(image, dtype=torch.float64)
    outputs, weighted = [], iter(layers)
    for s in sections[1:]:
        o = s.options
        if s.name == "convolutional":
            v = next(weighted)
            k, st = int(o["size"]), int(o.get("stride", 1))
            pad = k // 2 if int(o.get("pad", 0)) else int(o.get("padding", 0))
            x = F.conv2d(x, torch.tensor(v["weights"], dtype=torch.float64), stride=st, padding=pad)
            if o.get("batch_normalize") == "1":
                x = normalize(x, v, 2)
            else:
                x = x + torch.tensor(v["biases"], dtype=torch.float64).reshape(1, -1, 1, 1)
            x = activate(x, o.get("activation", "linear"))
        elif s.name == "shortcut":
            i = int(o["from"])
            x = activate(x + outputs[len(outputs) + i if i < 0 else i], o.get("activation", "linear"))
        elif s.name == "maxpool":
            st = int(o.get("stride", 1))
            k = int(o.get("size", st))
            pad = k - 1
            x = F.max_pool2d(F.pad(x, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2), value=-np.inf), k, st)
        elif s.name == "avgpool":
            x = x.mean(dim=(2, 3), keepdim=True)
        elif s.name == "upsample":
            x = F.interpolate(x, scale_factor=int(o["stride"]), mode="nearest")
        elif s.name == "route":
            picks = [int(t) for t in o["layers"].split(",")]
            x = torch.cat([outputs[len(outputs) + i if i < 0 else i] for i in picks], dim=1)
        elif s.name == "connected":
            v = next(weighted)
            x = x.reshape(len(x), -1) @ torch.tensor(v["weights"], dtype=torch.float64).T
            if o.get("batch_normalize") == "1":
                x = normalize(x, v, 0)
            else:
                x = x + torch.tensor(v["biases"], dtype=torch.float64)
            x = activate(x, o.get("activation", "linear"))
        elif s.name == "softmax":
            x = torch.softmax(x.reshape(len(x), -1), dim=1)
        outputs.append(x)
    return x.numpy()


# ---------------------------------------------------------------- tests
@pytest.fixture
def small(tmp_path):
    cfg = write_cfg(tmp_path, SMALL)
    sections = darknet.parse_cfg(cfg)
    layers = random_arrays(sections, seed=0)
    weights = tmp_path / "net.weights"
    write_weights(weights, sections, layers)
    return cfg, weights, sections, layers


def test_a_small_network_computes_what_darknet_computes(small, device):
    cfg, weights, sections, layers = small
    model = darknet.load(cfg, weights, device=device)
    images = np.random.default_rng(1).random((3, 3, 8, 12)).astype(np.float32)
    np.testing.assert_allclose(model.predict(images), reference(sections, layers, images), rtol=1e-4, atol=1e-6)


def test_both_header_versions_are_read(small, tmp_path):
    cfg, _, sections, layers = small
    images = np.random.default_rng(2).random((2, 3, 8, 12)).astype(np.float32)
    want = reference(sections, layers, images)
    for version in ((0, 1, 0), (0, 2, 5), (1, 0, 0)):
        path = tmp_path / f"v{version}.weights"
        write_weights(path, sections, layers, version, seen=7)
        model, weighted = darknet.build(darknet.parse_cfg(cfg), device="cpu")
        assert darknet.read_weights(weighted, path) == {"major": version[0], "minor": version[1],
                                                         "revision": version[2], "seen": 7}
        np.testing.assert_allclose(model.predict(images), want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("change, message", [(-4, "fewer"), (4, "more"), (-(10**6), "too short")])
def test_a_weights_file_of_the_wrong_size_names_both_sizes(small, tmp_path, change, message):
    cfg, weights, _, _ = small
    data = weights.read_bytes()
    bad = tmp_path / "bad.weights"
    bad.write_bytes(data[:change] if change < 0 else data + b"\0" * change)
    model, weighted = darknet.build(darknet.parse_cfg(cfg), device="cpu")
    before = model.get_weights()
    size = len(bad.read_bytes())
    with pytest.raises(FormatError, match=rf"{size:,} bytes" if size >= 12 else "too short"):
        darknet.read_weights(weighted, bad)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_a_non_finite_weight_is_refused_before_anything_changes(small, tmp_path):
    cfg, weights, _, _ = small
    data = bytearray(weights.read_bytes())
    data[-4:] = struct.pack("<f", float("nan"))  # the last connected layer's last rolling variance
    bad = tmp_path / "nan.weights"
    bad.write_bytes(bytes(data))
    model, weighted = darknet.build(darknet.parse_cfg(cfg), device="cpu")
    before = model.get_weights()
    with pytest.raises(FormatError, match=r"NaN or infinite values \(1\), the first at float [\d,]+ after the "
                                          r"header \(\w+'s moving_variance, from the \[connected\] at line 68\); "
                                          "nothing was changed"):
        darknet.read_weights(weighted, bad)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_a_network_from_darknet_trains_on_a_batch_of_one(small):
    """Darknet's normalization keeps its 1e-6 in training: a batch of
    one sample (variance 0) gives finite losses, not a division by 0."""
    cfg, weights, _, _ = small
    model = darknet.load(cfg, weights, device="cpu", seed=0)
    rng = np.random.default_rng(3)
    history = model.fit(rng.random((5, 3, 8, 12)), rng.integers(0, 4, 5), loss="categorical_crossentropy",
                        optimizer="adam", epochs=2, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.parametrize("text, message", [
    ("[net]\nwidth=1\nheight=1\nchannels=4\n[softmax]\ngroups=2\n", r"line 5: groups=2 in \[softmax\]"),
    ("[net]\nwidth=1\nheight=1\nchannels=4\n[softmax]\ntemperature=3\n", r"line 5: temperature=3 in \[softmax\]"),
    ("[net]\nwidth=8\nheight=8\n[yolo]\n", r"line 4: unknown section \[yolo\]"),
    ("[net]\nwidth=8\nheight=8\n[convolutional]\nfilters=2\nsize=3\nxnor=1\n", r"line 7: unknown key 'xnor' in \[convolutional\]"),
    ("[net]\nwidth=8\nheight=8\n[convolutional]\nfilters=two\n", r"line 4: expected an integer for filters"),
    ("[net]\nwidth=8\nheight=8\n[convolutional]\nfilters=2\nactivation=swish\n", "line 4: activation=swish"),
    ("[net]\nwidth=8\nheight=8\n[shortcut]\nfrom=-3\n", r"line 4: \[shortcut\] names layer -3"),
    ("[net]\nwidth=8\nheight=8\n[convolutional]\nfilters=2\nfilters=3\n", "line 6: 'filters' given twice"),
    ("width=8\n", "line 1: a key before the first section"),
    ("[convolutional]\nfilters=2\n", r"expected \[net\] as the first section"),
    ("[net]\nwidth=8\n", r"\[net\] needs height="),
])
def test_a_cfg_the_loader_cannot_read_names_the_line(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        darknet.load(write_cfg(tmp_path, text), device="cpu")


def test_darknet53_as_shipped():
    """The cfg this package ships is the published Darknet-53: 53
    convolutions (52 normalized, LeakyReLU 0.1), five of stride 2, 23
    shortcuts, a global average pool and a 1000-way output."""
    sections = darknet.parse_cfg(darknet.DARKNET53)
    convs = [s for s in sections if s.name == "convolutional"]
    assert len(convs) == 53 and sum(s.options.get("batch_normalize") == "1" for s in convs) == 52
    assert sum(s.options["stride"] == "2" for s in convs) == 5
    assert sum(s.name == "shortcut" for s in sections) == 23
    model, weighted = darknet.build(sections, device="cpu")
    assert model.input_shape == (3, 256, 256) and model.output_shape == (1000,)
    # every array of the weights file trains but the moving statistics: 41.6 million, as published
    trained = sum(int(np.prod(shape)) for arrays in shapes_of(sections) for name, shape in arrays
                  if name not in ("mean", "variance"))
    assert sum(p.value.size for p in model.parameters) == trained == 41_609_928


@pytest.mark.slow
def test_darknet53_computes_what_darknet_computes(tmp_path, capsys):
    """The full network once, at its 256 × 256 input, on the CPU; then the
    example classifies a picture with the same weights file."""
    sections = darknet.parse_cfg(darknet.DARKNET53)
    layers = random_arrays(sections, seed=3)
    weights = tmp_path / "darknet53.weights"
    write_weights(weights, sections, layers)
    model = darknet.load(darknet.DARKNET53, weights, device="cpu")
    image = np.random.default_rng(4).random((1, 3, 256, 256)).astype(np.float32)
    want = reference(sections, layers, image)
    np.testing.assert_allclose(model.predict(image), want, rtol=1e-4, atol=1e-9)

    from PIL import Image

    from test_examples import load_example

    picture = tmp_path / "picture.png"  # 320 × 256: the example scales its short side to 256, cuts the middle
    pixels = np.zeros((256, 320, 3), np.uint8)
    pixels[:, 32:288] = np.round(image[0].transpose(1, 2, 0) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(picture)
    assert load_example("darknet").main([str(picture), "--weights", str(weights), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    shown = np.round(np.asarray(Image.open(picture).convert("RGB"), np.float32)[:, 32:288] / 255, 6)
    top = np.argsort(reference(sections, layers, shown.transpose(2, 0, 1)[None])[0])[::-1][:5]
    assert [int(line.split()[2]) for line in lines[1:6]] == top.tolist()
