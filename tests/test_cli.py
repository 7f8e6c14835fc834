"""`python -m gradwatch demo` and `python -m gradwatch diagnose`."""

import json
import subprocess
import sys

import numpy as np
import pytest

from gradwatch.__main__ import main
from gradwatch.demo import run_demo


pytestmark = pytest.mark.usefixtures("one_thread")


def test_demo_prints_tables_and_diagnoses_and_writes_plots(tmp_path):
    pytest.importorskip("matplotlib")
    lines = []
    result = run_demo(out_dir=tmp_path / "demo", iterations=200, progress=False,
                      out=lines.append)
    text = "\n".join(lines)
    for title in ("1. Weight initialisation", "2. Batch normalisation", "Plots"):
        assert title in text
    assert "weight-gradient norm per layer while training" in text
    assert text.count("verdict:") == 5
    diagnoses = result["diagnoses"]
    assert diagnoses["std 0.01"].verdict == "vanishing"
    assert diagnoses["He"].verdict == "healthy"
    assert diagnoses["std 0.01, without batch norm"].verdict == "vanishing"
    assert diagnoses["std 0.01, with batch norm"].verdict == "healthy"
    assert (tmp_path / "demo" / "weight_init_comparison.png").stat().st_size > 1000
    assert (tmp_path / "demo" / "batchnorm_comparison.png").stat().st_size > 1000


def test_demo_without_matplotlib_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    lines = []
    run_demo(out_dir=tmp_path, iterations=20, progress=False, out=lines.append)
    assert any("pip install gradwatch[plot]" in line for line in lines)
    assert not list(tmp_path.iterdir())


def test_diagnose_command(capsys):
    assert main(["diagnose", "--sizes", "64,100,100,100,10", "--activation", "sigmoid",
                 "--init", "0.01", "--data", "digits"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("verdict: vanishing")
    assert "remedies, most relevant first:" in text


def test_diagnose_command_json_with_steps_and_batchnorm(capsys):
    assert main(["diagnose", "--sizes", "32,50,50,5", "--batchnorm", "--steps", "3",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "healthy"
    assert data["training"]["steps"] == 3


def test_diagnose_command_reads_an_npz(tmp_path, capsys):
    rng = np.random.default_rng(0)
    path = tmp_path / "batch.npz"
    np.savez(path, x=rng.random((40, 12)), y=rng.integers(0, 3, 40))
    assert main(["diagnose", "--sizes", "12,20,3", "--data", str(path)]) == 0
    assert "verdict:" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["diagnose"], "--sizes"),
    (["diagnose", "--sizes", "10,x,2"], "comma-separated integers"),
    (["diagnose", "--sizes", "10"], "at least 2 sizes"),
    (["diagnose", "--sizes", "10,2", "--activation", "swish"], "invalid choice"),
    (["diagnose", "--sizes", "10,2", "--batch-size", "1"], "--batch-size must be >= 2"),
    (["diagnose", "--sizes", "10,2", "--steps", "-1"], "--steps must be >= 0"),
    (["diagnose", "--sizes", "10,2", "--lr", "0"], "--lr must be > 0"),
    (["diagnose", "--sizes", "10,2", "--data", "cifar"], "--data must be random"),
    (["diagnose", "--sizes", "10,2", "--data", "digits"], "--sizes starts with 10"),
    (["demo", "--iterations", "0"], "--iterations must be >= 1"),
])
def test_bad_arguments_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["diagnose", "--sizes", "10,20,2", "--init", "xavier"], "ambiguous"),
    (["diagnose", "--sizes", "10,20,2", "--data", "/nonexistent/batch.npz"], "No such file"),
])
def test_user_errors_are_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def test_help_everywhere():
    for command in ([], ["demo"], ["diagnose"], ["experiment"]):
        completed = subprocess.run([sys.executable, "-m", "gradwatch", *command, "--help"],
                                   capture_output=True, text=True, timeout=120)
        assert completed.returncode == 0, completed.stderr
        assert "usage: python -m gradwatch" in completed.stdout
