"""A layer of your own, with its own WGSL: a PReLU whose slope is learned,
one per feature (PyTorch's nn.PReLU(num_parameters=features)).

The layer dispatches one kernel (``intricate_py.Kernel``): WGSL on the GPU,
the numpy functions beside it on the CPU, so it has one code path on both
devices, and on the GPU its dispatches are recorded and replayed with the
rest of a training step (no copy to or from the host). The script

1. checks the layer's forward and gradients on ``--device`` against its
   numpy version and against PyTorch's nn.PReLU (when torch is installed);
2. trains a small classifier with it and prints how readbacks and
   submissions grew (a replayed step reads nothing back);
3. saves the model (``register_layer`` makes the layer loadable), loads it
   back, and exports it to ONNX through the layer's ``onnx_nodes`` hook
   (when onnx and onnxruntime are installed), checking both;
4. times an epoch beside the same model with the built-in LeakyReLU.

    python examples/custom_layer/main.py [--device auto|cpu|gpu] [--epochs N] [--samples N] [--out DIR]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

import intricate_py
from intricate_py import Kernel, Model
from intricate_py.layers import Dense, Layer, LeakyReLU, Softmax
from intricate_py.losses import CategoricalCrossEntropy
from intricate_py.optimizers import Adam

PRELU_WGSL = """
// y = x where x > 0, else alpha[j] x, j the feature (the last axis); and its gradients.
struct Params {
  count: u32, features: u32, rows: u32,
  x_off: u32, alpha_off: u32, dy_off: u32, y_off: u32, dx_off: u32, dalpha_off: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> alpha: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read_write> dalpha: array<f32>;

// the flat index of an invocation of a grid of 256-wide workgroups, (x, y) laid out
fn flat_index(id: vec3<u32>, groups: vec3<u32>) -> u32 {
  return id.y * groups.x * 256u + id.x;
}

@compute @workgroup_size(256)
fn prelu(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = flat_index(id, groups);
  if (i >= params.count) { return; }
  let v = x[params.x_off + i];
  y[params.y_off + i] = select(alpha[params.alpha_off + i % params.features] * v, v, v > 0.0);
}

@compute @workgroup_size(256)
fn prelu_grad(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = flat_index(id, groups);
  if (i >= params.count) { return; }
  let slope = select(alpha[params.alpha_off + i % params.features], 1.0, x[params.x_off + i] > 0.0);
  dx[params.dx_off + i] = dy[params.dy_off + i] * slope;
}

// dalpha[j] = sum over the rows of dy · min(x, 0): one invocation a feature, rows in order
@compute @workgroup_size(64)
fn prelu_alpha_grad(@builtin(global_invocation_id) id: vec3<u32>) {
  let j = id.x;
  if (j >= params.features) { return; }
  var sum = 0.0;
  for (var r = 0u; r < params.rows; r = r + 1u) {
    let k = r * params.features + j;
    sum = sum + dy[params.dy_off + k] * min(x[params.x_off + k], 0.0);
  }
  dalpha[params.dalpha_off + j] = sum;
}
"""


# the same three entry points in numpy, for the CPU: each writes its output array in place
def prelu_numpy(x, alpha, y, **_):
    np.copyto(y, np.where(x > 0, x, alpha * x))


def prelu_grad_numpy(x, alpha, dy, dx, **_):
    np.copyto(dx, dy * np.where(x > 0, 1, alpha))


def prelu_alpha_grad_numpy(x, dy, dalpha, features, **_):
    np.copyto(dalpha, (dy * np.minimum(x, 0)).reshape(-1, features).sum(axis=0))


PRELU = Kernel(PRELU_WGSL, name="prelu",
               numpy={"prelu": prelu_numpy, "prelu_grad": prelu_grad_numpy, "prelu_alpha_grad": prelu_alpha_grad_numpy})


@intricate_py.register_layer(package="examples")
class PReLU(Layer):
    """y = x for x > 0, alpha · x otherwise, alpha learned, one per feature
    (the last axis): alpha (features,), initially ``alpha_init``."""

    def __init__(self, alpha_init: float = 0.25, name: str | None = None):
        super().__init__(name=name)
        self.alpha_init = float(alpha_init)

    def create_parameters(self, rng):
        return {"alpha": np.full(self.input_shape[-1], self.alpha_init)}

    def _sizes(self, rows: int) -> dict:
        features = self.input_shape[-1]
        count = rows * math.prod(self.input_shape)
        return {"count": count, "features": features, "rows": count // features}

    def call(self, ctx, x):
        y = ctx.buffer("y", x.shape[0], self.input_shape)
        ctx.x = x  # what the backward needs
        sizes = self._sizes(x.shape[0])
        PRELU.dispatch(self.backend, "prelu", invocations=sizes["count"], x=x, alpha=self.params["alpha"].value,
                       y=y, **sizes)
        return y

    def parameter_gradients(self, ctx, grad):
        sizes = self._sizes(grad.shape[0])
        PRELU.dispatch(self.backend, "prelu_alpha_grad", invocations=sizes["features"], x=ctx.x, dy=grad,
                       dalpha=self.params["alpha"].grad, **sizes)

    def backward(self, ctx, grad):
        self.parameter_gradients(ctx, grad)
        dx = ctx.buffer("dx", grad.shape[0], self.input_shape)
        sizes = self._sizes(grad.shape[0])
        PRELU.dispatch(self.backend, "prelu_grad", invocations=sizes["count"], x=ctx.x,
                       alpha=self.params["alpha"].value, dy=grad, dx=dx, **sizes)
        return dx

    def get_config(self):
        return {"alpha_init": self.alpha_init}

    def onnx_nodes(self, graph, inputs):  # ONNX's PRelu broadcasts the slopes along the last axis
        return graph.node("PRelu", [inputs[0], graph.weight("slope", self.get_weights()[0])], "prelu")

    def c_code(self, code, inputs):
        n, features = math.prod(self.input_shape), self.input_shape[-1]
        alpha, x, y = code.weight("alpha", self.get_weights()[0]), inputs[0], code.output(n)
        code.emit(f"PReLU of {n} values",
                  f"for (int k = 0; k < {n}; k++)",
                  f"    {y}[k] = {x}[k] > 0.0f ? {x}[k] : {alpha}[k % {features}] * {x}[k];")
        return y

    def __repr__(self):
        return f"PReLU({self.input_shape[-1]})" if self.input_shape else "PReLU()"


def layer_pass(device: str, x: np.ndarray, dy: np.ndarray, alpha: np.ndarray) -> list[np.ndarray]:
    """The layer's output, input gradient and slope gradient on ``device``."""
    backend = intricate_py.select_backend(device)
    layer = PReLU()
    layer.build(x.shape[1:], backend)
    layer.set_weights([alpha])
    y = backend.to_numpy(layer.forward(backend.asarray(x))).copy()
    dx = backend.to_numpy(layer.back_propagate(backend.asarray(dy))).copy()
    return [y, dx, backend.to_numpy(layer.params["alpha"].grad).copy()]


def torch_pass(x: np.ndarray, dy: np.ndarray, alpha: np.ndarray) -> list[np.ndarray] | None:
    try:
        import torch
    except ImportError:
        return None
    net = torch.nn.PReLU(alpha.size)
    with torch.no_grad():
        net.weight.copy_(torch.from_numpy(alpha))
    xt = torch.from_numpy(x).requires_grad_()
    y = net(xt)
    y.backward(torch.from_numpy(dy))
    return [y.detach().numpy(), xt.grad.numpy(), net.weight.grad.numpy()]


def spirals(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three interleaved spirals in 2-D, lifted to 8 features by fixed random
    projections (so that the layers have something to do)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    t = rng.uniform(0.1, 1.0, n)
    angle = 4.0 * t + labels * (2 * np.pi / 3) + rng.normal(0, 0.15, n)
    points = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1)
    lift = np.random.default_rng(1).normal(size=(2, 8))
    return np.concatenate([points, np.tanh(points @ lift)], axis=1)[:, :8].astype(np.float32), labels


def model_with(activation, device: str, seed: int) -> Model:
    return Model([Dense(64), activation(), Dense(64), activation(), Dense(3), Softmax()], input_size=8,
                 device=device, seed=seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--samples", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    args = parser.parse_args(argv)
    device = intricate_py.select_backend(args.device)
    print(f"device: {device.name}")

    # 1. the layer against its numpy version and PyTorch's nn.PReLU
    rng = np.random.default_rng(args.seed)
    x, dy = rng.normal(size=(37, 13)).astype(np.float32), rng.normal(size=(37, 13)).astype(np.float32)
    alpha = rng.uniform(-0.5, 0.5, 13).astype(np.float32)
    here, numpy_version = layer_pass(device, x, dy, alpha), layer_pass("cpu", x, dy, alpha)
    references = [("its numpy version", numpy_version)]
    torch_version = torch_pass(x, dy, alpha)
    if torch_version is not None:
        references.append(("PyTorch's nn.PReLU", torch_version))
    for what, reference in references:
        worst = max(float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b))))) for a, b in zip(here, reference))
        print(f"output, input gradient and slope gradient on {device.kind} against {what}: "
              f"largest relative difference {worst:.2e}")
        if worst > 1e-5:
            print("  they differ")
            return 1

    # 2. train a classifier with it
    xs, ys = spirals(args.samples, args.seed)
    model = model_with(PReLU, device, args.seed)
    print(model)
    before = device.stats()
    history = model.fit(xs, ys, loss=CategoricalCrossEntropy(), optimizer=Adam(3e-3), epochs=args.epochs,
                        batch_size=64, verbose=0)
    after = device.stats()
    steps = args.epochs * math.ceil(args.samples / 64)
    print(f"trained {args.epochs} epochs ({steps} steps): loss {history.history['loss'][-1]:.4f}, "
          f"accuracy {history.history['accuracy'][-1]:.3f}; "
          f"slopes now {model.layers[1].get_weights()[0][:4].round(3)}...")
    if device.kind == "gpu":
        print(f"  on the GPU: {after['readbacks'] - before['readbacks']} readbacks and "
              f"{after['submits'] - before['submits']} submissions in {steps} steps (the steps replayed, "
              "nothing copied to or from the host a step)")

    # 3. save, load, export
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "prelu-spirals.safetensors"
    model.save(path)
    loaded = Model.load(path, device=device)
    same = np.array_equal(loaded.predict(xs[:100]), model.predict(xs[:100]))
    print(f"saved to {path} as {model.layers[1].type_name!r} layers, loaded back: "
          f"{'the same predictions' if same else 'DIFFERENT predictions'}")
    if not same:
        return 1
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError:
        print("ONNX export skipped (pip install onnx onnxruntime)")
    else:
        model.export(args.out / "prelu-spirals.onnx")
        session = onnxruntime.InferenceSession(str(args.out / "prelu-spirals.onnx"), providers=["CPUExecutionProvider"])
        difference = float(np.max(np.abs(session.run(None, {"x": xs[:100]})[0] - model.predict(xs[:100]))))
        print(f"exported to ONNX through PReLU.onnx_nodes (its PRelu node): onnxruntime differs by {difference:.1e}")

    # 4. speed: an epoch beside the built-in LeakyReLU (one fused kernel the library ships)
    times = {}
    for name, activation in (("PReLU (custom kernel)", PReLU), ("LeakyReLU (built in)", LeakyReLU)):
        timed = model_with(activation, device, args.seed)
        timed.fit(xs, ys, loss=CategoricalCrossEntropy(), optimizer=Adam(3e-3), epochs=1, batch_size=64, verbose=0)
        start = time.perf_counter()
        timed.fit(xs, ys, epochs=2, batch_size=64, verbose=0)
        times[name] = (time.perf_counter() - start) / 2
    where = f"{device.kind}, {device.name}"
    print(f"one epoch of {args.samples} samples ({where}): "
          + ", ".join(f"{name} {seconds * 1e3:.0f} ms" for name, seconds in times.items()))
    if device.kind == "gpu" and any(soft in device.name.lower() for soft in ("llvmpipe", "lavapipe")):
        print("  (lavapipe is a software adapter: on a hardware GPU these times are unmeasured)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
