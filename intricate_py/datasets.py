"""MNIST-format datasets: the IDX file reader and the Fashion-MNIST loader.

Debian's ``dataset-fashion-mnist`` package installs the four IDX files in
:data:`FASHION_MNIST`; any folder holding ``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
``t10k-labels-idx1-ubyte`` (each raw or ``.gz``) loads the same way, the
original MNIST digits included.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from .saving import FormatError

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_PACKAGE = "dataset-fashion-mnist"
#: what to tell a user whose data is missing (the examples print it)
MISSING_DATA_ADVICE = (f"Install the data with 'apt-get install {DEBIAN_PACKAGE}', or point --data at "
                       "a folder of MNIST-format IDX files.")

FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

# IDX type codes: element dtype (big-endian in the file)
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (raw or gzip) as an array of its declared shape and type.

    The header is two zero bytes, a type code, the number of dimensions and
    one big-endian uint32 size a dimension; the data must fill exactly the
    declared shape. Anything else raises FormatError naming the file.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as error:
            raise FormatError(f"{path}: a damaged gzip file ({error})") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00":
        raise FormatError(f"{path}: not an IDX file (its magic number does not start with two zero bytes)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_TYPES:
        raise FormatError(f"{path}: unknown IDX element type 0x{code:02x}")
    if ndim == 0:
        raise FormatError(f"{path}: an IDX file of 0 dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise FormatError(f"{path}: the header declares {ndim} dimensions but the file ends at byte {len(raw)}")
    shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", ndim, 4))
    dtype = np.dtype(_IDX_TYPES[code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise FormatError(
            f"{path}: the header declares shape {shape} ({expected:,} bytes of data) "
            f"but the file holds {len(raw) - header:,}"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder}: no {stem} or {stem}.gz")


def load_mnist(folder: str | os.PathLike) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``((x_train, y_train), (x_test, y_test))`` from an MNIST-format folder:
    images as uint8 (n, rows, cols), labels as uint8 (n,)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no such folder: {folder}")
    parts = []
    for prefix in ("train", "t10k"):
        images_path = _find(folder, f"{prefix}-images-idx3-ubyte")
        labels_path = _find(folder, f"{prefix}-labels-idx1-ubyte")
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise FormatError(f"{images_path}: expected uint8 images (n, rows, cols). Received: "
                              f"{images.dtype} of shape {images.shape}")
        if labels.ndim != 1 or len(labels) != len(images):
            raise FormatError(f"{labels_path}: expected {len(images)} labels for {images_path.name}. "
                              f"Received: shape {labels.shape}")
        parts.append((images, labels.astype(np.uint8)))
    return parts[0], parts[1]


def load_fashion_mnist(folder: str | os.PathLike = FASHION_MNIST):
    """Fashion-MNIST (60000 training and 10000 test images of 28 × 28), as
    :func:`load_mnist` gives it; FileNotFoundError naming the Debian package
    when the folder is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"no Fashion-MNIST in {folder}: install Debian's {DEBIAN_PACKAGE} package "
            f"(apt-get install {DEBIAN_PACKAGE}) or give an MNIST-format folder"
        )
    return load_mnist(folder)
