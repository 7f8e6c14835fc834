"""Real datasets: the bundled UCI handwritten digits (offline), and MNIST / Fashion-MNIST read
from their original IDX files (downloaded once into a cache directory, checked by SHA-256)."""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import tempfile
import urllib.request
import zlib
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np

from gradwatch._validation import choice

DIGITS_SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"


def load_digits(*, dtype="float32") -> tuple[np.ndarray, np.ndarray]:
    """Load the UCI 8x8 handwritten digits bundled with gradwatch.

    1797 images of the digits 0-9 (about 180 per class), each 8x8 pixels counting the "on"
    pixels of a 4x4 block of a 32x32 bitmap, so each pixel is an integer 0..16.

    Parameters
    ----------
    dtype : {"float32", "float64"}
        Dtype of the images.

    Returns
    -------
    images : ndarray, shape (1797, 64)
        Pixels scaled to [0, 1] (divided by 16), row-major 8x8 images.
    labels : ndarray of int64, shape (1797,)
        The digit shown, 0..9.

    Raises
    ------
    ValueError
        If the bundled file does not match its SHA-256 (a damaged installation).

    References
    ----------
    E. Alpaydin and C. Kaynak, "Optical Recognition of Handwritten Digits", UCI Machine
    Learning Repository, 1998, doi:10.24432/C50P49. License CC BY 4.0.
    """
    dtype_name = choice("dtype", np.dtype(dtype).name if not isinstance(dtype, str) else dtype,
                        ["float32", "float64"])
    raw = resources.files("gradwatch").joinpath("data", "digits.csv.gz").read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != DIGITS_SHA256:
        raise ValueError(f"bundled digits.csv.gz is damaged: SHA-256 {digest}, expected {DIGITS_SHA256}")
    table = np.loadtxt(gzip.decompress(raw).decode("ascii").splitlines(), delimiter=",")
    images = (table[:, :64] / 16.0).astype(dtype_name)
    labels = table[:, 64].astype(np.int64)
    return images, labels

# --- MNIST and Fashion-MNIST -------------------------------------------------------------------

IDX_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
"""The four files of MNIST and of Fashion-MNIST (without ``.gz``), in the order train images,
train labels, test images, test labels."""

KINDS: tuple[str, ...] = ("mnist", "fashion")
"""The valid values of ``kind`` in :func:`load_mnist`."""

SUBDIRECTORIES: dict[str, str] = {"mnist": "mnist", "fashion": "fashion-mnist"}
"""The folder of each kind inside a data directory."""

FASHION_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
"""The names of the ten Fashion-MNIST labels 0..9."""

# Per kind and file: (SHA-256 of the original .gz, its size in bytes, SHA-256 of the
# uncompressed IDX). The .gz values are those published by tensorflow/datasets
# (url_checksums/mnist.txt, fashion_mnist.txt); the uncompressed ones accept the same data
# re-compressed (Debian's dataset-fashion-mnist strips the gzip file names) or not compressed.
CHECKSUMS: dict[str, dict[str, tuple[str, int, str]]] = {
    "mnist": {
        "train-images-idx3-ubyte": (
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422,
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        "train-labels-idx1-ubyte": (
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881,
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
        "t10k-images-idx3-ubyte": (
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877,
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        "t10k-labels-idx1-ubyte": (
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542,
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
    },
    "fashion": {
        "train-images-idx3-ubyte": (
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26421880,
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        "train-labels-idx1-ubyte": (
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29515,
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        "t10k-images-idx3-ubyte": (
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4422102,
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        "t10k-labels-idx1-ubyte": (
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5148,
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    },
}

MIRRORS: dict[str, tuple[str, ...]] = {
    # torchvision's mirror first, then the one TensorFlow Datasets uses.
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    # Zalando's own bucket (torchvision's source), then the copy Keras downloads.
    "fashion": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
    ),
}
"""Base URLs tried in order for each kind; a file's URL is the base plus its ``.gz`` name."""

DATA_ENV = "GRADWATCH_DATA"
"""The environment variable naming the data directory when ``data_dir`` is not given."""

_IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
_DOWNLOAD_TIMEOUT = 30.0
# Indirection so that tests can replace the opener (no network in tests).
_urlopen = urllib.request.urlopen


class DatasetError(ValueError):
    """A data file is damaged: its checksum does not match, or it is not a valid IDX file."""


class DownloadError(OSError):
    """Files of a dataset are missing and could not be downloaded from any mirror."""


class Split(NamedTuple):
    """One part of a dataset: ``x`` images and ``y`` labels."""

    x: np.ndarray
    y: np.ndarray


class ImageDataset(NamedTuple):
    """The train and test splits; unpacks as ``(x_train, y_train), (x_test, y_test)``."""

    train: Split
    test: Split


def default_data_dir() -> Path:
    """The data directory used when ``data_dir`` is not given.

    ``$GRADWATCH_DATA`` when it is set and not empty; else the user cache directory:
    ``$XDG_CACHE_HOME/gradwatch`` (``~/.cache/gradwatch`` when XDG_CACHE_HOME is unset), or
    ``%LOCALAPPDATA%\\gradwatch`` on Windows.
    """
    configured = os.environ.get(DATA_ENV)
    if configured:
        return Path(configured).expanduser()
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "gradwatch"
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(cache).expanduser() / "gradwatch"


def read_idx(source) -> np.ndarray:
    """Read one IDX file (gzip-compressed or not) into an array of its shape and type.

    The IDX format (LeCun et al.): two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B
    int16, 0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions ``d``, then ``d``
    big-endian uint32 sizes, then the values, big-endian, row-major.

    Parameters
    ----------
    source : str, os.PathLike or bytes
        A path, or the file's contents. Gzip is recognised by its magic bytes, not the name.

    Returns
    -------
    numpy.ndarray
        Of the shape in the header and the file's type in native byte order.

    Raises
    ------
    DatasetError
        For a corrupt or truncated gzip stream, a wrong magic number or type code, zero
        dimensions, or a payload shorter or longer than the header says; the message names the
        file.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        name, raw = "IDX data", bytes(source)
    else:
        name = os.fspath(source)
        raw = Path(name).read_bytes()
    return _parse_idx(raw, name)


def _parse_idx(raw: bytes, name: str) -> np.ndarray:
    raw = _decompressed(raw, name)
    if len(raw) < 4:
        raise DatasetError(f"{name}: not an IDX file (only {len(raw)} bytes)")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DatasetError(
            f"{name}: not an IDX file (magic number 0x{raw[:4].hex()}, expected 0x0000TTDD with "
            f"type TT one of {', '.join(f'{code:02x}' for code in _IDX_TYPES)})"
        )
    dtype, ndim = _IDX_TYPES[raw[2]], raw[3]
    if ndim == 0:
        raise DatasetError(f"{name}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{name}: truncated IDX header ({len(raw)} of {header} bytes)")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "has trailing bytes"
        raise DatasetError(
            f"{name}: {what}: header says shape {shape} ({expected} bytes), file has {len(raw)}"
        )
    values = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return values.astype(dtype.newbyteorder("="))


def _decompressed(raw: bytes, name: str) -> bytes:
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise DatasetError(f"{name}: corrupt or truncated gzip data ({error})") from None


def _verify(path: Path, kind: str, stem: str) -> bytes:
    """The contents of ``path``, after checking them against the published checksums."""
    gz_sha, _, raw_sha = CHECKSUMS[kind][stem]
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest == gz_sha or digest == raw_sha:
        return raw
    if raw.startswith(_GZIP_MAGIC):
        try:
            if hashlib.sha256(gzip.decompress(raw)).hexdigest() == raw_sha:
                return raw
        except (OSError, EOFError, zlib.error):
            pass  # a damaged gzip stream: reported below as a checksum mismatch
    raise DatasetError(
        f"{path} does not match the published {_title(kind)} file: SHA-256 {digest}, expected "
        f"{gz_sha} (or the uncompressed data's {raw_sha}); delete it to download it again"
    )


def _title(kind: str) -> str:
    return "MNIST" if kind == "mnist" else "Fashion-MNIST"


def _resolve_dir(data_dir, kind: str) -> Path:
    """The folder holding (or to hold) the files of ``kind``.

    ``<dir>/mnist`` (``<dir>/fashion-mnist``), unless ``<dir>`` itself holds train images.
    """
    root = default_data_dir() if data_dir is None else Path(os.fspath(data_dir)).expanduser()
    stem = IDX_FILES[0]
    if (root / f"{stem}.gz").is_file() or (root / stem).is_file():
        return root
    return root / SUBDIRECTORIES[kind]


def _existing(folder: Path, stem: str):
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _where_hint(kind: str) -> str:
    files = ", ".join(f"{stem}.gz" for stem in IDX_FILES)
    return (f"put the four {_title(kind)} files ({files}) into DIR/{SUBDIRECTORIES[kind]} and "
            f"pass data_dir=DIR (command line: --data-dir DIR) or set {DATA_ENV}=DIR")


def _download(folder: Path, kind: str, stem: str, mirrors, progress: bool) -> Path:
    """Fetch ``stem``.gz into ``folder`` through a temporary file in the same folder; only a
    file whose size and SHA-256 match is renamed (atomically) to its final name."""
    gz_sha, size, _ = CHECKSUMS[kind][stem]
    name = f"{stem}.gz"
    target = folder / name
    failures = []
    for base in mirrors:
        url = base if base.endswith("/") else base + "/"
        url += name
        descriptor, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
        try:
            with os.fdopen(descriptor, "wb") as out:
                digest, written = _copy_url(url, out, size, progress)
                out.flush()
                os.fsync(out.fileno())
            if written != size or digest != gz_sha:
                failures.append(f"{url}: got {written} bytes with SHA-256 {digest}, expected "
                                f"{size} bytes with {gz_sha}")
                continue
            os.replace(temporary, target)
            return target
        except (OSError, ValueError) as error:  # URLError and HTTPError are OSErrors
            failures.append(f"{url}: {error}")
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
    raise DownloadError(
        f"{_title(kind)} file {name} is missing from {folder} and could not be downloaded "
        f"({'; '.join(failures) or 'no mirrors given'}). Without network access, "
        f"{_where_hint(kind)}"
    )


def _copy_url(url: str, out, size: int, progress: bool) -> tuple[str, int]:
    """Stream ``url`` into ``out``; returns (SHA-256, bytes). Stops past ``size`` bytes."""
    sha = hashlib.sha256()
    written = 0
    bar = _download_bar(progress, size, url)
    try:
        with _urlopen(url, timeout=_DOWNLOAD_TIMEOUT) as response:
            while written <= size:
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                sha.update(chunk)
                written += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    return sha.hexdigest(), written


def _download_bar(enabled: bool, size: int, url: str):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=size, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1],
                dynamic_ncols=True, leave=False)


def load_mnist(kind: str = "mnist", data_dir=None, *, download: bool = True,
               flatten: bool = True, normalize: bool = True, dtype="float32",
               mirrors=None, progress: bool = True) -> ImageDataset:
    """Load MNIST or Fashion-MNIST from the four original IDX gzip files, checked by SHA-256.

    The files are looked for in ``data_dir`` (else ``$GRADWATCH_DATA``, else the user cache
    directory, see :func:`default_data_dir`), in its subfolder ``mnist/`` or ``fashion-mnist/``,
    or directly in ``data_dir`` when it holds them itself. Each file is
    ``<name>-idx?-ubyte.gz`` (or the uncompressed ``<name>-idx?-ubyte``) and must match the
    published SHA-256 of the original file or of its uncompressed contents (so a copy
    re-compressed by another tool is accepted). Missing files are downloaded when ``download``
    is true: each is written to a temporary file in the same folder, checked, and only then
    renamed (atomically) to its name, so an interrupted or corrupted download never leaves a
    partial file behind.

    Parameters
    ----------
    kind : {"mnist", "fashion"}
        MNIST handwritten digits or Zalando's Fashion-MNIST (label names in
        :data:`FASHION_CLASSES`).
    data_dir : str or os.PathLike, optional
        The data directory; see above.
    download : bool, default True
        Download missing files from :data:`MIRRORS` (into the data directory, created when
        needed). False: a missing file is an error.
    flatten : bool, default True
        Images as rows of 784 pixels (N, 784), the layout :class:`gradwatch.MLP` and
        scikit-learn take; False keeps them (N, 28, 28) like Keras.
    normalize : bool, default True
        Pixels divided by 255 into [0, 1] as ``dtype``; False returns the stored uint8 values
        0..255 (``dtype`` is then ignored).
    dtype : {"float32", "float64"}, default "float32"
        The dtype of normalised images.
    mirrors : sequence of str, optional
        Base URLs to download from instead of :data:`MIRRORS` (a file's URL is the base plus
        its name; ``file://`` URLs work).
    progress : bool, default True
        Show a download progress bar when tqdm is installed.

    Returns
    -------
    ImageDataset
        A named tuple ``(train, test)`` of :class:`Split` ``(x, y)``:
        ``(x_train, y_train), (x_test, y_test) = load_mnist()`` or ``data.train.x``.
        Labels are int64 in 0..9.

    Shape
    -----
    train.x: (60000, 784) (or (60000, 28, 28)), train.y: (60000,); test.x: (10000, 784),
    test.y: (10000,).

    Raises
    ------
    FileNotFoundError
        With ``download=False``, for missing files (the message names them and the folder).
    DownloadError
        When a missing file could not be downloaded from any mirror (offline); the message says
        where to put the files by hand.
    DatasetError
        When a file does not match its checksum or is not valid IDX (the message names it).
    TypeError, ValueError
        For an unknown ``kind`` or ``dtype``, or a flag that is not a bool.

    References
    ----------
    Y. LeCun, L. Bottou, Y. Bengio and P. Haffner, "Gradient-based learning applied to document
    recognition", Proc. IEEE 86(11), 1998 (MNIST). H. Xiao, K. Rasul and R. Vollgraf,
    "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning Algorithms",
    arXiv:1708.07747, 2017 (MIT License).
    """
    kind = choice("kind", kind, KINDS)
    for flag_name, flag in (("download", download), ("flatten", flatten),
                            ("normalize", normalize), ("progress", progress)):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{flag_name} must be True or False, got {type(flag).__name__}")
    dtype_name = choice("dtype", np.dtype(dtype).name if not isinstance(dtype, str) else dtype,
                        ["float32", "float64"])
    if mirrors is None:
        mirrors = MIRRORS[kind]
    elif isinstance(mirrors, str) or not all(isinstance(base, str) for base in mirrors):
        raise TypeError("mirrors must be a sequence of base URL strings")
    folder = _resolve_dir(data_dir, kind)

    paths = {stem: _existing(folder, stem) for stem in IDX_FILES}
    missing = [stem for stem, path in paths.items() if path is None]
    if missing and not download:
        names = ", ".join(f"{stem}.gz" for stem in missing)
        raise FileNotFoundError(
            f"{_title(kind)} files missing from {folder}: {names}; {_where_hint(kind)}, or "
            "allow download=True"
        )
    if missing:
        created = [parent for parent in (folder, *folder.parents) if not parent.exists()]
        folder.mkdir(parents=True, exist_ok=True)
        try:
            for stem in missing:
                paths[stem] = _download(folder, kind, stem, list(mirrors), progress)
        except DownloadError:
            for directory in created:  # deepest first; only the empty folders made here
                if any(directory.iterdir()):
                    break
                directory.rmdir()
            raise

    arrays = [_parse_idx(_verify(path, kind, stem), str(path)) for stem, path in paths.items()]
    # The checksums fix the shapes: images (N, 28, 28) uint8, labels (N,) uint8.
    splits = []
    for images, labels in (arrays[0:2], arrays[2:4]):
        if flatten:
            images = images.reshape(images.shape[0], -1)
        if normalize:
            images = images.astype(dtype_name) / np.array(255, dtype_name)
        splits.append(Split(images, labels.astype(np.int64)))
    return ImageDataset(*splits)
