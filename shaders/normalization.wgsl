// normalization.wgsl — batch normalization (statistics per channel) and
// layer normalization (statistics per row), forward and backward.
//
// includes: grid.wgsl
//
// Batch normalization sees x as (outer, c, inner): the channel ch of
// element (o, ch, i) is at ((o · c + ch) · inner + i); its statistics are
// over the m = outer · inner values of the channel. Layer normalization
// sees x as rows × c and normalizes each row. Variances are biased (divided
// by the count) and computed in two passes (the mean, then the mean of
// (x - mean)²); r = 1 / sqrt(var + epsilon), x̂ = (x - mean) · r. gamma
// (has_gamma) and beta (has_beta) default to 1 and 0.
//
// Entry points:
//   batch_norm_forward   y = x̂ · gamma + beta from the given mean and var (c
//                        values each); one invocation per element
//   batch_norm_train     one workgroup per channel: the batch mean and
//                        variance into mean and var, first/second (the
//                        moving mean and variance) = moving · momentum +
//                        batch · (1 - momentum), and y written
//   batch_norm_backward  one workgroup per channel: Σ dy and Σ dy · x̂ into
//                        first (dgamma, has_first) and second (dbeta,
//                        has_second), then, where has_out, dx (out) =
//                        gamma · r · (dy - Σ dy / m - x̂ · Σ dy · x̂ / m), or
//                        gamma · r · dy where frozen = 1 (fixed statistics)
//   layer_norm_forward   one invocation per row: its mean and variance into
//                        mean and var (rows values each), and y
//   layer_norm_backward  one invocation per row: with g = dy · gamma,
//                        dx = r · (g - Σ g / c - x̂ · Σ g · x̂ / c)
//   layer_norm_params    16 × 16 invocations a workgroup, 16 columns j a
//                        workgroup, 16 lanes a column striding over the rows:
//                        first[j] = Σ dy · x̂ (dgamma), second[j] = Σ dy (dbeta)
// Every sum runs in a fixed order: a workgroup's lanes each sum a fixed
// stride of the values, then a fixed-order tree adds the lanes
// (deterministic); per-row sums run in order.
// Where var_in_mean is 1, variance is the buffer mean is in and is read and
// written through mean's binding; where second_in_first is 1, likewise for
// second and first (a buffer may not be bound twice where one binding
// writes, and a model packs those pairs into one buffer).
// Bindings (group 0):
//   0 params  uniform Params, one slot per dispatch (dynamic offset)
//   1 x       storage, read        from x_off
//   2 b       storage, read        beta (forwards, from b_off) or dy (backwards, from b_off)
//   3 gamma   storage, read        from gamma_off
//   4 mean    storage, read_write  from mean_off
//   5 variance storage, read_write from var_off
//   6 out     storage, read_write  y or dx, from out_off
//   7 first   storage, read_write  the moving mean or dgamma, from first_off
//   8 second  storage, read_write  the moving variance or dbeta, from second_off
// Dispatch: per element or per row, 256 a workgroup, (x, y) layout; per
// channel, one workgroup of 256 a channel, (x, y) layout;
// layer_norm_params, ceil(c / 16) workgroups of 16 × 16.

struct Params {
  count: u32, outer: u32, c: u32, inner: u32,
  x_off: u32, b_off: u32, gamma_off: u32, mean_off: u32,
  var_off: u32, out_off: u32, first_off: u32, second_off: u32,
  has_gamma: u32, has_beta: u32, has_out: u32, has_first: u32,
  has_second: u32, var_in_mean: u32, second_in_first: u32, frozen: u32,
  epsilon: f32, momentum: f32, one_minus_momentum: f32, _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read_write> mean: array<f32>;
@group(0) @binding(5) var<storage, read_write> variance: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) var<storage, read_write> first: array<f32>;
@group(0) @binding(8) var<storage, read_write> second: array<f32>;

var<workgroup> partial: array<vec2<f32>, 256>;

fn read_mean(i: u32) -> f32 { return mean[params.mean_off + i]; }

fn read_var(i: u32) -> f32 {
  if (params.var_in_mean == 1u) { return mean[params.var_off + i]; }
  return variance[params.var_off + i];
}

fn write_var(i: u32, v: f32) {
  if (params.var_in_mean == 1u) { mean[params.var_off + i] = v; } else { variance[params.var_off + i] = v; }
}

fn read_second(i: u32) -> f32 {
  if (params.second_in_first == 1u) { return first[params.second_off + i]; }
  return second[params.second_off + i];
}

fn write_second(i: u32, v: f32) {
  if (params.second_in_first == 1u) { first[params.second_off + i] = v; } else { second[params.second_off + i] = v; }
}

fn gamma_at(j: u32) -> f32 {
  if (params.has_gamma == 1u) { return gamma[params.gamma_off + j]; }
  return 1.0;
}

fn beta_at(j: u32) -> f32 {
  if (params.has_beta == 1u) { return b[params.b_off + j]; }
  return 0.0;
}

fn rstd(v: f32) -> f32 { return 1.0 / sqrt(v + params.epsilon); }

// The sum of every lane's value (two sums at once), in a fixed-order tree;
// called by the whole workgroup.
fn workgroup_sum(lane: u32, value: vec2<f32>) -> vec2<f32> {
  partial[lane] = value;
  for (var stride = 128u; stride > 0u; stride = stride / 2u) {
    workgroupBarrier();
    if (lane < stride) { partial[lane] = partial[lane] + partial[lane + stride]; }
  }
  workgroupBarrier();
  let total = partial[0];
  workgroupBarrier();  // every lane has read it before partial is written again
  return total;
}

// The k-th value of channel ch (k < outer · inner), as an index into x (less x_off).
fn channel_index(ch: u32, k: u32) -> u32 {
  return ((k / params.inner) * params.c + ch) * params.inner + k % params.inner;
}

@compute @workgroup_size(256)
fn batch_norm_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                      @builtin(local_invocation_id) lid: vec3<u32>) {
  let e = flat_index(wid, groups, lid);
  if (e >= params.count) { return; }
  let ch = (e / params.inner) % params.c;
  let y = (x[params.x_off + e] - read_mean(ch)) * rstd(read_var(ch));
  out[params.out_off + e] = y * gamma_at(ch) + beta_at(ch);
}

@compute @workgroup_size(256)
fn batch_norm_train(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                    @builtin(local_invocation_id) lid: vec3<u32>) {
  let ch = wid.y * groups.x + wid.x;
  if (ch >= params.c) { return; }  // the whole workgroup: ch is uniform
  let lane = lid.x;
  let m = params.outer * params.inner;
  let count = f32(m);
  var s = 0.0;
  for (var k = lane; k < m; k = k + 256u) { s = s + x[params.x_off + channel_index(ch, k)]; }
  let mu = workgroup_sum(lane, vec2<f32>(s, 0.0)).x / count;
  var q = 0.0;
  for (var k = lane; k < m; k = k + 256u) {
    let d = x[params.x_off + channel_index(ch, k)] - mu;
    q = q + d * d;
  }
  let sigma2 = workgroup_sum(lane, vec2<f32>(q, 0.0)).x / count;
  if (lane == 0u) {
    mean[params.mean_off + ch] = mu;
    write_var(ch, sigma2);
    let keep = params.momentum;
    let take = params.one_minus_momentum;
    first[params.first_off + ch] = first[params.first_off + ch] * keep + mu * take;
    write_second(ch, read_second(ch) * keep + sigma2 * take);
  }
  let r = rstd(sigma2);
  let g = gamma_at(ch);
  let beta = beta_at(ch);
  for (var k = lane; k < m; k = k + 256u) {
    let at = channel_index(ch, k);
    out[params.out_off + at] = (x[params.x_off + at] - mu) * r * g + beta;
  }
}

@compute @workgroup_size(256)
fn batch_norm_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                       @builtin(local_invocation_id) lid: vec3<u32>) {
  let ch = wid.y * groups.x + wid.x;
  if (ch >= params.c) { return; }
  let lane = lid.x;
  let m = params.outer * params.inner;
  let mu = read_mean(ch);
  let r = rstd(read_var(ch));
  var s = vec2<f32>(0.0, 0.0);  // Σ dy, Σ dy · x̂
  for (var k = lane; k < m; k = k + 256u) {
    let at = channel_index(ch, k);
    let dy = b[params.b_off + at];
    s = s + vec2<f32>(dy, dy * ((x[params.x_off + at] - mu) * r));
  }
  let sums = workgroup_sum(lane, s);
  if (lane == 0u) {
    if (params.has_first == 1u) { first[params.first_off + ch] = sums.y; }
    if (params.has_second == 1u) { write_second(ch, sums.x); }
  }
  if (params.has_out == 0u) { return; }
  let scale = gamma_at(ch) * r;
  let count = f32(m);
  let mean_dy = sums.x / count;
  let mean_dy_x_hat = sums.y / count;
  for (var k = lane; k < m; k = k + 256u) {
    let at = channel_index(ch, k);
    let dy = b[params.b_off + at];
    var d = dy;
    if (params.frozen == 0u) {
      let x_hat = (x[params.x_off + at] - mu) * r;
      d = (dy - mean_dy) - x_hat * mean_dy_x_hat;
    }
    out[params.out_off + at] = d * scale;
  }
}

@compute @workgroup_size(256)
fn layer_norm_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                      @builtin(local_invocation_id) lid: vec3<u32>) {
  let row = flat_index(wid, groups, lid);
  if (row >= params.count) { return; }
  let c = params.c;
  let base = row * c;
  let count = f32(c);
  var s = 0.0;
  for (var j = 0u; j < c; j = j + 1u) { s = s + x[params.x_off + base + j]; }
  let mu = s / count;
  var q = 0.0;
  for (var j = 0u; j < c; j = j + 1u) {
    let d = x[params.x_off + base + j] - mu;
    q = q + d * d;
  }
  let sigma2 = q / count;
  mean[params.mean_off + row] = mu;
  write_var(row, sigma2);
  let r = rstd(sigma2);
  for (var j = 0u; j < c; j = j + 1u) {
    out[params.out_off + base + j] = (x[params.x_off + base + j] - mu) * r * gamma_at(j) + beta_at(j);
  }
}

@compute @workgroup_size(256)
fn layer_norm_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                       @builtin(local_invocation_id) lid: vec3<u32>) {
  let row = flat_index(wid, groups, lid);
  if (row >= params.count) { return; }
  let c = params.c;
  let base = row * c;
  let mu = read_mean(row);
  let r = rstd(read_var(row));
  var s = 0.0;  // Σ g
  var t = 0.0;  // Σ g · x̂
  for (var j = 0u; j < c; j = j + 1u) {
    let g = b[params.b_off + base + j] * gamma_at(j);
    s = s + g;
    t = t + g * ((x[params.x_off + base + j] - mu) * r);
  }
  let count = f32(c);
  let mean_g = s / count;
  let mean_g_x_hat = t / count;
  for (var j = 0u; j < c; j = j + 1u) {
    let g = b[params.b_off + base + j] * gamma_at(j);
    let x_hat = (x[params.x_off + base + j] - mu) * r;
    out[params.out_off + base + j] = ((g - mean_g) - x_hat * mean_g_x_hat) * r;
  }
}

@compute @workgroup_size(16, 16)
fn layer_norm_params(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let j = wid.x * 16u + lid.x;
  let c = params.c;
  var s = vec2<f32>(0.0, 0.0);  // Σ dy · x̂, Σ dy
  if (j < c) {
    for (var i = lid.y; i < params.count; i = i + 16u) {
      let dy = b[params.b_off + i * c + j];
      let x_hat = (x[params.x_off + i * c + j] - read_mean(i)) * rstd(read_var(i));
      s = s + vec2<f32>(dy * x_hat, dy);
    }
  }
  let lane = lid.y * 16u + lid.x;
  partial[lane] = s;
  for (var stride = 8u; stride > 0u; stride = stride / 2u) {
    workgroupBarrier();
    if (lid.y < stride) { partial[lane] = partial[lane] + partial[lane + stride * 16u]; }
  }
  if (lid.y == 0u && j < c) {
    if (params.has_first == 1u) { first[params.first_off + j] = partial[lid.x].x; }
    if (params.has_second == 1u) { write_second(j, partial[lid.x].y); }
  }
}
