"""Special functions numpy lacks, vectorised and in float64 whatever the
input: erf, erfc, and the normal distribution's Φ and φ that GELU needs.

Below |x| = 2.5, erf(x) = (2/√π) e^(-x²) Σ_n x (2x²)ⁿ / (1·3·…·(2n + 1)), a
series of positive terms (no cancellation), 50 of them; from 2.5 on,
erfc(x) = e^(-x²) / (√π K) with the continued fraction
K = x + (1/2) / (x + (2/2) / (x + (3/2) / (x + …))), 40 levels deep,
evaluated from the bottom. erf is within 2e-15 relative of ``math.erf``;
erfc within 2e-12 of ``math.erfc`` below 2.5 (where it is 1 - erf) and
1e-13 from there on (e^(-x²) carries the rounding of x², x² ulps: 7e-15 at
x = 27, where erfc is 1e-319; tests/test_activations.py). Each is a fixed number of array
operations, so a batch costs no Python loop over its elements.

The GPU computes these in float32 with fitted polynomials
(shaders/activation_functions.wgsl), checked against these.
"""

from __future__ import annotations

import math

import numpy as np

#: below this |x| the series, from it on the continued fraction
SERIES_BELOW = 2.5
SERIES_TERMS = 50
FRACTION_DEPTH = 40

_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_FRAC_1_SQRT_2 = 1.0 / math.sqrt(2.0)
_FRAC_1_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _erf_series(x: np.ndarray) -> np.ndarray:
    """erf(x) for |x| < SERIES_BELOW."""
    x2 = x * x
    term = x.copy()
    total = x.copy()
    for n in range(1, SERIES_TERMS):
        term *= 2.0 * x2 / (2 * n + 1)
        total += term
    return _TWO_OVER_SQRT_PI * np.exp(-x2) * total


def _erfc_fraction(x: np.ndarray) -> np.ndarray:
    """erfc(x) for x >= SERIES_BELOW (and NaN for NaN)."""
    k = x.copy()
    for n in range(FRACTION_DEPTH, 0, -1):
        k = x + (0.5 * n) / k
    return np.exp(-x * x) * (0.5 * _TWO_OVER_SQRT_PI) / k


def erf(x) -> np.ndarray:
    """erf(x) elementwise, in float64."""
    x = np.asarray(x, np.float64)
    out = np.empty_like(x)
    small = np.abs(x) < SERIES_BELOW
    with np.errstate(over="ignore", invalid="ignore"):
        out[small] = _erf_series(x[small])
        large = x[~small]  # NaN too
        out[~small] = np.copysign(1.0 - _erfc_fraction(np.abs(large)), large)
    return out


def erfc(x) -> np.ndarray:
    """erfc(x) = 1 - erf(x) elementwise, in float64, accurate in relative
    terms where it is small (x large)."""
    x = np.asarray(x, np.float64)
    out = np.empty_like(x)
    small = np.abs(x) < SERIES_BELOW
    with np.errstate(over="ignore", invalid="ignore"):
        out[small] = 1.0 - _erf_series(x[small])
        large = x[~small]
        tail = _erfc_fraction(np.abs(large))
        out[~small] = np.where(large < 0, 2.0 - tail, tail)
    return out


def normal_cdf(x) -> np.ndarray:
    """Φ(x) = erfc(-x / √2) / 2, the standard normal distribution, in float64."""
    return 0.5 * erfc(-_FRAC_1_SQRT_2 * np.asarray(x, np.float64))


def normal_pdf(x) -> np.ndarray:
    """φ(x) = e^(-x²/2) / √(2π), its density, in float64."""
    x = np.asarray(x, np.float64)
    with np.errstate(over="ignore"):
        return _FRAC_1_SQRT_2PI * np.exp(-0.5 * x * x)
