"""Special functions numpy lacks, vectorised and in float64 whatever the
input: erf, erfc, and the normal distribution's Φ and φ that GELU needs.

Below |x| = 0.5, erf(x) = x R(x²); from 0.5 on, erfc(x) = e^(-x²) R(x) up to
4 and e^(-x²) (1/√π - R(1/x²)/x²) / x beyond: W. J. Cody's rational
approximations (Math. Comp. 23, 1969; his CALERF), e^(-x²) computed as
e^(-h²) e^(-(x - h)(x + h)) with h = x rounded down to a sixteenth, so x²'s
rounding is not carried. erf and erfc are within 1e-15 relative of
``math.erf`` and ``math.erfc`` (tests/test_activations.py; erfc below 0.5
is 1 - erf). Each is a fixed number of array operations, so a batch costs
no Python loop over its elements; they replace a 50-term series and a
40-level continued fraction that cost twice as much, GELU's time on the
CPU.

The GPU computes these in float32 with fitted polynomials
(shaders/activation_functions.wgsl), checked against these.
"""

from __future__ import annotations

import math

import numpy as np

#: below this |x| erf's rational function, from it on erfc's
SERIES_BELOW = 0.5
#: from this |x| on erfc's asymptotic form; beyond TAIL_ZERO erfc is below the smallest double
TAIL_FROM, TAIL_ZERO = 4.0, 27.3

_FRAC_1_SQRT_PI = 1.0 / math.sqrt(math.pi)
_FRAC_1_SQRT_2 = 1.0 / math.sqrt(2.0)
_FRAC_1_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

# Cody's coefficients: erf below 0.5, erfc from 0.5 to 4, erfc's tail
_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02, 3.20937758913846947e03,
      1.85777706184603153e-1)
_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03, 2.84423683343917062e03)
_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01, 2.98635138197400131e02,
      8.81952221241769090e02, 1.71204761263407058e03, 2.05107837782607147e03, 1.23033935479799725e03,
      2.15311535474403846e-8)
_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02, 1.62138957456669019e03,
      3.29079923573345963e03, 4.36261909014324716e03, 3.43936767414372164e03, 1.23033935480374942e03)
_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1, 1.60837851487422766e-2,
      6.58749161529837803e-4, 1.63153871373020978e-2)
_Q = (2.56852019228982242e00, 1.87295284992346725e00, 5.27905102951428412e-1, 6.05183413124413191e-2,
      2.33520497626869185e-3)


def _rational(z: np.ndarray, num: tuple, den: tuple) -> np.ndarray:
    """Cody's ratio (((num[-1] z + num[0]) z + num[1]) z ... + num[-2]) /
    (((z + den[0]) z + den[1]) z ... + den[-1]), in place where it can."""
    top, bottom = num[-1] * z, z.copy()
    for a, b in zip(num[:-2], den[:-1]):
        top += a
        top *= z
        bottom += b
        bottom *= z
    top += num[-2]
    bottom += den[-1]
    top /= bottom
    return top


def _exp_minus_square(y: np.ndarray) -> np.ndarray:
    """e^(-y²) without the rounding of y²: y's sixteenths h apart."""
    head = np.trunc(y * 16) / 16
    rest = (y - head) * (y + head)
    return np.exp(-head * head) * np.exp(-rest)


def _erf_series(x: np.ndarray) -> np.ndarray:
    """erf(x) for |x| < SERIES_BELOW."""
    return x * _rational(x * x, _A, _B)


def _erfc_fraction(y: np.ndarray) -> np.ndarray:
    """erfc(y) for y >= SERIES_BELOW (NaN for NaN, 0 for inf)."""
    out = np.empty_like(y)
    middle = y < TAIL_FROM
    ym = y[middle]
    out[middle] = _rational(ym, _C, _D) * _exp_minus_square(ym)
    far = y[~middle]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        z = 1.0 / (far * far)
        tail = (_FRAC_1_SQRT_PI - z * _rational(z, _P, _Q)) / far
        out[~middle] = np.where(far < TAIL_ZERO, tail * _exp_minus_square(np.minimum(far, TAIL_ZERO)),
                                 np.where(np.isnan(far), far, 0.0))
    return out


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


# ------------------------------------------------------------ float32 GELU
# A float32 model's GELU on the CPU computes Φ as the GPU does, with the same
# float32 formula (shaders/activation_functions.wgsl's normal_cdf and gauss:
# within 6e-7 relative of Φ), a block of CHUNK values at a time so that its
# temporaries stay in the cache: a quarter of the time of the float64
# functions above, which float64 models keep.

#: values a float32 evaluation takes at a time
CHUNK = 16384

_F = np.float32
#: the tail's g(w) = erfc(t) e^(t²) t √π, w = 1 / (1 + t / 2), highest power first
_TAIL32 = tuple(_F(c) for c in (0.27819434, -1.1640248, 1.7423091, -0.9176892, 0.13154794, -0.37084505,
                                 -0.3251997, -0.24901414, -0.12521285, 1.674147e-05, 0.9999995))
_ERF32 = tuple(_F(c) for c in (0.0043024705, -0.026522368, 0.112783924, -0.37612298, 1.1283791))


def _gauss32(x: np.ndarray) -> np.ndarray:
    """e^(-x²/2) in float32, x = h + l with h of 12 significant bits (h² exact); 0 beyond |x| = 20."""
    h = (x.view(np.uint32) & np.uint32(0xFFFFF000)).view(np.float32)
    g = np.exp(_F(-0.5) * h * h) * np.exp(_F(-0.5) * (x - h) * (x + h))
    return np.where(np.abs(x) > _F(20), _F(0), g)


def _normal_cdf32(x: np.ndarray) -> np.ndarray:
    """Φ(x) in float32: erf's odd polynomial for |x| / √2 < 0.5, the tail's from there on."""
    t = np.abs(x) * _F(0.70710677)
    u = x * _F(0.70710677)
    s = u * u
    erf = _F(0)
    for c in _ERF32:
        erf = erf * s + c
    w = _F(1) / (_F(1) + _F(0.5) * t)
    g = _F(0)
    for c in _TAIL32:
        g = g * w + c
    tail = _gauss32(x) * g * _F(0.2820948) / t  # Φ(-|x|) = erfc(t) / 2
    return np.where(t < _F(0.5), _F(0.5) + _F(0.5) * (u * erf), np.where(x < 0, tail, _F(1) - tail))


def _by_chunks(function, out: np.ndarray, *arrays: np.ndarray) -> None:
    """``out = function(*arrays)``, CHUNK values at a time (arrays of one shape)."""
    if not all(a.flags.c_contiguous for a in (out, *arrays)):
        np.copyto(out, function(*arrays))
        return
    flat_out, flat = out.reshape(-1), [a.reshape(-1) for a in arrays]
    with np.errstate(all="ignore"):  # the branch np.where leaves out divides by 0 at x = 0
        for i in range(0, flat_out.size, CHUNK):
            flat_out[i:i + CHUNK] = function(*(a[i:i + CHUNK] for a in flat))


def gelu32(x: np.ndarray, out: np.ndarray) -> None:
    """out = x Φ(x), float32 (-inf · 0 is NaN, as in PyTorch)."""
    _by_chunks(lambda v: v * _normal_cdf32(v), out, x)


def gelu_grad32(x: np.ndarray, dy: np.ndarray, out: np.ndarray) -> None:
    """out = dy (Φ(x) + x φ(x)), float32."""
    _by_chunks(lambda v, d: d * (_normal_cdf32(v) + v * _gauss32(v) * _F(0.3989423)), out, x, dy)

