"""save/load: exact round trips of every kind of network, and a clear ValueError for truncated,
corrupted, mismatched and hostile files."""

import io
import json
import os
import pickle
import warnings
import zipfile

import numpy as np
import pytest

import gradwatch
from gradwatch import optim
from gradwatch.io import DESCRIPTION_KEY, FORMAT_VERSION


pytestmark = pytest.mark.usefixtures("one_thread")

ARCHITECTURES = [
    dict(layer_sizes=(4, 6, 3)),
    dict(layer_sizes=(4, 6, 6, 3), batchnorm=True, residual=True, dropout=0.25),
    dict(layer_sizes=(4, 5, 5, 2), activation=["tanh", "leaky_relu"], init=["xavier_uniform",
         0.05, "lecun_normal"], dropout=[0.0, 0.5], loss="binary_cross_entropy_with_logits",
         bn_momentum=0.3, bn_eps=1e-3, batchnorm=True),
    dict(layer_sizes=(4, 2), loss="mse"),
    dict(layer_sizes=(4, 7, 1), activation="elu", loss="mse", dtype="float64", seed=2**64 - 1),
]


def targets(net, count, rng):
    outputs = net.layer_sizes[-1]
    if net.loss == "softmax_cross_entropy":
        return rng.integers(0, outputs, size=count)
    values = rng.random((count, outputs))
    return (values > 0.5 if net.loss != "mse" else values).astype(net.dtype)


def trained(architecture, steps=3):
    options = dict(architecture)
    options.setdefault("seed", 7)
    net = gradwatch.MLP(options.pop("layer_sizes"), **options)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(9, net.layer_sizes[0])).astype(net.dtype)
    y = targets(net, 9, rng)
    optimizer = optim.SGD(lr=0.05, momentum=0.9)
    for _ in range(steps):
        net.train_step(x, y, optimizer)
    return net, x, y


def assert_same_network(a, b):
    for attribute in ("layer_sizes", "activation", "init", "batchnorm", "residual", "dropout",
                      "loss", "dtype", "seed", "bn_momentum", "bn_eps", "dropout_step"):
        assert getattr(a, attribute) == getattr(b, attribute), attribute
    state_a, state_b = a.state_dict(), b.state_dict()
    assert list(state_a) == list(state_b)
    for name in state_a:
        assert state_a[name].dtype == state_b[name].dtype
        np.testing.assert_array_equal(state_a[name], state_b[name], err_msg=name)


def saved_bytes(net) -> bytes:
    buffer = io.BytesIO()
    net.save(buffer)
    return buffer.getvalue()


def load_bytes(data: bytes):
    return gradwatch.load(io.BytesIO(data))


# --- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("architecture", ARCHITECTURES, ids=lambda a: str(a["layer_sizes"]))
def test_round_trip_is_exact_and_training_continues_identically(tmp_path, architecture):
    net, x, y = trained(architecture)
    path = tmp_path / "model.npz"
    net.save(path)
    loaded = gradwatch.load(path)
    assert_same_network(net, loaded)
    np.testing.assert_array_equal(loaded.forward(x), net.forward(x))
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))
    # Same dropout step, same masks: a fresh optimiser on each takes bitwise equal steps.
    first, second = optim.Adam(lr=0.01), optim.Adam(lr=0.01)
    for _ in range(2):
        assert net.train_step(x, y, first) == loaded.train_step(x, y, second)
    assert_same_network(net, loaded)


def test_file_layout(tmp_path):
    net, _, _ = trained(ARCHITECTURES[1])
    path = tmp_path / "model"  # written as given: no .npz appended
    net.save(str(path))
    assert os.listdir(tmp_path) == ["model"]  # and no temporary file left behind
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted([DESCRIPTION_KEY, *net.state_dict()])
        description = json.loads(npz[DESCRIPTION_KEY].tobytes().decode("utf-8"))
    assert description["format"] == "gradwatch.mlp"
    assert description["format_version"] == FORMAT_VERSION
    assert description["gradwatch_version"] == gradwatch.__version__
    assert description["dropout_step"] == 3
    assert description["architecture"] == {
        "layer_sizes": [4, 6, 6, 3], "activation": ["relu", "relu"],
        "init": ["he_normal"] * 3, "batchnorm": True, "residual": True,
        "dropout": [0.25, 0.25], "loss": "softmax_cross_entropy", "dtype": "float32",
        "seed": 7, "bn_momentum": 0.1, "bn_eps": 1e-5,
    }
    with zipfile.ZipFile(path) as archive:
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_STORED}


def test_save_replaces_an_existing_file(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(b"old contents")
    net, _, _ = trained(ARCHITECTURES[0])
    net.save(path)
    assert_same_network(net, gradwatch.load(str(path)))
    assert os.listdir(tmp_path) == ["model.npz"]


def test_failed_save_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    path.write_bytes(b"old contents")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", fail)
    net, _, _ = trained(ARCHITECTURES[0])
    with pytest.raises(OSError, match="disk full"):
        net.save(path)
    assert path.read_bytes() == b"old contents" and os.listdir(tmp_path) == ["model.npz"]


def test_save_arguments():
    with pytest.raises(TypeError, match=r"net must be a gradwatch.MLP, got dict"):
        gradwatch.io.save({}, io.BytesIO())


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        gradwatch.load(tmp_path / "absent.npz")


# --- damaged files ------------------------------------------------------------------------------

SMALL = trained(dict(layer_sizes=(3, 4, 2), batchnorm=True), steps=1)[0]
GOOD = saved_bytes(SMALL)


def test_every_truncation_is_a_value_error():
    for length in range(0, len(GOOD), 7):
        with pytest.raises(ValueError, match=r"cannot load"):
            load_bytes(GOOD[:length])


def test_no_single_byte_corruption_changes_the_network_silently():
    # Each flipped byte is either caught (ValueError) or lies in a field that does not matter
    # (zip version numbers, timestamps, ...); it never yields other parameters.
    caught = 0
    for position in range(0, len(GOOD), 4):
        damaged = bytearray(GOOD)
        damaged[position] ^= 0xFF
        try:
            loaded = load_bytes(bytes(damaged))
        except ValueError as error:
            assert str(error).startswith("cannot load")
            caught += 1
        else:
            assert_same_network(SMALL, loaded)
    assert caught > 0.8 * len(range(0, len(GOOD), 4))


def test_flipped_parameter_byte_fails_the_crc():
    data = bytearray(GOOD)
    offset = bytes(data).index(SMALL.state_dict()["dense1.weight"].tobytes())
    data[offset + 5] ^= 0x01
    with pytest.raises(ValueError, match=r"array 'dense1.weight' cannot be read, the file is "
                                         r"corrupted \(Bad CRC-32"):
        load_bytes(bytes(data))


@pytest.mark.parametrize("content, match", [
    (b"", r"not a valid .npz file"),
    (b"just some text, not a model", r"not a valid .npz file"),
    (pickle.dumps({"dense0.weight": [1.0]}), r"not a valid .npz file"),
])
def test_not_an_npz(content, match):
    with pytest.raises(ValueError, match=match):
        load_bytes(content)


def test_a_plain_npy_file():
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3))
    with pytest.raises(ValueError, match=r"holds a single .npy array, not a gradwatch .npz"):
        load_bytes(buffer.getvalue())


# --- hostile or mismatched files ----------------------------------------------------------------


def description_of(net) -> dict:
    with np.load(io.BytesIO(saved_bytes(net)), allow_pickle=False) as npz:
        return json.loads(npz[DESCRIPTION_KEY].tobytes().decode("utf-8"))


def npz_bytes(arrays: dict, description=None, compressed=False) -> bytes:
    """An .npz of ``arrays`` plus a description (a dict as JSON, bytes as they are)."""
    arrays = dict(arrays)
    if description is not None:
        if isinstance(description, dict):
            description = json.dumps(description).encode("utf-8")
        arrays[DESCRIPTION_KEY] = np.frombuffer(description, dtype=np.uint8)
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


STATE = SMALL.state_dict()
DESCRIPTION = description_of(SMALL)


def with_architecture(**changes) -> dict:
    description = json.loads(json.dumps(DESCRIPTION))
    description["architecture"].update(changes)
    return description


def with_top(**changes) -> dict:
    description = json.loads(json.dumps(DESCRIPTION))
    description.update(changes)
    return description


def replaced(name, value) -> dict:
    arrays = dict(STATE)
    arrays[name] = value
    return arrays


def without(name) -> dict:
    return {key: value for key, value in STATE.items() if key != name}


@pytest.mark.parametrize("data, match", [
    (npz_bytes(STATE), r"has no 'gradwatch_description' entry; it was not written by gradwatch"),
    (npz_bytes(STATE, DESCRIPTION, compressed=True), r"is compressed"),
    (npz_bytes({**STATE, "extra": np.zeros(2, np.float32)}, DESCRIPTION),
     r"missing \[\], unexpected members \['extra.npy'\]"),
    (npz_bytes(without("bn0.running_var"), DESCRIPTION), r"missing \['bn0.running_var'\]"),
    (npz_bytes(replaced("dense0.weight", STATE["dense0.weight"].astype(np.float64)),
               DESCRIPTION), r"array 'dense0.weight' must have dtype float32 .*got <f8"),
    (npz_bytes(replaced("dense0.bias", STATE["dense0.bias"].astype(">f4")), DESCRIPTION),
     r"array 'dense0.bias' must have dtype float32 \(native byte order\), got >f4"),
    (npz_bytes(replaced("dense0.weight", STATE["dense0.weight"].T.copy()), DESCRIPTION),
     r"array 'dense0.weight' must have shape \(3, 4\) for this architecture, got \(4, 3\)"),
    (npz_bytes(replaced("dense0.weight", np.asfortranarray(STATE["dense0.weight"])),
               DESCRIPTION), r"stored in Fortran order"),
    (npz_bytes(replaced("dense1.bias", np.array([np.nan, 1], np.float32)), DESCRIPTION),
     r"dense1.bias contains NaN or infinity"),
    (npz_bytes(replaced("bn0.running_var", -np.ones(4, np.float32)), DESCRIPTION),
     r"bn0.running_var must be >= 0"),
    (npz_bytes(STATE, with_architecture(dtype="float64")),
     r"array 'dense0.weight' must have dtype float64"),
    (npz_bytes(STATE, with_architecture(layer_sizes=[3, 10**9, 2])),
     r"array 'dense0.weight' must have shape \(3, 1000000000\)"),
    (npz_bytes(STATE, with_architecture(layer_sizes=[3, 2**31, 2])),
     r"layer_sizes\[1\] must be an integer in \[1, 2147483647\], got 2147483648"),
    (npz_bytes(STATE, with_architecture(batchnorm=False)),
     r"unexpected members \['bn0.beta.npy', 'bn0.gamma.npy'"),
    (npz_bytes(STATE, with_architecture(activation=["swish"])),
     r"unknown activation 'swish'; valid values are"),
    (npz_bytes(STATE, with_architecture(activation=["relu", "relu"])),
     r"activation must be a list of 1 strings, got 2 entries"),
    (npz_bytes(STATE, with_architecture(bn_eps=-1.0)), r"bn_eps must be > 0"),
    (npz_bytes(STATE, with_architecture(seed=True)), r"seed must be an integer in \[0, 2\*\*64\)"),
    (npz_bytes(STATE, with_architecture(dropout=["0.1"])),
     r"dropout\[0\] must be a number, got '0.1'"),
    (npz_bytes(STATE, with_architecture(batchnorm=1)), r"batchnorm must be true or false"),
    (npz_bytes(STATE, with_architecture(extra=1)), r"architecture must have the keys .*"
                                                   r"unexpected \['extra'\]"),
    (npz_bytes(STATE, with_top(format_version=2)),
     r"format version 2, written by a newer gradwatch; this version reads format version 1"),
    (npz_bytes(STATE, with_top(format="keras")), r"format is 'keras', expected 'gradwatch.mlp'"),
    (npz_bytes(STATE, with_top(dropout_step=-1)), r"dropout_step must be an integer"),
    (npz_bytes(STATE, with_top(architecture=[])), r"architecture must be a JSON object"),
    (npz_bytes(STATE, b"[1, 2]"), r"the description must be a JSON object, got list"),
    (npz_bytes(STATE, b"{not json"), r"the description is not valid JSON"),
    (npz_bytes(STATE, b"\xff\xfe"), r"the description is not UTF-8 text"),
    (npz_bytes(STATE, b'{"seed": NaN}'), r"the description contains NaN"),
    (npz_bytes(STATE, b'{"format": 1, "format": 2}'), r"has the key 'format' twice"),
    (npz_bytes(STATE, b"[" * 100000 + b"]" * 100000), r"nested too deeply"),
], ids=lambda value: value if isinstance(value, str) else "file")
def test_hostile_and_mismatched_files(data, match):
    with pytest.raises(ValueError, match=r"cannot load .*" + match):
        load_bytes(data)


def test_description_of_another_dtype():
    arrays = {**STATE, DESCRIPTION_KEY: np.frombuffer(json.dumps(DESCRIPTION).encode(),
                                                      np.uint8).astype(np.float32)}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with pytest.raises(ValueError, match=r"'gradwatch_description' must be a uint8 vector"):
        load_bytes(buffer.getvalue())


def test_object_arrays_are_refused_without_unpickling():
    buffer = io.BytesIO()
    np.savez(buffer, **replaced("dense0.bias", np.array([{"a": 1}, None], dtype=object)),
             **{DESCRIPTION_KEY: np.frombuffer(json.dumps(DESCRIPTION).encode(), np.uint8)})
    with pytest.raises(ValueError, match=r"array 'dense0.bias' must have dtype float32 .*got "
                                         r"\|O"):
        load_bytes(buffer.getvalue())


def zip_with(extra_members: dict, base: bytes = GOOD) -> bytes:
    """GOOD with members appended by name (zipfile allows any name, and duplicates)."""
    buffer = io.BytesIO(base)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile's "Duplicate name" warning
        with zipfile.ZipFile(buffer, "a") as archive:
            for name, data in extra_members.items():
                archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize("name", ["../evil.npy", "/etc/passwd.npy", "dir/", "dense0.weight"])
def test_unexpected_member_names(name):
    with pytest.raises(ValueError, match=r"unexpected members"):
        load_bytes(zip_with({name: b"\x93NUMPY"}))


def test_duplicate_member_name():
    with pytest.raises(ValueError, match=r"lists a member name twice"):
        load_bytes(zip_with({"dense0.bias.npy": GOOD[:10]}))


def test_too_many_members(monkeypatch):
    monkeypatch.setattr(gradwatch.io, "MAX_LAYERS", 2)  # at most 1 + 6 * 2 members
    present = len(zipfile.ZipFile(io.BytesIO(GOOD)).namelist())
    members = {f"m{i}.npy": b"" for i in range(14 - present)}
    with pytest.raises(ValueError, match=r"has 14 members; a gradwatch file has at most 13"):
        load_bytes(zip_with(members))


def test_zip_directory_claiming_more_data_than_the_file():
    # Raise both sizes of one member in the central directory (as a hostile writer could):
    # nothing of that size may be allocated.
    data = bytearray(GOOD)
    name = b"dense0.weight.npy"
    entry = GOOD.index(b"PK\x01\x02")
    while bytes(data[entry + 46:entry + 46 + len(name)]) != name:
        entry = GOOD.index(b"PK\x01\x02", entry + 4)
    data[entry + 20:entry + 28] = (2**31).to_bytes(4, "little") * 2
    with pytest.raises(ValueError, match=r"claims more data than the .* bytes of the file"):
        load_bytes(bytes(data))
