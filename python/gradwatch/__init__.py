"""gradwatch: fast CPU training of deep fully-connected networks, with the gradient flow visible."""

from gradwatch import init, ops, optim, schedules
from gradwatch.runtime import build_info, get_num_threads, set_num_threads

__version__ = build_info()["version"]

__all__ = [
    "build_info",
    "get_num_threads",
    "init",
    "ops",
    "optim",
    "schedules",
    "set_num_threads",
    "__version__",
]
