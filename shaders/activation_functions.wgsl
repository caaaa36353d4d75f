// activation_functions.wgsl — the activation functions and their gradients,
// shared by the kernel files that apply them (activations.wgsl, matmul.wgsl
// and conv.wgsl name this file in an "includes:" line; WGSL has no includes).
//
// library
//
// Functions (kind: one of the ACTIVATION_* constants the host prepends,
// numbered by intricate_py/backends/base.py's ACTIVATIONS; param: the
// negative slope of leaky_relu, the alpha of elu, unused by the others):
//   activate(kind, x, param)                  f(x)
//   gradient_from_output(kind, y, dy, param)  dy · f'(x) from the output y = f(x), for
//                                             tanh, sigmoid, relu, softplus, and leaky_relu
//                                             and elu with param >= 0
//   gradient_from_input(kind, x, dy, param)   dy · f'(x) from the input x, every kind
// A kind a function does not take gives NaN (unknown_kind()), never another
// activation's values; so do leaky_relu and elu from the output with param < 0.
//
// Accuracy, float32 against float64 (tests/test_activations.py): drivers' exp
// loses up to 64 ulp for large |a| (lavapipe: the rounding of a · log2(e)), and
// their log up to 5e-5 relative near 1, so exp_, expm1_ and log1p_ are written
// here, within 2 ulp. The normal distribution Φ(x) = (1 + erf(x / √2)) / 2 of
// GELU: for |x| / √2 < 0.5, erf from an odd polynomial fitted to it (degree 9,
// 1e-9 relative); beyond, the tail Φ(-|x|) = e^(-x²/2) g(w) / (2 √π t), t = |x| / √2,
// w = 1 / (1 + t / 2), g = erfc(t) e^(t²) t √π fitted by a polynomial of degree 10
// in w (3e-9 relative for t in [0.5, 26]), with e^(-x²/2) exact to 3 ulp (x² split
// in a high part whose square is exact and a low one). Φ is within 6e-7 relative.

// e^a for a <= 0, within 2 ulp: a = k ln 2 + r, |r| <= ln 2 / 2 (ln 2 in two parts,
// the first of 15 bits so that k times it is exact), e^r by its Taylor polynomial
// of degree 7 (truncation 5e-9 relative), times 2^k. Below -104 (where e^a is
// smaller than any float) the result is 0; NaN stays NaN. (Above 0, unchecked.)
fn exp_(a: f32) -> f32 {
  let b = select(a, -104.0, a < -104.0);
  let k = round(b * 1.442695);
  let r = (b - k * 0.69314575) - k * 1.4286068e-06;
  let p = 1.0 + r * (1.0 + r * (0.5 + r * (0.16666667 + r * (0.041666668 + r * (0.008333334
          + r * (0.0013888889 + r * 0.0001984127))))));
  return ldexp(p, i32(k));
}

// e^x - 1 for x <= 0 without exp_(x) - 1's cancellation near 0: there (x > -0.5)
// its Taylor polynomial of degree 9 (truncation 3e-10 relative).
fn expm1_(x: f32) -> f32 {
  if (x > -0.5) {
    return x * (1.0 + x * (0.5 + x * (0.16666667 + x * (0.041666668 + x * (0.008333334 + x * (0.0013888889
           + x * (0.0001984127 + x * (2.4801588e-05 + x * 2.7557319e-06))))))));
  }
  return exp_(x) - 1.0;
}

// log(1 + u) for u in [0, 1], as 2 atanh(s), s = u / (2 + u) <= 1/3, by the
// series of atanh to s^15 (truncation 1.4e-9 relative).
fn log1p_(u: f32) -> f32 {
  let s = u / (2.0 + u);
  let s2 = s * s;
  return 2.0 * s * (1.0 + s2 * (0.33333334 + s2 * (0.2 + s2 * (0.14285715 + s2 * (0.11111111
         + s2 * (0.09090909 + s2 * (0.07692308 + s2 * 0.06666667)))))));
}

// Drivers' tanh can lose relative precision near 0 (lavapipe's is 3% off at
// 1e-6) or overflow for large |x|: an odd series below 0.125 (truncation
// error under 1e-10 relative), exp(-2|x|) above, exactly ±1 beyond |x| = 9.1.
fn tanh_(x: f32) -> f32 {
  let ax = abs(x);
  if (ax < 0.125) {
    let x2 = x * x;
    return x + x * x2 * (-0.33333334 + x2 * (0.13333334 + x2 * (-0.053968254 + x2 * 0.021869488)));
  }
  let e = exp(-2.0 * select(ax, 10.0, ax > 10.0));  // not min(): NaN stays NaN
  return sign(x) * ((1.0 - e) / (1.0 + e));
}

// σ(x) from e^-|x|, which never overflows; each sign takes the exact branch.
fn sigmoid(x: f32) -> f32 {
  let e = exp_(-abs(x));
  let s = 1.0 / (1.0 + e);
  return select(s, e * s, x < 0.0);
}

// σ'(x) = σ(x)(1 - σ(x)) = e / (1 + e)², e = e^-|x|: no 1 - σ that cancels.
fn sigmoid_slope(x: f32) -> f32 {
  let e = exp_(-abs(x));
  let d = 1.0 + e;
  return e / (d * d);
}

// e^(-x²/2), x = h + l with h of 12 significant bits: h² is exact and
// x² = h² + l (x + h). 0 beyond |x| = 20 (infinities too).
fn gauss(x: f32) -> f32 {
  let h = bitcast<f32>(bitcast<u32>(x) & 0xfffff000u);
  let l = x - h;
  let g = exp_(-0.5 * h * h) * exp_(-0.5 * l * (x + h));
  return select(g, 0.0, abs(x) > 20.0);
}

// Φ(x), the standard normal distribution (see the header).
fn normal_cdf(x: f32) -> f32 {
  let t = abs(x) * 0.70710677;
  if (t < 0.5) {
    let u = x * 0.70710677;
    let s = u * u;
    let erf = u * (1.1283791 + s * (-0.37612298 + s * (0.112783924 + s * (-0.026522368 + s * 0.0043024705))));
    return 0.5 + 0.5 * erf;
  }
  let w = 1.0 / (1.0 + 0.5 * t);
  let g = 0.9999995 + w * (1.674147e-05 + w * (-0.12521285 + w * (-0.24901414 + w * (-0.3251997
          + w * (-0.37084505 + w * (0.13154794 + w * (-0.9176892 + w * (1.7423091 + w * (-1.1640248
          + w * 0.27819434)))))))));
  let tail = gauss(x) * g * 0.2820948 / t;  // Φ(-|x|) = erfc(t) / 2
  return select(1.0 - tail, tail, x < 0.0);
}

// GELU's tanh form: x σ(v), v = 2u = 2 √(2/π) (x + 0.044715 x³)
fn gelu_tanh_argument(x: f32) -> f32 {
  return 1.5957692 * (x + 0.044715 * x * x * x);
}

fn activate(kind: u32, x: f32, param: f32) -> f32 {
  switch kind {
    case ACTIVATION_TANH: { return tanh_(x); }
    case ACTIVATION_SIGMOID: { return sigmoid(x); }
    case ACTIVATION_RELU: { return select(x, 0.0, x < 0.0); }  // not max(): NaN stays NaN
    case ACTIVATION_LEAKY_RELU: { return select(param * x, x, x > 0.0); }
    case ACTIVATION_ELU: { return select(param * expm1_(x), x, x > 0.0); }
    case ACTIVATION_GELU: { return x * normal_cdf(x); }
    case ACTIVATION_GELU_TANH: { return x * sigmoid(gelu_tanh_argument(x)); }
    case ACTIVATION_SILU: { return x * sigmoid(x); }
    case ACTIVATION_SOFTPLUS: { return select(x, 0.0, x < 0.0) + log1p_(exp_(-abs(x))); }
    default: { return unknown_kind(); }
  }
}

// tanh (1 - y)(1 + y), sigmoid y (1 - y), relu [y > 0], leaky_relu [y > 0] or
// param, elu [y > 0] or y + param (= param e^x), softplus 1 - e^-y (= σ(x))
fn gradient_from_output(kind: u32, y: f32, dy: f32, param: f32) -> f32 {
  switch kind {
    case ACTIVATION_TANH: { return ((1.0 - y) * (1.0 + y)) * dy; }
    case ACTIVATION_SIGMOID: { return ((1.0 - y) * y) * dy; }
    case ACTIVATION_RELU: { return select(0.0, dy, y > 0.0); }
    case ACTIVATION_LEAKY_RELU: {
      if (param < 0.0) { return unknown_kind(); }
      return select(param * dy, dy, y > 0.0);
    }
    case ACTIVATION_ELU: {
      if (param < 0.0) { return unknown_kind(); }
      return select((y + param) * dy, dy, y > 0.0);
    }
    case ACTIVATION_SOFTPLUS: { return -expm1_(-y) * dy; }
    default: { return unknown_kind(); }
  }
}

// tanh 4 σ'(2x); gelu Φ(x) + x φ(x); gelu_tanh σ(v) + x v' σ'(v); silu σ(x) + x σ'(x);
// the others their derivatives
fn gradient_from_input(kind: u32, x: f32, dy: f32, param: f32) -> f32 {
  switch kind {
    case ACTIVATION_TANH: { return 4.0 * sigmoid_slope(2.0 * x) * dy; }  // 1 - tanh² x, without 1 - t
    case ACTIVATION_SIGMOID: { return sigmoid_slope(x) * dy; }
    case ACTIVATION_RELU: { return select(0.0, dy, x > 0.0); }
    case ACTIVATION_LEAKY_RELU: { return select(param * dy, dy, x > 0.0); }
    case ACTIVATION_ELU: { return select(param * exp_(x) * dy, dy, x > 0.0); }
    case ACTIVATION_GELU: { return (normal_cdf(x) + x * gauss(x) * 0.3989423) * dy; }
    case ACTIVATION_GELU_TANH: {
      let v = gelu_tanh_argument(x);
      let d = sigmoid_slope(v);
      // beyond |x| ~ 1e13, x v' overflows where σ'(v) is 0: that term is 0
      let term = select(x * (1.5957692 * (1.0 + 0.134145 * x * x)) * d, 0.0, d == 0.0);
      return (sigmoid(v) + term) * dy;
    }
    case ACTIVATION_SILU: { return (sigmoid(x) + x * sigmoid_slope(x)) * dy; }
    case ACTIVATION_SOFTPLUS: { return sigmoid(x) * dy; }
    default: { return unknown_kind(); }
  }
}
