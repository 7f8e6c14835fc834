"""The textbook experiments: the qualitative facts each one must show (saturation, collapse,
vanishing, He keeping the spread, std 0.01 not learning, batch norm rescuing small weights),
their result objects, the registry, and the `experiment` command line with its exit codes.

Short runs keep the file fast: MNIST subsets (from ../shared/data or $GRADWATCH_DATA, skipped
when absent) and the bundled digits; one thread, as the experiments are about the numbers.
"""

import functools
import json
import math
import subprocess
import sys
import urllib.error

import numpy as np
import pytest
from conftest import shared_data_dir

import gradwatch
from gradwatch import datasets, experiments
from gradwatch.__main__ import main
from gradwatch.experiments import (
    EXPERIMENTS,
    ActivationHistograms,
    BatchnormComparison,
    ExperimentResult,
    WeightInitComparison,
    activation_histograms,
    batchnorm_comparison,
    load_data,
    run,
    weight_init_comparison,
)


SHARED = shared_data_dir()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def histograms():
    return activation_histograms()


@pytest.fixture(scope="module")
def mnist():
    if SHARED is None:
        pytest.skip("the shared MNIST files (../shared/data) are absent")
    return datasets.load_mnist("mnist", SHARED, download=False, progress=False)


# --- activation_histograms -----------------------------------------------------------------------


def row(result, label):
    return result.labels.index(label)


def test_sigmoid_std_1_saturates_and_xavier_does_not(histograms):
    saturated = histograms.saturated_fraction
    # 45-64% of the outputs of every layer sit below 0.01 or above 0.99 (the U shape).
    assert (saturated[row(histograms, "sigmoid, std 1")] > 0.4).all()
    assert (saturated[row(histograms, "sigmoid, Xavier")] < 0.01).all()
    counts = histograms.counts[row(histograms, "sigmoid, std 1"), -1]
    assert counts[0] > 5 * counts[len(counts) // 2] and counts[-1] > 5 * counts[len(counts) // 2]


def test_sigmoid_std_001_collapses_near_one_half(histograms):
    c = row(histograms, "sigmoid, std 0.01")
    np.testing.assert_allclose(histograms.mean[c], 0.5, atol=0.005)
    assert (histograms.std[c, 1:] < 0.02).all()
    assert (histograms.std[row(histograms, "sigmoid, Xavier"), 1:] > 0.1).all()


def test_relu_std_001_vanishes_and_he_keeps_the_spread(histograms):
    small = histograms.std[row(histograms, "relu, std 0.01")]
    assert (small[1:] < small[:-1] / 5).all()  # shrinks ~15-fold per layer
    xavier = histograms.std[row(histograms, "relu, Xavier")]
    assert (xavier[1:] < xavier[:-1]).all() and xavier[-1] < xavier[0] / 3
    he = histograms.std[row(histograms, "relu, He")]
    assert he.min() > 0.5 * he.max() > 0.3
    zero = histograms.zero_fraction[row(histograms, "relu, He")]
    assert ((zero > 0.4) & (zero < 0.65)).all()


def test_histogram_data_against_a_numpy_forward(histograms):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1000, 100), dtype=np.float32)
    seeds = np.random.SeedSequence(0).generate_state(5, np.uint64)
    w = gradwatch.init.weights(100, 100, "he_normal", seed=int(seeds[0]))
    first = np.maximum(x.astype(np.float64) @ w, 0)
    c = row(histograms, "relu, He")
    np.testing.assert_allclose(histograms.activations[c, 0], first, rtol=1e-4, atol=1e-5)
    assert histograms.activations.shape == (6, 5, 1000, 100)
    assert histograms.counts.shape == (6, 5, 30) and histograms.bin_edges.shape == (31,)
    sigmoid = row(histograms, "sigmoid, Xavier")
    assert histograms.counts[sigmoid].sum(axis=1).tolist() == [100000] * 5  # all in (0, 1)
    assert histograms.counts[c, 0].sum() == np.sum((first > 0) & (first <= 1))
    assert np.isnan(histograms.saturated_fraction[c]).all()
    assert np.isnan(histograms.zero_fraction[sigmoid]).all()


def test_histogram_summary_and_dict(histograms):
    text = histograms.summary()
    assert str(histograms) == text
    for label in histograms.labels:
        assert label in text
    assert "'lecun_normal'" in text
    assert "sigmoid, std 1: " in text and "vanishes" in text
    data = histograms.to_dict()
    assert data["experiment"] == "activation_histograms" and "activations" not in data
    assert data["init"] == [1.0, 0.01, "lecun_normal", 0.01, "lecun_normal", "he_normal"]
    assert data["zero_fraction"][0][0] is None  # NaN becomes null
    json.dumps(data, allow_nan=False)


def test_histograms_seed_and_arguments():
    a = activation_histograms(layers=2, width=8, samples=20, seed=1)
    b = activation_histograms(layers=2, width=8, samples=20, seed=1)
    c = activation_histograms(layers=2, width=8, samples=20, seed=2)
    np.testing.assert_array_equal(a.activations, b.activations)
    assert not np.array_equal(a.activations, c.activations)
    with pytest.raises(ValueError, match="layers must be >= 1, got 0"):
        activation_histograms(layers=0)
    with pytest.raises(ValueError, match="hist_range must be a pair"):
        activation_histograms(hist_range=(1, 0))
    with pytest.raises(TypeError, match="seed must be an integer, got float"):
        activation_histograms(seed=1.5)


# --- weight_init_comparison ----------------------------------------------------------------------


def test_weight_init_on_mnist(mnist):
    (x, y), (x_test, y_test) = mnist
    result = weight_init_comparison(((x[:4000], y[:4000]), (x_test[:1000], y_test[:1000])),
                                    iterations=300, progress=False)
    assert isinstance(result, WeightInitComparison)
    assert result.losses.shape == (3, 300) and result.layer_sizes == (784, 100, 100, 100, 100, 10)
    final = dict(zip(result.labels, result.final_loss(50)))
    assert abs(final["std 0.01"] - math.log(10)) < 0.01  # does not learn
    assert final["He"] < 1.2
    assert final["Xavier"] < final["std 0.01"] - 0.1
    accuracy = dict(zip(result.labels, result.test_accuracy))
    assert accuracy["He"] > 0.6 and accuracy["std 0.01"] < 0.25
    text = result.summary()
    assert "std 0.01: the loss stays near ln(10)" in text and "He: the loss falls" in text


def test_weight_init_on_digits_same_batches_and_result():
    result = run("weight_init_comparison", data="digits", iterations=40, batch_size=32,
                 hidden=(16, 16), seed=3, progress=False)
    assert result.layer_sizes == (64, 16, 16, 10) and result.data == "digits"
    assert np.isnan(result.test_accuracy).all() and (result.seconds > 0).all()
    again = weight_init_comparison("digits", iterations=40, batch_size=32, hidden=(16, 16),
                                   seed=3, progress=False)
    np.testing.assert_array_equal(result.losses, again.losses)
    data = result.to_dict()
    assert data["test_accuracy"] == [None] * 3 and len(data["losses"][0]) == 40
    json.dumps(data, allow_nan=False)
    assert "test accuracy" in result.summary()


def test_weight_init_arguments():
    with pytest.raises(ValueError, match="unknown data 'cifar'"):
        weight_init_comparison("cifar")
    with pytest.raises(ValueError, match="iterations must be >= 1"):
        weight_init_comparison("digits", iterations=0)
    with pytest.raises(ValueError, match="data_dir applies to data='mnist' or 'fashion'"):
        weight_init_comparison("digits", data_dir="/tmp")
    with pytest.raises(ValueError, match=r"y must be integer class indices of shape \(3,\)"):
        weight_init_comparison((np.zeros((3, 4)), np.zeros(3)))


# --- batchnorm_comparison ------------------------------------------------------------------------


def test_batchnorm_rescues_small_weights_on_mnist(mnist):
    (x, y), _ = mnist
    result = batchnorm_comparison((x[:1000], y[:1000]), weight_scales=[0.01, 0.003], epochs=6,
                                  progress=False)
    assert result.accuracy.shape == (2, 6) == result.accuracy_batchnorm.shape
    assert (result.accuracy[:, -1] < 0.2).all()  # vanishes without batch norm
    assert (result.accuracy_batchnorm[:, -1] > 0.6).all()
    assert "Batch norm ends ahead at 2 of 2" in result.summary()


def test_batchnorm_on_digits_overflow_and_result():
    result = run("batchnorm_comparison", data="digits", n_train=200, weight_scales=[1e9, 0.01],
                 epochs=2, batch_size=50, hidden=(32, 32, 32), progress=False)
    assert isinstance(result, BatchnormComparison) and result.n_train == 200
    assert result.layer_sizes == (64, 32, 32, 32, 10)
    # Weights N(0, 1e18) without batch norm overflow float32: those steps are skipped and counted.
    assert result.skipped_batches[0, 0] > 0 and result.skipped_batches[:, 1].sum() == 0
    assert "overflowed steps" in result.summary()
    json.dumps(result.to_dict(), allow_nan=False)
    with pytest.raises(ValueError, match="weight_scales must be one or more numbers >= 0"):
        batchnorm_comparison("digits", weight_scales=[-1.0])


# --- results, registry, data ---------------------------------------------------------------------


def test_registry_and_run():
    assert set(EXPERIMENTS) == {"activation_histograms", "weight_init_comparison",
                                "batchnorm_comparison", "depth_sweep", "batchnorm_batch_size"}
    for name, function in EXPERIMENTS.items():
        assert getattr(experiments, name) is function
    assert isinstance(run("activation_histograms", layers=1, width=4, samples=3),
                      ActivationHistograms)
    with pytest.raises(ValueError, match="unknown name 'depth'; valid values are "
                                         "'activation_histograms'"):
        run("depth")
    with pytest.raises(TypeError):
        ExperimentResult()  # abstract: summary and _draw are the subclass's


def test_plot_writes_an_image(tmp_path):
    pytest.importorskip("matplotlib")
    small = activation_histograms(layers=1, width=8, samples=50)
    path = small.plot(tmp_path / "sub" / "hist.png")
    assert path.read_bytes().startswith(b"\x89PNG")
    curves = weight_init_comparison("digits", iterations=5, hidden=(8,), progress=False)
    assert curves.plot(tmp_path / "curves.svg").read_text().lstrip().startswith("<?xml")
    scales = batchnorm_comparison("digits", n_train=20, weight_scales=[1, 0.1, 0.01],
                                  epochs=1, batch_size=10, hidden=(8,), progress=False)
    assert scales.plot(tmp_path / "bn.png").stat().st_size > 1000


def test_plot_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    small = activation_histograms(layers=1, width=4, samples=3)
    with pytest.raises(ImportError, match=r"pip install gradwatch\[plot\]"):
        small.plot(tmp_path / "hist.png")
    assert not (tmp_path / "hist.png").exists()


def test_load_data_forms():
    x = np.arange(12, dtype=np.float64).reshape(3, 4)
    y = np.array([0, 1, 2], np.int32)
    data = load_data((x, y))
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert data.x_test is None and data.name == "arrays"
    split = load_data(((x, y), (x[:2], y[:2])))
    assert split.x_test.shape == (2, 4)
    with pytest.raises(ValueError, match="the test images have 3 features, the training images 4"):
        load_data(((x, y), (x[:, :3], y)))
    with pytest.raises(TypeError, match="data must be 'mnist', 'fashion', 'digits', a pair"):
        load_data(x)


# --- command line --------------------------------------------------------------------------------


@pytest.mark.parametrize("matplotlib", ["installed", "missing"])
def test_cli_writes_summary_data_and_plot(matplotlib, tmp_path, monkeypatch, capsys):
    if matplotlib == "installed":
        pytest.importorskip("matplotlib")
    else:
        monkeypatch.setitem(sys.modules, "matplotlib", None)
        monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    small = functools.partial(activation_histograms, layers=1, width=6, samples=10)
    monkeypatch.setitem(EXPERIMENTS, "activation_histograms", small)
    assert main(["experiment", "activation_histograms", "--seed", "2", "--out",
                 str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Activation histograms: 1 layers of 6 units")
    data = json.loads((tmp_path / "out" / "activation_histograms.json").read_text())
    assert data["seed"] == 2 and data["samples"] == 10
    plot = tmp_path / "out" / "activation_histograms.png"
    if matplotlib == "installed":
        assert f"plot written to {plot}" in out and plot.is_file()
    else:
        assert "no plot: plotting needs matplotlib: pip install gradwatch[plot]" in out
        assert not plot.exists()


def test_cli_passes_data_seed_and_progress(monkeypatch, capsys):
    calls = []
    quick = functools.partial(weight_init_comparison, iterations=10, hidden=(8,))

    def recording(**kwargs):
        calls.append(kwargs)
        return quick(**kwargs)

    recording.__signature__ = __import__("inspect").signature(quick)
    recording.__doc__ = weight_init_comparison.__doc__
    monkeypatch.setitem(EXPERIMENTS, "weight_init_comparison", recording)
    assert main(["experiment", "weight_init_comparison", "--data", "digits", "--seed", "4",
                 "--no-progress"]) == 0
    assert calls == [{"data": "digits", "seed": 4, "progress": False}]
    assert "--out DIR writes the plot" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["experiment", "nope"], "invalid choice: 'nope'"),
    (["experiment", "activation_histograms", "--data", "mnist"],
     "experiment activation_histograms takes no --data"),
    (["experiment", "weight_init_comparison", "--seed", "-1"], "--seed must be >= 0, got -1"),
    (["experiment", "weight_init_comparison", "--data", "digits", "--data-dir", "x"],
     "--data-dir is for --data mnist or fashion"),
    (["experiment", "batchnorm_comparison", "--data", "imagenet"], "invalid choice: 'imagenet'"),
])
def test_cli_bad_arguments_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_missing_dataset_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    def offline(url, timeout):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(datasets, "_urlopen", offline)
    code = main(["experiment", "weight_init_comparison", "--data-dir", str(tmp_path / "none"),
                 "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("python -m gradwatch experiment: error: MNIST file "
                          "train-images-idx3-ubyte.gz is missing")
    assert "--data-dir DIR" in err and "GRADWATCH_DATA" in err


def test_cli_damaged_dataset_exit_2(tmp_path, capsys):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for stem in datasets.IDX_FILES:
        (folder / f"{stem}.gz").write_bytes(b"damaged")
    assert main(["experiment", "batchnorm_comparison", "--data-dir", str(tmp_path),
                 "--no-progress"]) == 2
    assert "does not match the published MNIST file" in capsys.readouterr().err


def test_cli_help_in_a_subprocess():
    done = subprocess.run([sys.executable, "-m", "gradwatch", "experiment", "--help"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0
    for name in EXPERIMENTS:
        assert name in done.stdout
    assert "--data-dir DIR" in done.stdout


def test_cli_unwritable_out_exit_2(tmp_path, monkeypatch, capsys):
    small = functools.partial(activation_histograms, layers=1, width=4, samples=5)
    monkeypatch.setitem(EXPERIMENTS, "activation_histograms", small)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["experiment", "activation_histograms", "--out", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m gradwatch experiment: error: ") and err.count("\n") == 1


# --- depth_sweep ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sweep():
    return experiments.depth_sweep(depths=(2, 8), width=64, samples=128, progress=False)


def test_depth_sweep_follows_mean_field_theory(sweep):
    assert sweep.measured_ratio.shape == (3, 3, 2, 9)
    assert np.isnan(sweep.measured_ratio[:, :, 0, 3:]).all()
    measured, predicted = sweep.input_ratio("measured"), sweep.input_ratio("predicted")
    # Within a factor 2 of the prediction even where the ratio spans 60 decades.
    assert np.all(np.abs(np.log10(measured / predicted)) < 0.3)
    a, i = sweep.activations.index, sweep.init_labels.index
    # std 0.01 vanishes for every activation, deeper is worse.
    for activation in sweep.activations:
        assert measured[a(activation), i("std 0.01"), 1] < 1e-8
        assert measured[a(activation), i("std 0.01"), 1] < measured[a(activation),
                                                                     i("std 0.01"), 0]
    # ReLU with He is critical: the ratio stays of order 1 at any depth.
    assert 0.3 < measured[a("relu"), i("He"), 1] < 3


def test_depth_sweep_summary_dict_and_arguments(sweep):
    text = sweep.summary()
    assert "relu, He" in text and "depth 8" in text
    data = sweep.to_dict()
    json.dumps(data, allow_nan=False)
    assert data["experiment"] == "depth_sweep" and "grad_weight_norm" not in data
    with pytest.raises(ValueError, match="depth"):
        experiments.depth_sweep(depths=(0,), progress=False)
    with pytest.raises(ValueError, match="samples"):
        experiments.depth_sweep(samples=1, progress=False)
    with pytest.raises(ValueError, match="activation"):
        experiments.depth_sweep(activations=("swish",), progress=False)
    digits = experiments.depth_sweep("digits", depths=(3,), width=64, samples=64,
                                     activations=("relu",), progress=False)
    assert digits.data == "digits" and digits.measured_ratio.shape == (1, 3, 1, 4)


# --- batchnorm_batch_size ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bn_batch():
    return experiments.batchnorm_batch_size(
        "digits", depth=6, width=64, batch_sizes=(8, 64, 256), repeats=2, train_steps=40,
        train_batch_size=64, remedy_steps=30, remedy_batch_sizes=(16, 512), progress=False)


def test_batchnorm_batch_size_at_initialisation(bn_batch):
    # The gradient grows per layer at every batch size, more at small ones; theory agrees.
    assert np.all(bn_batch.measured_growth > 1.2)
    assert bn_batch.measured_growth[0] > bn_batch.measured_growth[-1]
    np.testing.assert_allclose(bn_batch.measured_growth, bn_batch.predicted_growth, rtol=0.15)
    assert bn_batch.predicted_growth[-1] == pytest.approx(
        gradwatch.theory.batchnorm_gradient_growth(256))


def test_batchnorm_batch_size_training_and_remedies(bn_batch):
    assert bn_batch.train_loss.shape == bn_batch.train_growth.shape == (40,)
    assert bn_batch.train_cosine.shape == (40,)
    assert np.isfinite(bn_batch.train_growth).all()
    assert bn_batch.train_loss[-5:].mean() < bn_batch.train_loss[:5].mean()
    assert bn_batch.remedy_loss.shape == (5, 2, 30)
    np.testing.assert_allclose(bn_batch.remedy_lr, [0.1 * 16 / 256, 0.1 * 512 / 256])
    text = bn_batch.summary()
    for remedy in bn_batch.remedies:
        assert remedy in text
    json.dumps(bn_batch.to_dict(), allow_nan=False)


def test_batchnorm_batch_size_arguments():
    with pytest.raises(ValueError, match="depth must be >= 3"):
        experiments.batchnorm_batch_size("digits", depth=2, progress=False)
    with pytest.raises(ValueError, match="batch_sizes must be >= 4"):
        experiments.batchnorm_batch_size("digits", batch_sizes=(2, 8), progress=False)
    with pytest.raises(ValueError, match="exceeds"):
        experiments.batchnorm_batch_size("digits", batch_sizes=(4096,), progress=False)
