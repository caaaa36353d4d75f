"""The IDX reader and the MNIST-format loader, with malformed files."""

import gzip
import struct
import tracemalloc

import numpy as np
import pytest

from intricate_py import FormatError
from intricate_py.datasets import load_fashion_mnist, load_mnist, read_idx

IDX_DTYPES = {0x09: ">i1", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_mnist(folder, n_train=12, n_test=5, gz=True):
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, array in files.items():
        data = idx_bytes(array)
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return files


@pytest.mark.parametrize("gz", [False, True])
def test_reads_raw_and_gzip(tmp_path, gz):
    files = write_mnist(tmp_path, gz=gz)
    (x_train, y_train), (x_test, y_test) = load_mnist(tmp_path)
    np.testing.assert_array_equal(x_train, files["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(y_test, files["t10k-labels-idx1-ubyte"])
    assert x_train.dtype == np.uint8 and x_test.shape == (5, 28, 28)


@pytest.mark.parametrize("code, dtype", [(0x0B, ">i2"), (0x0C, ">i4"), (0x0D, ">f4"), (0x0E, ">f8")])
def test_other_element_types_are_big_endian(tmp_path, code, dtype):
    array = np.arange(-6, 6).reshape(3, 4).astype(dtype)
    (tmp_path / "a.idx").write_bytes(idx_bytes(array, code))
    got = read_idx(tmp_path / "a.idx")
    np.testing.assert_array_equal(got, array)
    assert got.dtype.isnative


@pytest.mark.parametrize(
    "data, match",
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x02ab", "magic number"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x02ab", "unknown IDX element type 0x07"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02", "declares 3 dimensions but the file ends"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05abc", r"shape \(5,\) \(5 bytes of data\) but the file holds 3"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x02abcd", r"\(2 bytes of data\) but the file holds more"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00", "magic number"),
        (b"\x1f\x8b\x08\x00garbage", "damaged gzip"),
    ],
    ids=["magic", "type", "short-header", "short-data", "long-data", "no-dims", "tiny", "gzip"],
)
def test_malformed_files_raise_format_error_naming_the_file(tmp_path, data, match):
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(data)
    with pytest.raises(FormatError, match=match) as error:
        read_idx(path)
    assert "bad-idx3-ubyte" in str(error.value)


def test_labels_must_match_images(tmp_path):
    write_mnist(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(FormatError, match="expected 5 labels"):
        load_mnist(tmp_path)


def test_images_must_be_three_dimensional_bytes(tmp_path):
    write_mnist(tmp_path, gz=False)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((12, 784), np.uint8)))
    with pytest.raises(FormatError, match=r"uint8 images \(n, rows, cols\)"):
        load_mnist(tmp_path)


def test_missing_files_and_folders(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path / "nowhere")


def test_a_gzip_that_inflates_far_beyond_its_header_costs_no_memory(tmp_path):
    """Issue 26 item 12: 256 MiB of zeros after a header declaring 10
    labels, in a file of a few hundred kilobytes (gzip members, one after
    the other): refused after reading 11 bytes of data."""
    member = gzip.compress(bytes(1 << 20), compresslevel=9)
    path = tmp_path / "bomb-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros(10, np.uint8))) + member * 256)
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match=r"\(10 bytes of data\) but the file holds more"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


@pytest.mark.parametrize("labels, code, shown", [
    (np.array([1, 259, 2, 3, 4]), 0x0C, "259 at index 1"),
    (np.array([1, 2, -1, 3, 4]), 0x09, "-1 at index 2"),
    (np.array([1, 2, 3, 3.7, 4]), 0x0E, "3.7 at index 3"),
    (np.array([1, 2, 3, 4, np.nan]), 0x0D, "nan at index 4"),
], ids=["259", "-1", "3.7", "nan"])
def test_labels_that_do_not_fit_a_byte_are_refused(tmp_path, labels, code, shown):
    """Issue 26 item 12: astype(uint8) would make 259 a 3, -1 a 255, 3.7 a 3."""
    write_mnist(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels.astype(IDX_DTYPES[code]), code))
    with pytest.raises(FormatError, match=f"t10k-labels-idx1-ubyte: expected labels that are whole numbers from 0 "
                                          f"to 255. Received: {shown}"):
        load_mnist(tmp_path)


def test_labels_of_other_types_that_fit_a_byte_load(tmp_path):
    files = write_mnist(tmp_path, gz=False)
    wide = files["t10k-labels-idx1-ubyte"].astype(np.float64)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(wide, 0x0E))
    (_, _), (_, y_test) = load_mnist(tmp_path)
    assert y_test.dtype == np.uint8
    np.testing.assert_array_equal(y_test, files["t10k-labels-idx1-ubyte"])
