"""Saving and loading networks: one ``.npz`` of arrays with a JSON description.

The file is an uncompressed NumPy ``.npz`` (a zip of ``.npy`` members) holding every array of
:meth:`MLP.state_dict` under its own name, plus the member ``gradwatch_description``: the UTF-8
bytes of a JSON object as a uint8 array (no pickles anywhere)::

    {"format": "gradwatch.mlp", "format_version": 1, "gradwatch_version": "0.1.0",
     "architecture": {"layer_sizes": [...], "activation": [...], "init": [...],
                      "batchnorm": false, "residual": false, "dropout": [...],
                      "loss": "...", "dtype": "float32", "seed": 123,
                      "bn_momentum": 0.1, "bn_eps": 1e-05},
     "dropout_step": 0}

:func:`load` trusts nothing in the file: it reads it with ``allow_pickle=False``, checks the zip
directory, the JSON against the schema above, every member's name, ``.npy`` header, dtype,
shape and size against what the architecture implies before reading any array data, then the
values (finite, variances >= 0) and the CRC of every member, and raises ``ValueError`` saying
what is wrong.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import zipfile
import zlib
from typing import BinaryIO, Union

import numpy as np
from numpy.lib import format as npy_format

__all__ = ["FORMAT", "FORMAT_VERSION", "load", "save"]

FORMAT = "gradwatch.mlp"
FORMAT_VERSION = 1
DESCRIPTION_KEY = "gradwatch_description"

# Limits on what a file may claim, checked before anything is allocated for it.
MAX_DESCRIPTION_BYTES = 1 << 20
MAX_LAYERS = 4096
MAX_WIDTH = 2**31 - 1

_TOP_KEYS = ("format", "format_version", "gradwatch_version", "architecture", "dropout_step")
_ARCHITECTURE_KEYS = ("layer_sizes", "activation", "init", "batchnorm", "residual", "dropout",
                      "loss", "dtype", "seed", "bn_momentum", "bn_eps")
_DTYPES = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}
_BN_FIELDS = ("gamma", "beta", "running_mean", "running_var")
# What the zip and .npy readers raise for damaged data (zipfile raises NotImplementedError for
# unknown versions or methods, RuntimeError for encryption, EOFError for short members).
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError,
                RuntimeError)

PathOrFile = Union[str, os.PathLike, BinaryIO]


# --- save --------------------------------------------------------------------------------------


def _description(net) -> dict:
    from gradwatch import __version__

    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "gradwatch_version": __version__,
        "architecture": {
            "layer_sizes": list(net.layer_sizes),
            "activation": list(net.activation),
            "init": [scheme if isinstance(scheme, str) else float(scheme) for scheme in net.init],
            "batchnorm": net.batchnorm,
            "residual": net.residual,
            "dropout": [float(p) for p in net.dropout],
            "loss": net.loss,
            "dtype": net.dtype.name,
            "seed": int(net.seed),
            "bn_momentum": float(net.bn_momentum),
            "bn_eps": float(net.bn_eps),
        },
        "dropout_step": int(net.dropout_step),
    }


def save(net, file: PathOrFile) -> None:
    """Write ``net`` to ``file`` as one ``.npz``; ``MLP.save`` calls this.

    Parameters
    ----------
    net : gradwatch.MLP
    file : str, os.PathLike or binary file object
        A path is written exactly as given (no ``.npz`` is appended) through a temporary file
        in the same directory that replaces it at the end, so an interrupted save never leaves
        a truncated file behind. A file object is written from its current position.

    Notes
    -----
    Parameters, batch-norm running statistics, the architecture, the seed and the dropout
    step are saved, so a loaded network predicts bit for bit the same and continues training
    with the same dropout masks. Optimiser state is not saved (see
    :meth:`gradwatch.optim.Optimizer.state_dict`), nor are the telemetry records and options:
    a loaded network starts with an empty ``telemetry`` and the default options.
    """
    from gradwatch.network import MLP

    if not isinstance(net, MLP):
        raise TypeError(f"net must be a gradwatch.MLP, got {type(net).__name__}")
    text = json.dumps(_description(net), sort_keys=True, allow_nan=False)
    arrays = {DESCRIPTION_KEY: np.frombuffer(text.encode("utf-8"), dtype=np.uint8)}
    arrays.update(net.state_dict())
    if hasattr(file, "write"):
        np.savez(file, **arrays)
        return
    path = os.fspath(file)
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=".gradwatch-", suffix=".npz.tmp", dir=directory)
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **arrays)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


# --- load --------------------------------------------------------------------------------------


class _Invalid(ValueError):
    """Internal: a problem with the file, reported by load with the file's name."""


def _check_keys(where: str, mapping: dict, expected: tuple) -> None:
    missing = [key for key in expected if key not in mapping]
    unexpected = sorted(key for key in mapping if key not in expected)
    if missing or unexpected:
        raise _Invalid(f"{where} must have the keys {list(expected)}; missing {missing}, "
                       f"unexpected {_shortened(unexpected)}")


def _shortened(names: list) -> str:
    shown = [repr(name)[:80] for name in names[:8]]
    more = f", ... ({len(names)} in all)" if len(names) > 8 else ""
    return "[" + ", ".join(shown) + more + "]"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _list_of(where: str, value, length: int, test, plural: str, singular: str) -> list:
    if not isinstance(value, list) or len(value) != length:
        got = f"{len(value)} entries" if isinstance(value, list) else type(value).__name__
        raise _Invalid(f"{where} must be a list of {length} {plural}, got {got}")
    for index, item in enumerate(value):
        if not test(item):
            raise _Invalid(f"{where}[{index}] must be {singular}, got {item!r:.80}")
    return value


def _checked_description(raw: np.ndarray) -> dict:
    try:
        text = raw.tobytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise _Invalid(f"the description is not UTF-8 text: {error}") from None

    def no_constants(name: str):
        raise _Invalid(f"the description contains {name}, which JSON does not allow")

    def no_duplicates(pairs: list) -> dict:
        result = {}
        for key, value in pairs:
            if key in result:
                raise _Invalid(f"the description has the key {key!r:.80} twice")
            result[key] = value
        return result

    try:
        description = json.loads(text, parse_constant=no_constants,
                                 object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as error:
        raise _Invalid(f"the description is not valid JSON: {error}") from None
    except RecursionError:
        raise _Invalid("the description is nested too deeply to be a gradwatch description") \
            from None
    if not isinstance(description, dict):
        raise _Invalid(f"the description must be a JSON object, got {type(description).__name__}")
    _check_keys("the description", description, _TOP_KEYS)
    if description["format"] != FORMAT:
        raise _Invalid(f"the description's format is {description['format']!r:.80}, expected "
                       f"{FORMAT!r}")
    version = description["format_version"]
    if not _is_int(version) or version < 1:
        raise _Invalid(f"format_version must be an integer >= 1, got {version!r:.80}")
    if version > FORMAT_VERSION:
        raise _Invalid(f"the file has format version {version}, written by a newer gradwatch; "
                       f"this version reads format version {FORMAT_VERSION}")
    if not isinstance(description["gradwatch_version"], str):
        raise _Invalid("gradwatch_version must be a string")
    step = description["dropout_step"]
    if not _is_int(step) or not 0 <= step < 2**64:
        raise _Invalid(f"dropout_step must be an integer in [0, 2**64), got {step!r:.80}")

    architecture = description["architecture"]
    if not isinstance(architecture, dict):
        raise _Invalid("architecture must be a JSON object")
    _check_keys("architecture", architecture, _ARCHITECTURE_KEYS)
    sizes = architecture["layer_sizes"]
    if not isinstance(sizes, list) or not 2 <= len(sizes) <= MAX_LAYERS + 1:
        raise _Invalid(f"layer_sizes must be a list of 2 to {MAX_LAYERS + 1} integers")
    _list_of("layer_sizes", sizes, len(sizes),
             lambda size: _is_int(size) and 1 <= size <= MAX_WIDTH,
             f"integers in [1, {MAX_WIDTH}]", f"an integer in [1, {MAX_WIDTH}]")
    hidden = len(sizes) - 2
    _list_of("activation", architecture["activation"], hidden, lambda a: isinstance(a, str),
             "strings", "a string")
    _list_of("init", architecture["init"], hidden + 1,
             lambda scheme: isinstance(scheme, str) or _is_number(scheme),
             "strings or numbers", "a string or a number")
    _list_of("dropout", architecture["dropout"], hidden, _is_number, "numbers", "a number")
    for key in ("batchnorm", "residual"):
        if not isinstance(architecture[key], bool):
            raise _Invalid(f"{key} must be true or false, got {architecture[key]!r:.80}")
    if architecture["dtype"] not in _DTYPES:
        raise _Invalid(f"dtype must be 'float32' or 'float64', got {architecture['dtype']!r:.80}")
    if not isinstance(architecture["loss"], str):
        raise _Invalid("loss must be a string")
    seed = architecture["seed"]
    if not _is_int(seed) or not 0 <= seed < 2**64:
        raise _Invalid(f"seed must be an integer in [0, 2**64), got {seed!r:.80}")
    for key in ("bn_momentum", "bn_eps"):
        if not _is_number(architecture[key]):
            raise _Invalid(f"{key} must be a number, got {architecture[key]!r:.80}")
    return description


def _expected_arrays(architecture: dict) -> dict:
    """name -> shape of every array the architecture implies (state_dict's keys)."""
    sizes = architecture["layer_sizes"]
    layers = len(sizes) - 1
    shapes = {}
    for i in range(layers):
        shapes[f"dense{i}.weight"] = (sizes[i], sizes[i + 1])
        shapes[f"dense{i}.bias"] = (sizes[i + 1],)
        if architecture["batchnorm"] and i < layers - 1:
            for field in _BN_FIELDS:
                shapes[f"bn{i}.{field}"] = (sizes[i + 1],)
    return shapes


def _npy_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> tuple:
    """(shape, fortran_order, dtype, data offset) from a member's .npy header."""
    try:
        with archive.open(info) as member:
            version = npy_format.read_magic(member)
            if version == (1, 0):
                shape, fortran_order, dtype = npy_format.read_array_header_1_0(member)
            elif version == (2, 0):
                shape, fortran_order, dtype = npy_format.read_array_header_2_0(member)
            else:
                raise _Invalid(f"array {name!r} has .npy format version {version}, expected "
                               "1.0 or 2.0")
            offset = member.tell()
    except _Invalid:
        raise
    except _READ_ERRORS as error:
        raise _Invalid(f"array {name!r} cannot be read, the file is corrupted ({error})") \
            from None
    except ValueError as error:
        raise _Invalid(f"array {name!r} has no valid .npy header: {error}") from None
    return shape, fortran_order, dtype, offset


def _checked_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str,
                    shape: tuple, dtype: np.dtype) -> None:
    found_shape, fortran_order, found_dtype, offset = _npy_header(archive, info, name)
    if found_dtype != dtype:
        raise _Invalid(f"array {name!r} must have dtype {dtype.name} (native byte order), got "
                       f"{found_dtype.str}")
    if tuple(found_shape) != tuple(shape):
        raise _Invalid(f"array {name!r} must have shape {tuple(shape)} for this architecture, "
                       f"got {tuple(found_shape)}")
    if fortran_order and len(shape) > 1:
        raise _Invalid(f"array {name!r} is stored in Fortran order; expected C order")
    expected_size = offset + math.prod(shape) * dtype.itemsize
    if info.file_size != expected_size:
        raise _Invalid(f"array {name!r} holds {info.file_size - offset} bytes of data, expected "
                       f"{expected_size - offset} for shape {tuple(shape)} {dtype.name}")


def _file_length(stream) -> int:
    position = stream.tell()
    length = stream.seek(0, os.SEEK_END)
    stream.seek(position)
    return length


def _read(stream) -> tuple[dict, dict]:
    """(description, arrays) from a seekable binary stream, everything checked."""
    length = _file_length(stream)
    try:
        npz = np.load(stream, allow_pickle=False)
    except (ValueError, *_READ_ERRORS) as error:
        raise _Invalid(f"not a valid .npz file ({error})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise _Invalid("it holds a single .npy array, not a gradwatch .npz")
    with npz:
        archive = npz.zip
        infos = archive.infolist()
        names = [info.filename for info in infos]
        limit = 1 + 6 * MAX_LAYERS
        if len(infos) > limit:
            raise _Invalid(f"it has {len(infos)} members; a gradwatch file has at most {limit}")
        if len(set(names)) != len(names):
            raise _Invalid("the zip directory lists a member name twice")
        for info in infos:
            if info.flag_bits & 0x1:
                raise _Invalid(f"member {info.filename!r:.80} is encrypted")
            if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
                raise _Invalid(f"member {info.filename!r:.80} is compressed; gradwatch files are "
                               "stored uncompressed")
        if sum(info.file_size for info in infos) > length:
            raise _Invalid(f"its zip directory claims more data than the {length} bytes of the "
                           "file (truncated or corrupted)")
        by_name = dict(zip(names, infos))

        description_member = DESCRIPTION_KEY + ".npy"
        if description_member not in by_name:
            raise _Invalid(f"it has no {DESCRIPTION_KEY!r} entry; it was not written by "
                           "gradwatch")
        shape, _, dtype, offset = _npy_header(archive, by_name[description_member],
                                              DESCRIPTION_KEY)
        if dtype != np.dtype(np.uint8) or len(shape) != 1 or shape[0] > MAX_DESCRIPTION_BYTES:
            raise _Invalid(f"{DESCRIPTION_KEY!r} must be a uint8 vector of at most "
                           f"{MAX_DESCRIPTION_BYTES} bytes, got {dtype.str} of shape {shape}")
        _checked_member(archive, by_name[description_member], DESCRIPTION_KEY, shape, dtype)
        description = _checked_description(_array(npz, DESCRIPTION_KEY))

        architecture = description["architecture"]
        shapes = _expected_arrays(architecture)
        expected_members = {name + ".npy" for name in shapes} | {description_member}
        missing = sorted(name[:-4] for name in expected_members - set(names))
        unexpected = sorted(set(names) - expected_members)
        if missing or unexpected:
            raise _Invalid(f"its arrays do not match the architecture: missing {missing}, "
                           f"unexpected members {_shortened(unexpected)}")
        dtype = _DTYPES[architecture["dtype"]]
        for name, shape in shapes.items():
            _checked_member(archive, by_name[name + ".npy"], name, shape, dtype)
        arrays = {name: _array(npz, name) for name in shapes}
    return description, arrays


def _array(npz, name: str) -> np.ndarray:
    """A member's data; the zip module checks its CRC once all of it is read."""
    try:
        return npz[name]
    except (ValueError, *_READ_ERRORS) as error:
        raise _Invalid(f"array {name!r} cannot be read, the file is corrupted ({error})") \
            from None


def load(file: PathOrFile):
    """Read a network written by :meth:`MLP.save`.

    Parameters
    ----------
    file : str, os.PathLike or binary file object
        A file object must be seekable (e.g. ``open(path, "rb")`` or ``io.BytesIO``).

    Returns
    -------
    gradwatch.MLP
        The saved network: same architecture, seed and dropout step, parameters and running
        statistics bit for bit.

    Raises
    ------
    ValueError
        If the file is not a gradwatch model or is damaged or hostile, saying what is wrong: not
        a zip/npz, truncated, a CRC mismatch, compressed or encrypted members, a description
        that is not the expected JSON (unknown or missing keys, wrong types, a newer format
        version), member names, dtypes, shapes or sizes other than the architecture implies
        (including object arrays and names like ``../x``), non-finite parameters or negative
        running variances, an architecture the network rejects.
    OSError
        If the file cannot be opened or read (e.g. FileNotFoundError).

    Examples
    --------
    >>> import gradwatch, io
    >>> net = gradwatch.MLP([3, 4, 2], seed=0)
    >>> buffer = io.BytesIO(); net.save(buffer); _ = buffer.seek(0)
    >>> gradwatch.load(buffer).layer_sizes
    (3, 4, 2)
    """
    from gradwatch.network import MLP

    if hasattr(file, "read"):
        source = getattr(file, "name", "the file object")
        opened = None
    else:
        source = os.fspath(file)
        opened = open(source, "rb")
    try:
        description, arrays = _read(opened if opened is not None else file)
    except _Invalid as error:
        raise ValueError(f"cannot load {source!r}: {error}") from None
    finally:
        if opened is not None:
            opened.close()

    architecture = dict(description["architecture"])
    sizes = architecture.pop("layer_sizes")
    try:
        net = MLP(sizes, **architecture)
        net.load_state_dict(arrays)
    except (TypeError, ValueError) as error:
        raise ValueError(f"cannot load {source!r}: {error}") from None
    net.dropout_step = description["dropout_step"]
    return net
