import numpy as np
import pytest

from intricate_py.backends import NumpyBackend


@pytest.fixture
def cpu64():
    """The float64 numpy backend, for gradient checks."""
    return NumpyBackend("float64")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
