import io
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch

from iwlab.data import cifar10 as C
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


def test_binary_task_sets(arrays):
    t = C.binary_task(arrays, ("cat", "dog"), n_noise=7, size=16, seed=0)
    assert t.classes == ("cat", "dog")
    assert t.x_train.shape == (12, 3, 16, 16) and t.y_train.tolist() == [0] * 6 + [1] * 6
    assert t.x_test.shape[0] == 6 and t.x_other.shape[0] == 8 * 3 and t.x_noise.shape == (7, 3, 16, 16)
    cats = torch.from_numpy(np.flatnonzero(arrays.y_train == 3))
    assert torch.allclose(t.x_train[:6], C.to_tensor(arrays.x_train[cats.numpy()], 16))


def test_subsample_label_noise_and_errors(arrays):
    t = C.binary_task(arrays, ("cat", "dog"), subsample={"cat": 0.5}, n_noise=1)
    assert int((t.y_train == 0).sum()) == 3 and int((t.y_train == 1).sum()) == 6
    big = C.make_fixture(40, 1)
    noisy = C.binary_task(big, ("cat", "dog"), label_noise=0.05, n_noise=1, seed=3)
    assert int(noisy.flipped.sum()) == 4  # 5% of 40 in each class
    assert int(noisy.flipped[:40].sum()) == 2 and int(noisy.flipped[40:].sum()) == 2
    assert bool((noisy.y_train[:40][noisy.flipped[:40]] == 1).all())
    with pytest.raises(ValueError, match="left empty by subsampling"):
        C.binary_task(arrays, ("cat", "dog"), subsample={"dog": 0.01}, n_noise=1)
    with pytest.raises(ValueError, match="unknown CIFAR-10 class 'kat'"):
        C.binary_task(arrays, ("kat", "dog"))
    with pytest.raises(ValueError, match="not one of the task's classes"):
        C.binary_task(arrays, ("cat", "dog"), subsample={"truck": 0.5}, n_noise=1)


def test_noise_images_seeded_and_multiclass(arrays):
    assert torch.equal(C.noise_images(4, seed=2), C.noise_images(4, seed=2))
    assert not torch.equal(C.noise_images(4, seed=2), C.noise_images(4, seed=3))
    m = C.multiclass_task(arrays, n_train_per_class=2, size=8)
    assert m.x_train.shape == (20, 3, 8, 8) and sorted(set(m.y_train.tolist())) == list(range(10))


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
