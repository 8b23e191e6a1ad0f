"""iwlab.data.download: md5, verify, data_dir precedence, IDX reader, ensure() and fetch()."""

import gzip
import hashlib
import struct
from pathlib import Path

import pytest
import torch

from iwlab.data import download as D
from iwlab.data.download import ChecksumError, DownloadError, Resource


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _idx_bytes(t: torch.Tensor, code: int = 0x08) -> bytes:
    header = struct.pack(">I", (code << 8) | t.dim()) + b"".join(struct.pack(">I", s) for s in t.shape)
    return header + t.numpy().astype(">u1").tobytes()


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (3, 4, 5), generator=g, dtype=torch.uint8)


# -- md5 / verify ----------------------------------------------------------------------------------


def test_md5sum_matches_hashlib(tmp_path):
    data = bytes(range(256)) * 5000  # > 1 MiB chunk boundary
    p = tmp_path / "f.bin"
    p.write_bytes(data)
    assert D.md5sum(p) == _md5(data)


def test_verify_ok_wrong_truncated(tmp_path):
    data = b"hello world\n" * 100
    p = tmp_path / "f.txt"
    p.write_bytes(data)
    D.verify(p, _md5(data))
    D.verify(p, _md5(data).upper())  # case-insensitive

    wrong = "0" * 32
    with pytest.raises(ChecksumError) as e:
        D.verify(p, wrong)
    msg = str(e.value)
    assert "\n" not in msg and str(p) in msg and wrong in msg and _md5(data) in msg
    assert "file truncated" not in msg
    assert isinstance(e.value, ValueError)

    p.write_bytes(data[:500])
    with pytest.raises(ChecksumError, match=r"truncated: 500 of 1200 bytes") as e:
        D.verify(p, _md5(data), expected_size=len(data))
    assert "\n" not in str(e.value) and _md5(data[:500]) in str(e.value)


def test_verify_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such data file"):
        D.verify(tmp_path / "nope", "0" * 32)


# -- data_dir --------------------------------------------------------------------------------------


def test_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("IWLAB_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert D.data_dir() == tmp_path / "home" / ".cache" / "iwlab"
    monkeypatch.setenv("IWLAB_DATA", str(tmp_path / "env"))
    assert D.data_dir() == tmp_path / "env"
    assert D.data_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert D.data_dir(str(tmp_path / "explicit")) == tmp_path / "explicit"
    assert not (tmp_path / "env").exists()  # nothing is created


def test_registry_is_complete():
    assert set(D.RESOURCES) == {"mnist", "cifar10", "ptb", "mrpc"}
    for name, res in D.RESOURCES.items():
        assert res, name
        for r in res:
            assert r.url.startswith("https://") and r.url.endswith(r.filename)
            assert len(r.md5) == 32 and int(r.md5, 16) >= 0
    assert {r.filename for r in D.RESOURCES["mnist"]} == {
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    }


# -- read_idx --------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip(tmp_path, images, gz):
    data = _idx_bytes(images)
    p = tmp_path / ("x-idx3-ubyte.gz" if gz else "x-idx3-ubyte")
    p.write_bytes(gzip.compress(data) if gz else data)
    out = D.read_idx(p)
    assert out.dtype == torch.uint8 and out.shape == (3, 4, 5)
    assert torch.equal(out, images)


def test_read_idx_labels_and_other_types(tmp_path):
    labels = torch.tensor([5, 0, 4, 1, 9], dtype=torch.uint8)
    p = tmp_path / "labels-idx1-ubyte"
    p.write_bytes(_idx_bytes(labels))
    assert torch.equal(D.read_idx(p), labels)
    f = torch.tensor([[1.5, -2.0]], dtype=torch.float32)
    q = tmp_path / "floats.idx"
    q.write_bytes(struct.pack(">III", 0x0D02, 1, 2) + f.numpy().astype(">f4").tobytes())
    assert torch.equal(D.read_idx(q), f)


def test_read_idx_bad_magic(tmp_path, images):
    p = tmp_path / "bad.idx"
    p.write_bytes(b"\x12\x34" + _idx_bytes(images)[2:])
    with pytest.raises(ValueError, match=r"not an IDX file: bad magic number 0x12340803") as e:
        D.read_idx(p)
    assert "\n" not in str(e.value)
    p.write_bytes(b"\x00\x00\x07\x01" + b"\x00" * 8)  # unknown element type
    with pytest.raises(ValueError, match="bad magic number"):
        D.read_idx(p)


@pytest.mark.parametrize("cut", [2, 9, 40])
def test_read_idx_truncated_raw(tmp_path, images, cut):
    p = tmp_path / "t.idx"
    p.write_bytes(_idx_bytes(images)[:cut])
    with pytest.raises(ValueError, match="truncated") as e:
        D.read_idx(p)
    assert "\n" not in str(e.value) and str(p) in str(e.value)


def test_read_idx_truncated_gzip(tmp_path, images):
    full = gzip.compress(_idx_bytes(images))
    p = tmp_path / "t.gz"
    p.write_bytes(full[: len(full) // 2])
    with pytest.raises(ValueError, match="truncated"):
        D.read_idx(p)


# -- ensure / fetch --------------------------------------------------------------------------------


@pytest.fixture
def fixture_dataset(tmp_path, monkeypatch, images):
    """A tiny dataset 'toy' with two files served from a local 'mirror' folder via file://."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    files = {"a-idx3-ubyte.gz": gzip.compress(_idx_bytes(images)), "b.txt": b"one two\n" * 10}
    for n, b in files.items():
        (mirror / n).write_bytes(b)
    res = [Resource((mirror / n).as_uri(), n, _md5(b), len(b)) for n, b in files.items()]
    monkeypatch.setitem(D.RESOURCES, "toy", res)
    return mirror, files


def test_ensure_offline_with_files_present(tmp_path, fixture_dataset, monkeypatch):
    mirror, files = fixture_dataset
    root = tmp_path / "data"
    (root / "toy").mkdir(parents=True)
    for n, b in files.items():
        (root / "toy" / n).write_bytes(b)

    def no_network(*a, **k):
        raise AssertionError("ensure(download=False) must not download")

    monkeypatch.setattr(D, "fetch", no_network)
    assert D.ensure("toy", root, download=False) == root / "toy"
    monkeypatch.setenv("IWLAB_DATA", str(root))
    folder = D.ensure("toy", download=False)
    assert folder == root / "toy"
    assert torch.equal(D.read_idx(folder / "a-idx3-ubyte.gz"), D.read_idx(mirror / "a-idx3-ubyte.gz"))


def test_ensure_missing_without_download(tmp_path, fixture_dataset):
    with pytest.raises(FileNotFoundError) as e:
        D.ensure("toy", tmp_path / "empty", download=False)
    msg = str(e.value)
    assert "\n" not in msg and "IWLAB_DATA" in msg and "download" in msg
    assert "a-idx3-ubyte.gz" in msg and "b.txt" in msg


def test_ensure_corrupted_file(tmp_path, fixture_dataset):
    _, files = fixture_dataset
    root = tmp_path / "data"
    (root / "toy").mkdir(parents=True)
    (root / "toy" / "a-idx3-ubyte.gz").write_bytes(files["a-idx3-ubyte.gz"][:10])
    (root / "toy" / "b.txt").write_bytes(files["b.txt"])
    with pytest.raises(ChecksumError, match="truncated"):
        D.ensure("toy", root, download=False)


def test_ensure_downloads_missing(tmp_path, fixture_dataset):
    _, files = fixture_dataset
    root = tmp_path / "data"
    folder = D.ensure("toy", root)
    for n, b in files.items():
        assert (folder / n).read_bytes() == b
    assert not list(folder.glob("*.part"))


def test_ensure_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'mnits'; known: cifar10, mnist"):
        D.ensure("mnits", download=False)


def test_fetch_file_url(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload" * 1000)
    dest = tmp_path / "out" / "f.bin"
    assert D.fetch(src.as_uri(), dest, _md5(src.read_bytes())) == dest
    assert dest.read_bytes() == src.read_bytes()
    assert list(dest.parent.iterdir()) == [dest]


def test_fetch_checksum_failure_leaves_nothing(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload")
    dest = tmp_path / "out" / "f.bin"
    with pytest.raises(ChecksumError) as e:
        D.fetch(src.as_uri(), dest, "0" * 32)
    msg = str(e.value)
    assert "\n" not in msg and "f.bin" in msg and "0" * 32 in msg and _md5(b"payload") in msg
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_fetch_unreachable_is_clear(tmp_path):
    dest = tmp_path / "f.bin"
    with pytest.raises(DownloadError) as e:
        D.fetch((tmp_path / "missing.bin").as_uri(), dest, "0" * 32)
    msg = str(e.value)
    assert "could not download" in msg and "offline" in msg and "\n" not in msg
    assert not dest.exists() and not Path(str(dest) + ".part").exists()


# -- item 5: read_idx rejects damaged files with one line naming the file ---------------------------


def test_read_idx_trailing_bytes_are_an_error(tmp_path, images):
    p = tmp_path / "x-idx3-ubyte"
    p.write_bytes(_idx_bytes(images) + b"\x00" * 7)  # old: the 7 extra bytes were silently ignored
    with pytest.raises(ValueError) as e:
        D.read_idx(p)
    msg = str(e.value)
    assert "\n" not in msg and str(p) in msg and "7 bytes after the data: shape (3, 4, 5) needs 60" in msg


def test_read_idx_corrupt_deflate_stream_names_the_file(tmp_path, images):
    full = gzip.compress(_idx_bytes(images), mtime=0)
    p = tmp_path / "c.gz"
    msgs = []
    for pos in range(10, len(full) - 8):  # the deflate body, between the gzip header and trailer
        b = bytearray(full)
        b[pos] ^= 0xFF
        p.write_bytes(bytes(b))
        with pytest.raises(ValueError) as e:
            D.read_idx(p)
        msg = str(e.value)
        assert "\n" not in msg and str(p) in msg, pos
        msgs.append(msg)
    assert any("(corrupt?): error: Error -3" in m for m in msgs)  # zlib.error was caught (old: it escaped)
