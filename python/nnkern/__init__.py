"""nnkern: fast CPU neural-network kernels for NumPy training loops.

Functional kernels live at the top level (``nk.matmul``, ``nk.adam_step``, ``nk.softmax`` ...),
layers in ``nnkern.nn``, optimizers in ``nnkern.optim`` and a plain-NumPy twin of every kernel in
``nnkern.reference``. All kernels take float32 or float64 NumPy arrays, release the GIL, run on
nnkern's OpenMP threads (``set_num_threads``) and give bitwise identical results for any thread
count.
"""

# The extension finds our OpenBLAS through its RPATH: the copy auditwheel vendors in a repaired
# wheel, or scipy_openblas32's in a source/editable install. Only if that fails (a relocated build)
# do we load scipy_openblas32's library by name. Importing it unconditionally would load a second
# OpenBLAS next to a wheel's vendored one, with its own thread pool, and the two would interpose
# each other's symbols (threadpoolctl limits then reach the wrong copy).
try:
    from . import _core
except ImportError:
    import scipy_openblas32 as _scipy_openblas32  # noqa: F401

    from . import _core
from ._core import (
    blas_config,
    blas_corename,
    default_num_threads,
    get_num_threads,
    get_workspace_limit,
    set_num_threads,
    set_workspace_limit,
    simd_level,
)
from .ops.gemm import *  # noqa: F401,F403
from .ops.optim import *  # noqa: F401,F403
from .ops.act import *  # noqa: F401,F403
from .ops.loss import *  # noqa: F401,F403
from .ops.conv import *  # noqa: F401,F403
from .ops.pool import *  # noqa: F401,F403
from .ops.rnn import *  # noqa: F401,F403
from .ops.norm import *  # noqa: F401,F403
from . import ops, reference  # noqa: E402
from .random import manual_seed  # noqa: E402
from .checkpoint import save, load  # noqa: E402
from .gradcheck import gradcheck  # noqa: E402
from .perceptron import Perceptron  # noqa: E402

__version__ = "0.1.0"


def __getattr__(name):
    # nn, optim and the CLI helpers are imported lazily so `import nnkern` stays fast.
    import importlib

    if name in ("nn", "optim", "bench", "init", "train", "data", "datasets", "augment", "regularization"):
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                raise AttributeError(f"module 'nnkern' has no attribute {name!r}") from None
            raise
    if name == "plot_history":
        from .train import plot_history

        return plot_history
    raise AttributeError(f"module 'nnkern' has no attribute {name!r}")
