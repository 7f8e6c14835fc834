"""gradwatch: fast CPU training of deep fully-connected networks, with the gradient flow visible."""

from gradwatch import init, ops, optim, schedules, telemetry, theory, training
from gradwatch.diagnosis import Diagnosis, diagnose
from gradwatch.errors import NonFiniteError
from gradwatch.gradcheck import gradcheck
from gradwatch.io import load
from gradwatch.network import MLP
from gradwatch.runtime import build_info, get_num_threads, set_num_threads
from gradwatch.telemetry import Probe, Telemetry, probe
from gradwatch.training import EarlyStopping, History

__version__ = build_info()["version"]

__all__ = [
    "Diagnosis",
    "EarlyStopping",
    "History",
    "MLP",
    "NonFiniteError",
    "Probe",
    "Telemetry",
    "build_info",
    "diagnose",
    "get_num_threads",
    "gradcheck",
    "init",
    "load",
    "ops",
    "optim",
    "probe",
    "schedules",
    "set_num_threads",
    "sklearn",
    "telemetry",
    "theory",
    "training",
    "__version__",
]


def __getattr__(name: str):
    # gradwatch.sklearn imports scikit-learn (an optional extra): only on first use.
    if name == "sklearn":
        import importlib

        return importlib.import_module("gradwatch.sklearn")
    raise AttributeError(f"module 'gradwatch' has no attribute {name!r}")
