import os

import numpy as np
import pytest

from intricate_py.backends import NumpyBackend, select_backend
from intricate_py.device_choice import adapters

#: set by `make test`: without an adapter GPU tests fail instead of skipping
REQUIRE_GPU = os.environ.get("INTRICATE_REQUIRE_GPU") == "1"


def _need_gpu():
    if not adapters():
        message = "no wgpu adapter found (on Debian: apt-get install mesa-vulkan-drivers)"
        if REQUIRE_GPU:
            pytest.fail(message + "; INTRICATE_REQUIRE_GPU=1 makes this a failure")
        pytest.skip(message)


@pytest.fixture
def gpu():
    """The wgpu backend (the software adapter is enough)."""
    _need_gpu()
    return select_backend("gpu")


@pytest.fixture(params=["cpu", "gpu"])
def device(request):
    """Each backend in turn, as a Model's device argument."""
    if request.param == "gpu":
        _need_gpu()
    return request.param


@pytest.fixture
def cpu():
    return NumpyBackend("float32")


@pytest.fixture
def cpu64():
    """The float64 numpy backend, for gradient checks."""
    return NumpyBackend("float64")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
