import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from iwlab.data import cifar10 as C
from iwlab.data import cifar10_tasks as T
from iwlab.data.download import ChecksumError


def _canonical_batch(path, x, y):
    # written by hand in the documented layout: data (n, 3072) uint8 row-major R, G, B planes; labels list
    flat = np.concatenate([x[..., c].reshape(len(x), -1) for c in range(3)], axis=1)
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"x", b"labels": list(map(int, y)), b"data": flat, b"filenames": []}, f)


@pytest.fixture
def arrays():
    return C.make_fixture(n_train_per_class=6, n_test_per_class=3, seed=1)


def test_reads_canonical_batches_written_by_hand(tmp_path, arrays):
    d = tmp_path / "cifar10" / C.BATCH_DIR
    d.mkdir(parents=True)
    parts = np.array_split(np.arange(len(arrays.x_train)), 5)
    for i, idx in enumerate(parts, 1):
        _canonical_batch(d / f"data_batch_{i}", arrays.x_train[idx], arrays.y_train[idx])
    _canonical_batch(d / "test_batch", arrays.x_test, arrays.y_test)
    got = C.load_cifar10(tmp_path)
    assert np.array_equal(got.x_train, arrays.x_train) and np.array_equal(got.y_train, arrays.y_train)
    assert np.array_equal(got.x_test, arrays.x_test) and got.x_test.dtype == np.uint8


def test_write_then_read_round_trip(tmp_path, arrays):
    d = C.write_cifar_batches(tmp_path / "b", arrays)
    got = C.read_batches(d)
    assert np.array_equal(got.x_train, arrays.x_train) and np.array_equal(got.y_test, arrays.y_test)


def test_reads_npz(tmp_path, arrays):
    (tmp_path / "cifar10").mkdir()
    np.savez(tmp_path / "cifar10" / "cifar10.npz", **vars(arrays))
    got = C.load_cifar10(tmp_path)
    assert np.array_equal(got.x_train, arrays.x_train)


def test_tarball_with_wrong_checksum_is_refused(tmp_path, arrays):
    d = C.write_cifar_batches(tmp_path / "src" / C.BATCH_DIR, arrays)
    (tmp_path / "cifar10").mkdir()
    with tarfile.open(tmp_path / "cifar10" / C.TARBALL, "w:gz") as tar:
        tar.add(d, arcname=C.BATCH_DIR)
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        C.load_cifar10(tmp_path)


def test_truncated_batch_is_a_clear_error(tmp_path, arrays):
    d = C.write_cifar_batches(tmp_path / "cifar10" / C.BATCH_DIR, arrays)
    raw = (d / "test_batch").read_bytes()
    (d / "test_batch").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        C.load_cifar10(tmp_path)


def test_missing_data_names_the_env_var(tmp_path):
    with pytest.raises(FileNotFoundError, match="IWLAB_DATA"):
        C.load_cifar10(tmp_path)


def test_to_tensor_normalization_against_formula():
    x = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    t = C.to_tensor(x)
    i, c, h, w = 1, 2, 5, 7
    assert t[i, c, h, w].item() == pytest.approx((x[i, h, w, c] / 255.0 - C.MEAN[c]) / C.STD[c], rel=1e-5)
    t8 = C.to_tensor(x, size=8)  # 4x4 average pooling
    block = x[i, 8:12, 4:8, c].mean() / 255.0
    assert t8[i, c, 2, 1].item() == pytest.approx((block - C.MEAN[c]) / C.STD[c], rel=1e-5)
    with pytest.raises(ValueError, match="divide 32"):
        C.to_tensor(x, size=5)


# optional real-data check: $IWLAB_DATA, else the shared copy beside a checkout; skips when absent
_REAL = C.Path(os.environ.get("IWLAB_DATA") or C.Path(__file__).resolve().parents[3] / "shared" / "data")


@pytest.mark.skipif(not (_REAL / "cifar10" / "cifar10.npz").exists(), reason="real CIFAR-10 npz not available")
def test_shared_copy_channel_statistics():
    a = C.load_cifar10(_REAL)
    mean = a.x_train.reshape(-1, 3).mean(0) / 255.0
    assert np.allclose(mean, C.MEAN, atol=1e-3) and a.x_train.shape == (50000, 32, 32, 3)


def test_pickle_buffer_sanity():
    buf = io.BytesIO()
    pickle.dump({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0]}, buf)
    assert buf.getvalue()


# -- item 5 / 15: every CIFAR source validates dtype, shape, labels and names the file ---------------


def _save_npz(tmp_path, arrays, **override):
    (tmp_path / "cifar10").mkdir(exist_ok=True)
    p = tmp_path / "cifar10" / "cifar10.npz"
    np.savez(p, **{**vars(arrays), **override})
    return p


def _one_line_error(exc_info, *needles):
    msg = str(exc_info.value)
    assert "\n" not in msg, msg
    for n in needles:
        assert n in msg, (n, msg)
    return msg


def test_npz_float_images_in_unit_range_are_refused_not_rescaled(tmp_path, arrays):
    # old behaviour: accepted, then to_tensor divided by 255 a second time (near-black images)
    p = _save_npz(tmp_path, arrays, x_train=arrays.x_train.astype(np.float32) / 255.0)
    with pytest.raises(ValueError) as e:
        C.load_cifar10(tmp_path)
    _one_line_error(e, str(p), "'x_train'", "float32 images", "uint8", "(x * 255).round().astype(np.uint8)")


@pytest.mark.parametrize(
    ("key", "make", "needles"),
    [
        ("y_train", lambda y: y + 1, ["labels must be class indices 0..9, got range [1, 10]", "1-based"]),
        ("y_test", lambda y: y.astype(np.float64), ["float64 labels", "integer dtype"]),
        ("y_train", lambda y: np.eye(10, dtype=np.int64)[y], ["one-hot labels", "argmax"]),
        ("y_train", lambda y: y[:-1], ["59 labels for 60 images"]),
        ("y_test", lambda y: y - 1, ["got range [-1, 8]"]),
        ("y_test", lambda y: y.reshape(-1, 1), ["expected labels of shape (N,)"]),
    ],
    ids=["labels_1_to_10", "float_labels_integral", "one_hot", "y_shorter_than_x", "negative", "column"],
)
def test_npz_bad_labels_are_refused_naming_file_and_key(tmp_path, arrays, key, make, needles):
    p = _save_npz(tmp_path, arrays, **{key: make(getattr(arrays, key))})
    with pytest.raises(ValueError) as e:
        C.load_cifar10(tmp_path)
    _one_line_error(e, str(p), f"'{key}'", *needles)


def test_npz_channels_first_is_refused_with_transpose_hint(tmp_path, arrays):
    p = _save_npz(tmp_path, arrays, x_test=arrays.x_test.transpose(0, 3, 1, 2))
    with pytest.raises(ValueError) as e:
        C.load_cifar10(tmp_path)
    _one_line_error(e, str(p), "'x_test'", "channels-first", "x.transpose(0, 2, 3, 1)")


def test_npz_valid_odd_forms_read_back_equal(tmp_path, arrays):
    # uint8 / int32 labels are legal: read back as int64 with the same values
    _save_npz(tmp_path, arrays, y_train=arrays.y_train.astype(np.uint8), y_test=arrays.y_test.astype(np.int32))
    got = C.load_cifar10(tmp_path)
    assert got.y_train.dtype == np.int64 and np.array_equal(got.y_train, arrays.y_train)
    assert got.y_test.dtype == np.int64 and np.array_equal(got.y_test, arrays.y_test)
    assert np.array_equal(got.x_test, arrays.x_test) and got.x_test.dtype == np.uint8


@pytest.mark.parametrize("compressed", [False, True])
def test_truncated_npz_names_the_file(tmp_path, arrays, compressed):
    (tmp_path / "cifar10").mkdir()
    p = tmp_path / "cifar10" / "cifar10.npz"
    (np.savez_compressed if compressed else np.savez)(p, **vars(arrays))
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) * 2 // 3])
    with pytest.raises(ValueError) as e:  # old: zipfile.BadZipFile without the file name
        C.load_cifar10(tmp_path)
    _one_line_error(e, str(p), "truncated or corrupt")


@pytest.mark.parametrize("compressed", [False, True])
def test_byte_flipped_npz_names_the_file(tmp_path, arrays, compressed):
    (tmp_path / "cifar10").mkdir()
    p = tmp_path / "cifar10" / "cifar10.npz"
    (np.savez_compressed if compressed else np.savez)(p, **vars(arrays))
    raw = p.read_bytes()
    # a flip is caught (CRC: BadZipFile, deflate: zlib.error, npy header: ValueError, member name), or it hit
    # metadata that changes nothing (e.g. a central-directory attribute) and the arrays read back intact
    caught = 0
    for pos in range(0, len(raw), len(raw) // 60):
        b = bytearray(raw)
        b[pos] ^= 0xFF
        p.write_bytes(bytes(b))
        try:
            got = C.load_cifar10(tmp_path)
        except ValueError as e:
            msg = str(e)
            assert "\n" not in msg and str(p) in msg, (pos, msg)
            caught += 1
        else:
            assert all(np.array_equal(getattr(got, k), getattr(arrays, k)) for k in vars(arrays)), pos
    assert caught >= 55  # all but metadata flips; old code raised BadZipFile / zlib.error here instead


def test_npy_instead_of_npz_names_the_file(tmp_path, arrays):
    (tmp_path / "cifar10").mkdir()
    p = tmp_path / "cifar10" / "cifar10.npz"
    with open(p, "wb") as f:
        np.save(f, arrays.x_train)
    with pytest.raises(ValueError) as e:
        C.load_cifar10(tmp_path)
    _one_line_error(e, str(p), "not an npz archive")


def test_batches_resaved_with_str_keys_are_read(tmp_path, arrays):
    # old behaviour: "truncated or corrupt"
    d = tmp_path / "cifar10" / C.BATCH_DIR
    d.mkdir(parents=True)
    parts = np.array_split(np.arange(len(arrays.x_train)), 5)
    for i, idx in enumerate(parts, 1):
        flat = arrays.x_train[idx].transpose(0, 3, 1, 2).reshape(len(idx), -1)
        with open(d / f"data_batch_{i}", "wb") as f:
            pickle.dump({"data": flat, "labels": arrays.y_train[idx].tolist(), "batch_label": "b"}, f)
    with open(d / "test_batch", "wb") as f:
        pickle.dump({"data": arrays.x_test.transpose(0, 3, 1, 2).reshape(len(arrays.x_test), -1),
                     "labels": arrays.y_test}, f)  # fmt: skip
    got = C.load_cifar10(tmp_path)
    for k in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(getattr(got, k), getattr(arrays, k)), k
    assert got.y_test.dtype == np.int64 and got.x_train.dtype == np.uint8


def _dump_batch(path, data, labels, keys=(b"data", b"labels")):
    with open(path, "wb") as f:
        pickle.dump({keys[0]: data, keys[1]: labels}, f)


@pytest.mark.parametrize(
    ("data", "labels", "needles"),
    [
        # old: np.asarray(data, dtype=np.uint8) silently turned [0, 1] floats into zeros
        (lambda x: x.astype(np.float32) / 255.0, lambda y: list(y), ["key 'data'", "float32 images", "uint8"]),
        (lambda x: x.astype(np.int64) * 2, lambda y: list(y), ["key 'data'", "int64 images"]),
        (lambda x: x, lambda y: [float(v) for v in y], ["key 'labels'", "float64 labels"]),
        (lambda x: x, lambda y: [int(v) + 1 for v in y], ["key 'labels'", "range [1, 10]"]),
    ],
    ids=["float_data", "int64_data", "float_labels", "labels_1_to_10"],
)
def test_bad_batch_names_the_batch_file_and_key(tmp_path, arrays, data, labels, needles):
    d = C.write_cifar_batches(tmp_path / "cifar10" / C.BATCH_DIR, arrays)
    x = arrays.x_test.transpose(0, 3, 1, 2).reshape(len(arrays.x_test), -1)
    _dump_batch(d / "test_batch", data(x), labels(arrays.y_test))
    with pytest.raises(ValueError) as e:
        C.load_cifar10(tmp_path)
    _one_line_error(e, str(d / "test_batch"), *needles)


def test_batch_without_data_key_lists_its_keys(tmp_path, arrays):
    d = C.write_cifar_batches(tmp_path / "b", arrays)
    _dump_batch(d / "data_batch_2", np.zeros((1, 3072), np.uint8), [0], keys=(b"pixels", b"labels"))
    with pytest.raises(ValueError) as e:
        C.read_batches(d)
    _one_line_error(e, str(d / "data_batch_2"), "no b'data' or 'data' key", "b'pixels'")


def test_missing_training_batch_is_an_error_not_fewer_images(tmp_path, arrays):
    d = C.write_cifar_batches(tmp_path / "b", arrays)
    (d / "data_batch_3").unlink()  # old: silently read 4 batches (48 of 60 images)
    with pytest.raises(ValueError) as e:
        C.read_batches(d)
    _one_line_error(e, str(d), "missing data_batch_3")


def test_more_than_five_batches_are_all_read(tmp_path, arrays):
    d = C.write_cifar_batches(tmp_path / "b", arrays, n_batches=7)  # old: batches 6 and 7 were dropped
    got = C.read_batches(d)
    assert np.array_equal(got.x_train, arrays.x_train) and np.array_equal(got.y_train, arrays.y_train)


def test_tarball_batches_are_validated_too(tmp_path, arrays, monkeypatch):
    src = tmp_path / "src" / C.BATCH_DIR
    C.write_cifar_batches(src, arrays)
    _dump_batch(src / "data_batch_1", np.zeros((2, 3072), np.uint8), [3, 10])  # label 10 is out of range
    (tmp_path / "cifar10").mkdir()
    with tarfile.open(tmp_path / "cifar10" / C.TARBALL, "w:gz") as tar:
        tar.add(src, arcname=C.BATCH_DIR)
    monkeypatch.setattr(C, "verify", lambda *a, **k: None)  # a fixture cannot match the canonical md5
    with pytest.raises(ValueError) as e:
        C.load_cifar10(tmp_path)
    _one_line_error(e, str(tmp_path / "cifar10" / C.BATCH_DIR / "data_batch_1"), "range [3, 10]")


def test_write_cifar_batches_refuses_what_the_reader_refuses(tmp_path, arrays):
    bad = C.CifarArrays(arrays.x_train.astype(np.float64), arrays.y_train, arrays.x_test, arrays.y_test)
    with pytest.raises(ValueError, match=r"arrays\.x_train: float64 images"):
        C.write_cifar_batches(tmp_path / "b", bad)
    with pytest.raises(ValueError, match=r"n_batches must be an int in 1\.\.60"):
        C.write_cifar_batches(tmp_path / "b", arrays, n_batches=61)


def test_to_tensor_refuses_float_and_channels_first_images():
    x = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="to_tensor: x: float32 images; expected uint8"):
        C.to_tensor(x.astype(np.float32) / 255.0)  # old: divided by 255 again
    with pytest.raises(ValueError, match="channels-first"):
        C.to_tensor(x.transpose(0, 3, 1, 2))


def test_validate_arrays_and_tasks_refuse_bad_arrays(arrays):
    ok = C.validate_arrays(C.CifarArrays(arrays.x_train, arrays.y_train.astype(np.int32), arrays.x_test, arrays.y_test))
    assert ok.y_train.dtype == np.int64 and np.array_equal(ok.y_train, arrays.y_train)
    one_based = C.CifarArrays(arrays.x_train, arrays.y_train + 1, arrays.x_test, arrays.y_test)
    # old: class 9 ("truck") became unreachable and class "airplane" silently empty
    with pytest.raises(ValueError, match=r"multiclass_task: arrays\.y_train: labels must be class indices 0\.\.9"):
        T.multiclass_task(one_based)
    floats = C.CifarArrays(arrays.x_train / 255.0, arrays.y_train, arrays.x_test, arrays.y_test)
    with pytest.raises(ValueError, match=r"binary_task: arrays\.x_train: float64 images"):
        T.binary_task(floats, n_noise=1)


def test_batch_with_leading_zero_name_is_not_silently_ignored(tmp_path, arrays):
    d = C.write_cifar_batches(tmp_path / "b", arrays)
    (d / "data_batch_5").rename(d / "data_batch_05")  # old: data_batch_05 was skipped (48 of 60 images)
    with pytest.raises(ValueError, match="unexpected batch file name data_batch_05"):
        C.read_batches(d)
