"""Datasets: MNIST / Fashion-MNIST loading (directories, checksums, strict IDX parsing, atomic
downloads through file:// URLs or a stand-in opener; no network) and the bundled digits.

The real files are read from the shared data folder beside the project root
(``<repo>/../shared/data``) or from $GRADWATCH_DATA; those tests skip when neither has them.
Everything else runs on a small synthetic dataset whose checksums replace the published ones.
"""

import gzip
import hashlib
import io
import os
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_data_dir

from gradwatch import datasets
from gradwatch.datasets import (
    IDX_FILES,
    DatasetError,
    DownloadError,
    default_data_dir,
    load_digits,
    load_mnist,
    read_idx,
)


SHARED = shared_data_dir()
needs_shared = pytest.mark.skipif(SHARED is None,
                                  reason="the shared MNIST files (../shared/data) are absent")


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    big_endian = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    return header + array.astype(big_endian).tobytes()


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A tiny MNIST-like dataset in tmp_path/source, with its checksums in place of MNIST's."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 6, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 4, dtype=np.uint8),
    }
    source = tmp_path / "source"
    source.mkdir()
    checksums = {}
    for stem, array in arrays.items():
        raw = idx_bytes(array)
        compressed = gzip.compress(raw, mtime=0)
        (source / f"{stem}.gz").write_bytes(compressed)
        checksums[stem] = (hashlib.sha256(compressed).hexdigest(), len(compressed),
                           hashlib.sha256(raw).hexdigest())
    monkeypatch.setitem(datasets.CHECKSUMS, "mnist", checksums)
    monkeypatch.delenv("GRADWATCH_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return source, arrays


def copy_files(source: Path, target: Path, skip=()) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for stem in IDX_FILES:
        if stem not in skip:
            (target / f"{stem}.gz").write_bytes((source / f"{stem}.gz").read_bytes())


def assert_matches(data, arrays):
    (x_train, y_train), (x_test, y_test) = data
    np.testing.assert_array_equal(x_train * 255, arrays["train-images-idx3-ubyte"].reshape(6, 784))
    np.testing.assert_array_equal(y_train, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(x_test * 255, arrays["t10k-images-idx3-ubyte"].reshape(4, 784))
    np.testing.assert_array_equal(y_test, arrays["t10k-labels-idx1-ubyte"])


# --- the real files ------------------------------------------------------------------------------


@needs_shared
def test_mnist_from_the_shared_folder():
    data = load_mnist("mnist", SHARED, download=False, progress=False)
    (x_train, y_train), (x_test, y_test) = data
    assert x_train.shape == (60000, 784) and x_train.dtype == np.float32
    assert x_test.shape == (10000, 784) and y_test.shape == (10000,)
    assert y_train.dtype == np.int64 and data.train.y is y_train
    assert 0.0 == x_train.min() and x_train.max() == 1.0
    # The label counts published in shared/data/README.md.
    np.testing.assert_array_equal(
        np.bincount(y_train), [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])


@needs_shared
def test_fashion_mnist_raw_images_from_its_own_folder():
    data = load_mnist("fashion", SHARED / "fashion-mnist", download=False, flatten=False,
                      normalize=False, progress=False)
    assert data.train.x.shape == (60000, 28, 28) and data.train.x.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(data.test.y), [1000] * 10)
    assert len(datasets.FASHION_CLASSES) == 10


# --- where the files are looked for --------------------------------------------------------------


def test_subfolder_direct_folder_environment_and_cache(fake, tmp_path, monkeypatch):
    source, arrays = fake
    copy_files(source, tmp_path / "root" / "mnist")
    assert_matches(load_mnist(data_dir=tmp_path / "root", download=False), arrays)
    assert_matches(load_mnist(data_dir=str(source), download=False), arrays)  # files in it
    monkeypatch.setenv("GRADWATCH_DATA", str(tmp_path / "root"))
    assert default_data_dir() == tmp_path / "root"
    assert_matches(load_mnist(download=False), arrays)
    monkeypatch.delenv("GRADWATCH_DATA")
    assert default_data_dir() == tmp_path / "cache" / "gradwatch"
    copy_files(source, tmp_path / "cache" / "gradwatch" / "mnist")
    assert_matches(load_mnist(download=False), arrays)
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_data_dir() == Path("~/.cache/gradwatch").expanduser()


def test_options_flatten_normalize_dtype(fake):
    source, arrays = fake
    data = load_mnist(data_dir=source, download=False, flatten=False, dtype="float64")
    assert data.train.x.shape == (6, 28, 28) and data.train.x.dtype == np.float64
    np.testing.assert_allclose(data.train.x, arrays["train-images-idx3-ubyte"] / 255.0)
    raw = load_mnist(data_dir=source, download=False, normalize=False)
    assert raw.test.x.dtype == np.uint8 and raw.test.x.shape == (4, 784)


def test_recompressed_and_uncompressed_copies_are_accepted(fake, tmp_path):
    source, arrays = fake
    target = tmp_path / "copies"
    copy_files(source, target, skip=IDX_FILES[:2])
    stem = IDX_FILES[0]
    raw = gzip.decompress((source / f"{stem}.gz").read_bytes())
    # Another gzip header (mtime, file name), same data: the uncompressed checksum matches.
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="other-name", mode="wb", fileobj=buffer, mtime=12345) as file:
        file.write(raw)
    (target / f"{stem}.gz").write_bytes(buffer.getvalue())
    (target / IDX_FILES[1]).write_bytes(gzip.decompress((source / f"{IDX_FILES[1]}.gz").read_bytes()))
    assert_matches(load_mnist(data_dir=target, download=False), arrays)


# --- damaged and missing files -------------------------------------------------------------------


def test_checksum_mismatch_names_the_file(fake, tmp_path):
    source, _ = fake
    target = tmp_path / "bad"
    copy_files(source, target)
    labels = target / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[-1] = (raw[-1] + 1) % 10
    labels.write_bytes(gzip.compress(bytes(raw), mtime=0))
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte.gz does not match the published "
                                           "MNIST file: SHA-256"):
        load_mnist(data_dir=target, download=False)


def test_truncated_file_fails_its_checksum(fake, tmp_path):
    source, _ = fake
    target = tmp_path / "short"
    copy_files(source, target)
    images = target / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:-20])
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz does not match"):
        load_mnist(data_dir=target, download=False)


def test_missing_files_without_download(fake, tmp_path):
    source, _ = fake
    target = tmp_path / "partial" / "mnist"
    copy_files(source, target, skip=IDX_FILES[2:])
    with pytest.raises(FileNotFoundError, match=(
            r"MNIST files missing from .*partial/mnist: t10k-images-idx3-ubyte.gz, "
            r"t10k-labels-idx1-ubyte.gz; put the four MNIST files .* pass data_dir=DIR "
            r"\(command line: --data-dir DIR\) or set GRADWATCH_DATA=DIR")):
        load_mnist(data_dir=tmp_path / "partial", download=False)
    assert sorted(os.listdir(target)) == sorted(f"{stem}.gz" for stem in IDX_FILES[:2])


# --- strict IDX parsing --------------------------------------------------------------------------


def test_read_idx_types_and_gzip():
    values = np.arange(-6, 6, dtype=np.int16).reshape(3, 4)
    np.testing.assert_array_equal(read_idx(idx_bytes(values, 0x0B)), values)
    floats = np.linspace(-1, 1, 5)
    decoded = read_idx(gzip.compress(idx_bytes(floats, 0x0E)))
    assert decoded.dtype == np.float64 and decoded.dtype.isnative
    np.testing.assert_array_equal(decoded, floats)


@pytest.mark.parametrize("data, message", [
    (b"\x00\x00\x08", r"not an IDX file \(only 3 bytes\)"),
    (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x05", r"magic number 0x01000801"),
    (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x05", r"magic number 0x00000701, expected"),
    (b"\x00\x00\x08\x00", "declares 0 dimensions"),
    (b"\x00\x00\x08\x03" + struct.pack(">I", 2), r"truncated IDX header \(8 of 16 bytes\)"),
    (b"\x00\x00\x08\x01" + struct.pack(">I", 3) + b"\x01\x02", r"truncated: header says shape \(3,\)"),
    (b"\x00\x00\x08\x01" + struct.pack(">I", 1) + b"\x01\x02", "has trailing bytes"),
    (gzip.compress(idx_bytes(np.zeros(100, np.uint8)))[:-12], "corrupt or truncated gzip"),
    (b"\x1f\x8b" + b"\x00" * 30, "corrupt or truncated gzip"),
])
def test_read_idx_rejects(data, message):
    with pytest.raises(DatasetError, match=message):
        read_idx(data)


def test_read_idx_names_the_file(tmp_path):
    path = tmp_path / "labels.idx"
    path.write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", 5))
    with pytest.raises(DatasetError, match="labels.idx: truncated"):
        read_idx(path)


# --- downloads (no network: file:// URLs and a stand-in opener) ----------------------------------


def test_download_from_file_url_into_the_cache(fake, tmp_path):
    source, arrays = fake
    data = load_mnist(mirrors=[source.as_uri()], progress=False)
    assert_matches(data, arrays)
    folder = tmp_path / "cache" / "gradwatch" / "mnist"
    assert sorted(os.listdir(folder)) == sorted(f"{stem}.gz" for stem in IDX_FILES)


def test_download_skips_a_bad_mirror_and_fetches_only_missing_files(fake, tmp_path):
    source, arrays = fake
    bad = tmp_path / "bad-mirror"
    bad.mkdir()
    for stem in IDX_FILES:
        (bad / f"{stem}.gz").write_bytes(b"not the file")
    target = tmp_path / "data"
    copy_files(source, target / "mnist", skip=IDX_FILES[1:])
    before = (target / "mnist" / f"{IDX_FILES[0]}.gz").stat().st_mtime_ns
    data = load_mnist(data_dir=target, mirrors=[bad.as_uri() + "/", source.as_uri()],
                      progress=False)
    assert_matches(data, arrays)
    assert (target / "mnist" / f"{IDX_FILES[0]}.gz").stat().st_mtime_ns == before
    assert sorted(os.listdir(target / "mnist")) == sorted(f"{stem}.gz" for stem in IDX_FILES)


def test_offline_error_names_files_and_where_to_put_them(fake, tmp_path, monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(datasets, "_urlopen", offline)
    target = tmp_path / "empty"
    with pytest.raises(DownloadError, match=(
            r"MNIST file train-images-idx3-ubyte.gz is missing from .*empty/mnist and could not "
            r"be downloaded \(https://ossci-datasets.*name resolution.*\). Without network access, "
            r"put the four "
            r"MNIST files .*GRADWATCH_DATA=DIR")) as caught:
        load_mnist(data_dir=target, progress=False)
    assert "\n" not in str(caught.value)
    assert not target.exists()  # the folders it made for the download are removed again


class _Response:
    """A stand-in for urlopen's response: hands out ``chunks``, then ``error`` if given."""

    def __init__(self, chunks, error=None, check=None):
        self.chunks, self.error, self.check = list(chunks), error, check

    def read(self, size):
        if self.check is not None:
            self.check()
        if self.chunks:
            return self.chunks.pop(0)
        if self.error is not None:
            raise self.error
        return b""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_download_writes_a_temporary_file_and_renames_it(fake, tmp_path, monkeypatch):
    source, arrays = fake
    folder = tmp_path / "data" / "mnist"
    seen = []

    def opener(url, timeout):
        name = url.rsplit("/", 1)[-1]
        content = (source / name).read_bytes()

        def check():
            # While the bytes arrive, only a hidden .part file exists, never the final name.
            seen.append(name)
            assert not (folder / name).exists()
            assert [entry for entry in os.listdir(folder) if entry.startswith(f".{name}.")
                    and entry.endswith(".part")]

        half = len(content) // 2
        return _Response([content[:half], content[half:]], check=check)

    monkeypatch.setattr(datasets, "_urlopen", opener)
    assert_matches(load_mnist(data_dir=tmp_path / "data", progress=False), arrays)
    assert set(seen) == {f"{stem}.gz" for stem in IDX_FILES}
    assert not [entry for entry in os.listdir(folder) if entry.endswith(".part")]


@pytest.mark.parametrize("failure", ["interrupted", "truncated", "oversized"])
def test_failed_download_leaves_no_file(fake, tmp_path, monkeypatch, failure):
    source, _ = fake

    def opener(url, timeout):
        content = (source / url.rsplit("/", 1)[-1]).read_bytes()
        if failure == "interrupted":
            return _Response([content[:10]], error=ConnectionResetError("connection reset"))
        if failure == "truncated":
            return _Response([content[:-5]])
        return _Response([content, b"x" * (2 << 20)])

    monkeypatch.setattr(datasets, "_urlopen", opener)
    (tmp_path / "data").mkdir()
    expected = {"interrupted": "connection reset", "truncated": "expected",
                "oversized": "expected"}[failure]
    with pytest.raises(DownloadError, match=expected):
        load_mnist(data_dir=tmp_path / "data", mirrors=["https://mirror.invalid/mnist"],
                   progress=False)
    assert os.listdir(tmp_path / "data") == []


def test_download_progress_bar(fake, tmp_path, capsys):
    pytest.importorskip("tqdm")
    source, arrays = fake
    assert_matches(load_mnist(data_dir=tmp_path, mirrors=[source.as_uri()]), arrays)
    assert "train-images-idx3-ubyte.gz" in capsys.readouterr().err


# --- arguments -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, error, message", [
    ({"kind": "emnist"}, ValueError, "unknown kind 'emnist'; valid values are 'mnist', 'fashion'"),
    ({"dtype": "int32"}, ValueError, "unknown dtype 'int32'"),
    ({"download": 1}, TypeError, "download must be True or False, got int"),
    ({"flatten": None}, TypeError, "flatten must be True or False"),
    ({"mirrors": "https://example.org/"}, TypeError, "mirrors must be a sequence of base URL"),
])
def test_argument_errors(fake, kwargs, error, message):
    with pytest.raises(error, match=message):
        load_mnist(**kwargs)


def test_bundled_digits():
    images, labels = load_digits()
    assert images.shape == (1797, 64) and images.dtype == np.float32
    assert labels.dtype == np.int64 and set(np.unique(labels)) == set(range(10))
    assert 0.0 <= images.min() and images.max() == 1.0
    assert load_digits(dtype="float64")[0].dtype == np.float64
