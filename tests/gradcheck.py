"""Central differences in float64."""

import numpy as np

STEP = 1e-6


def numeric_gradient(f, x: np.ndarray) -> np.ndarray:
    """dF/dx of the scalar function ``f`` at ``x`` (perturbed in place, restored)."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + STEP
        up = f()
        x[i] = old - STEP
        down = f()
        x[i] = old
        grad[i] = (up - down) / (2 * STEP)
    return grad


def assert_close(analytic, numeric, rtol=1e-6, atol=1e-8):
    np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=atol)
