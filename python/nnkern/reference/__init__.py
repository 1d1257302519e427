"""Plain-NumPy twins of every nnkern kernel.

These are what a careful NumPy user would write (vectorised, in-place where it helps), with the
same signatures and maths as the kernels. Tests check the kernels against them, and benchmarks
report speedups against them.
"""

from .gemm import *  # noqa: F401,F403
from .optim import *  # noqa: F401,F403
from .act import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
from .rnn import *  # noqa: F401,F403
from .norm import *  # noqa: F401,F403
