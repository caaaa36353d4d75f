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
import zlib
from pathlib import Path
from typing import BinaryIO

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


#: Bytes read at a time: a file is read in pieces, never beyond what its
#: header declares (and one byte more, to see that nothing follows).
CHUNK = 1 << 20


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (raw or gzip) as an array of its declared shape and type.

    The header is two zero bytes, a type code, the number of dimensions and
    one big-endian uint32 size a dimension; the data must fill exactly the
    declared shape. Anything else raises FormatError naming the file. The
    data is read (a gzip inflated) a piece at a time and no further than the
    header declares, so that a small file that inflates to gigabytes costs
    no more memory than its declared shape.
    """
    path = Path(path)
    with open(path, "rb") as raw:
        if raw.read(2) != b"\x1f\x8b":
            raw.seek(0)
            return _read_idx(raw, path)
        raw.seek(0)
        try:
            with gzip.GzipFile(fileobj=raw) as inflated:
                return _read_idx(inflated, path)
        except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
            raise FormatError(f"{path}: a damaged gzip file ({error})") from None


def _read_idx(f: BinaryIO, path: Path) -> np.ndarray:
    """The array of the IDX file open as ``f`` (raw or inflated)."""
    head = _read_up_to(f, 4)
    if len(head) < 4 or head[:2] != b"\x00\x00":
        raise FormatError(f"{path}: not an IDX file (its magic number does not start with two zero bytes)")
    code, ndim = head[2], head[3]
    if code not in _IDX_TYPES:
        raise FormatError(f"{path}: unknown IDX element type 0x{code:02x}")
    if ndim == 0:
        raise FormatError(f"{path}: an IDX file of 0 dimensions")
    sizes = _read_up_to(f, 4 * ndim)
    if len(sizes) < 4 * ndim:
        raise FormatError(f"{path}: the header declares {ndim} dimensions but the file ends at byte "
                          f"{4 + len(sizes)}")
    shape = tuple(int(s) for s in np.frombuffer(sizes, ">u4", ndim))
    dtype = np.dtype(_IDX_TYPES[code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    data = _read_up_to(f, expected + 1)
    if len(data) != expected:
        held = "more" if len(data) > expected else f"{len(data):,}"
        raise FormatError(
            f"{path}: the header declares shape {shape} ({expected:,} bytes of data) but the file holds {held}"
        )
    return np.frombuffer(data, dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _read_up_to(f: BinaryIO, count: int) -> bytearray:
    """The next ``count`` bytes of ``f``, fewer where it ends first, read
    ``CHUNK`` at a time (nothing is allocated for bytes that are not there)."""
    data = bytearray()
    while len(data) < count:
        piece = f.read(min(CHUNK, count - len(data)))
        if not piece:
            break
        data += piece
    return data


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder}: no {stem} or {stem}.gz")


def load_mnist(folder: str | os.PathLike) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``((x_train, y_train), (x_test, y_test))`` from an MNIST-format folder:
    images as uint8 (n, rows, cols), labels as uint8 (n,): FormatError for
    labels that are not whole numbers from 0 to 255, whatever their type."""
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
        parts.append((images, _labels(labels, labels_path)))
    return parts[0], parts[1]


def _labels(labels: np.ndarray, path: Path) -> np.ndarray:
    """``labels`` as uint8; FormatError naming the first that is not a whole
    number from 0 to 255 (a cast would turn 259 into 3, -1 into 255 and 3.7
    into 3)."""
    fits = (labels >= 0) & (labels <= 255)
    if labels.dtype.kind == "f":
        fits &= labels == np.floor(labels)
    if not fits.all():
        k = int(np.argmin(fits))
        raise FormatError(f"{path}: expected labels that are whole numbers from 0 to 255. Received: "
                          f"{labels[k]} at index {k}")
    return labels.astype(np.uint8)


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
