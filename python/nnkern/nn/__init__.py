"""Layers with explicit forward/backward, torch-compatible names and state_dict keys."""

from .parameter import Parameter
from .module import Module, Sequential
from .linear import *  # noqa: F401,F403
from .activation import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
from .rnn import *  # noqa: F401,F403
from .norm import *  # noqa: F401,F403
from . import utils  # noqa: F401
