import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from iwlab.data import mnist as M
from iwlab.data.download import RESOURCES, ChecksumError, md5sum


@pytest.fixture
def arrays():
    return M.make_fixture(n_train=30, n_test=10, seed=3)


def test_fixture_shapes_and_dtypes(arrays):
    assert arrays.x_train.shape == (30, 28, 28) and arrays.x_train.dtype == np.uint8
    assert arrays.y_train.shape == (30,) and arrays.y_train.dtype == np.int64
    assert set(arrays.y_test.tolist()) <= set(range(10))
    assert np.array_equal(M.make_fixture(30, 10, seed=3).x_train, arrays.x_train)


@pytest.mark.parametrize("gz", [True, False])
def test_write_read_round_trip(tmp_path, arrays, gz):
    d = M.write_mnist_idx(tmp_path / "mnist", arrays, gzip=gz)
    raw = (d / M.FILES["x_train"]).read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == gz
    got = M.read_mnist_dir(d)
    for k in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(getattr(got, k), getattr(arrays, k)) and getattr(got, k).dtype == getattr(arrays, k).dtype
    got2 = M.load_mnist(tmp_path, verify=False)  # root -> root/mnist, no md5 check
    assert np.array_equal(got2.x_test, arrays.x_test)


def test_reads_hand_written_idx_header(tmp_path):
    # canonical layout written by hand: magic 0x00000803, then N, 28, 28 big-endian, then pixels
    d = tmp_path / "mnist"
    d.mkdir()
    x = np.arange(2 * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(2, 28, 28)
    (d / M.FILES["x_train"]).write_bytes(gzip.compress(struct.pack(">IIII", 0x803, 2, 28, 28) + x.tobytes()))
    (d / M.FILES["y_train"]).write_bytes(gzip.compress(struct.pack(">II", 0x801, 2) + bytes([7, 3])))
    (d / M.FILES["x_test"]).write_bytes(gzip.compress(struct.pack(">IIII", 0x803, 1, 28, 28) + x[:1].tobytes()))
    (d / M.FILES["y_test"]).write_bytes(gzip.compress(struct.pack(">II", 0x801, 1) + bytes([9])))
    got = M.read_mnist_dir(d)
    assert np.array_equal(got.x_train, x) and got.y_train.tolist() == [7, 3] and got.y_test.tolist() == [9]


def test_checksum_failure_names_the_file(tmp_path, arrays):
    M.write_mnist_idx(tmp_path / "mnist", arrays)
    with pytest.raises(ChecksumError, match="train-images-idx3-ubyte.gz"):
        M.load_mnist(tmp_path)


def test_missing_file_names_it(tmp_path, arrays):
    d = M.write_mnist_idx(tmp_path / "mnist", arrays)
    (d / M.FILES["y_test"]).unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.gz"):
        M.load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.gz"):
        M.load_mnist(tmp_path, verify=False)


def test_truncated_file_is_a_clear_error(tmp_path, arrays):
    d = M.write_mnist_idx(tmp_path / "mnist", arrays, gzip=False)
    raw = (d / M.FILES["x_test"]).read_bytes()
    (d / M.FILES["x_test"]).write_bytes(raw[:1000])
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz is truncated"):
        M.read_mnist_dir(d)


def test_label_count_mismatch(tmp_path, arrays):
    arrays.y_test = arrays.y_test[:-1]
    d = M.write_mnist_idx(tmp_path / "mnist", arrays)
    with pytest.raises(ValueError, match="10 images but 9 labels"):
        M.read_mnist_dir(d)


def test_to_tensor_matches_formula(arrays):
    t = M.to_tensor(arrays.x_train)
    assert t.shape == (30, 1, 28, 28) and t.dtype == torch.float32
    i, h, w = 4, 10, 13
    assert t[i, 0, h, w].item() == pytest.approx((arrays.x_train[i, h, w] / 255.0 - 0.1307) / 0.3081, rel=1e-5)
    assert torch.equal(M.to_tensor(torch.from_numpy(arrays.x_train)), t)


def test_registered_md5_and_sizes_are_the_canonical_ones():
    got = {r.filename: (r.md5, r.size) for r in RESOURCES["mnist"]}
    assert got == {
        "train-images-idx3-ubyte.gz": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", 9912422),
        "train-labels-idx1-ubyte.gz": ("d53e105ee54ea40749a09fcbcd1e9432", 28881),
        "t10k-images-idx3-ubyte.gz": ("9fb629c4189551a2d022fa330f9573f3", 1648877),
        "t10k-labels-idx1-ubyte.gz": ("ec29112dd5afa0611ce80d1b7f02629c", 4542),
    }


@pytest.mark.skipif(
    not (Path(os.environ.get("IWLAB_DATA", "/nonexistent")) / "mnist").is_dir(), reason="real MNIST absent"
)
def test_real_mnist():
    folder = Path(os.environ["IWLAB_DATA"]) / "mnist"
    for r in RESOURCES["mnist"]:
        assert md5sum(folder / r.filename) == r.md5
    a = M.load_mnist()
    assert a.x_train.shape == (60000, 28, 28) and a.x_test.shape == (10000, 28, 28)
    assert a.y_train[:5].tolist() == [5, 0, 4, 1, 9]
    assert (a.x_train / 255.0).mean() == pytest.approx(M.MEAN, abs=1e-4)
    assert (a.x_train / 255.0).std() == pytest.approx(M.STD, abs=1e-4)


# -- item 5 / 15: MNIST files are validated (labels 0..9, (N, 28, 28) uint8), errors name the file -----


def test_label_count_mismatch_names_both_files(tmp_path, arrays):
    arrays.y_test = arrays.y_test[:-1]
    d = M.write_mnist_idx(tmp_path / "mnist", arrays)
    with pytest.raises(ValueError) as e:
        M.read_mnist_dir(d)
    msg = str(e.value)
    assert "\n" not in msg and str(d / M.FILES["x_test"]) in msg and str(d / M.FILES["y_test"]) in msg


def test_labels_outside_0_to_9_are_refused_naming_the_file(tmp_path, arrays):
    arrays.y_train = arrays.y_train.copy()
    arrays.y_train[4] = 10  # fits the IDX unsigned byte, but is no digit; old: accepted
    d = M.write_mnist_idx(tmp_path / "mnist", arrays)
    with pytest.raises(ValueError) as e:
        M.read_mnist_dir(d)
    msg = str(e.value)
    assert "\n" not in msg and str(d / M.FILES["y_train"]) in msg and "labels must be digits 0..9" in msg


def test_images_other_than_28x28_are_refused_naming_the_file(tmp_path, arrays):
    d = M.write_mnist_idx(tmp_path / "mnist", arrays)
    x = np.zeros((10, 32, 32), np.uint8)  # e.g. a padded copy; old: accepted any (N, H, W)
    (d / M.FILES["x_test"]).write_bytes(gzip.compress(struct.pack(">IIII", 0x803, 10, 32, 32) + x.tobytes()))
    with pytest.raises(ValueError) as e:
        M.read_mnist_dir(d)
    msg = str(e.value)
    assert str(d / M.FILES["x_test"]) in msg and "expected uint8 images (N, 28, 28), got uint8 (10, 32, 32)" in msg


def test_corrupt_gzip_names_the_file(tmp_path, arrays):
    d = M.write_mnist_idx(tmp_path / "mnist", arrays)
    p = d / M.FILES["y_test"]
    raw = p.read_bytes()
    # flip every byte of the deflate stream in turn: old code let zlib.error (no file name) escape for some
    for pos in range(10, len(raw) - 8):
        b = bytearray(raw)
        b[pos] ^= 0xFF
        p.write_bytes(bytes(b))
        with pytest.raises(ValueError) as e:
            M.read_mnist_dir(d)
        assert "\n" not in str(e.value) and str(p) in str(e.value), pos


def test_write_mnist_idx_refuses_silent_casts(tmp_path, arrays):
    floats = M.MnistArrays(arrays.x_train / 255.0, arrays.y_train, arrays.x_test, arrays.y_test)
    with pytest.raises(ValueError, match=r"arrays\.x_train has dtype float64; expected uint8"):
        M.write_mnist_idx(tmp_path, floats)  # old: cast to uint8, i.e. all-black images
    frac = M.MnistArrays(arrays.x_train, arrays.y_train + 0.7, arrays.x_test, arrays.y_test)
    with pytest.raises(ValueError, match=r"arrays\.y_train must be 1-D integers, got float64"):
        M.write_mnist_idx(tmp_path, frac)  # old: 3.7 written as 3
    assert not any(tmp_path.iterdir())


def test_to_tensor_refuses_float_images():
    x = np.full((1, 28, 28), 0.5, np.float32)  # already in [0, 1]: old code divided by 255 again
    with pytest.raises(ValueError, match="to_tensor: x has dtype torch.float32; expected uint8"):
        M.to_tensor(x)
    with pytest.raises(ValueError, match="expected uint8"):
        M.to_tensor(torch.zeros(1, 28, 28, dtype=torch.int64))
