"""gradwatch: fast CPU training of deep fully-connected networks, with the gradient flow visible."""

from gradwatch import init, ops, optim, schedules
from gradwatch.errors import NonFiniteError
from gradwatch.gradcheck import gradcheck
from gradwatch.network import MLP
from gradwatch.runtime import build_info, get_num_threads, set_num_threads

__version__ = build_info()["version"]

__all__ = [
    "MLP",
    "NonFiniteError",
    "build_info",
    "get_num_threads",
    "gradcheck",
    "init",
    "ops",
    "optim",
    "schedules",
    "set_num_threads",
    "__version__",
]
