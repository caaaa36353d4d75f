"""Graph models the tests share, and the gradients of a graph through its plan.

``wide_graph`` holds, between its nodes, every merge layer, a residual
block, a layer shared by two calls (one on a model input, one deep in the
graph), a tensor read by three layers, a Dense whose ReLU is fused into its
product and one whose ReLU's gradient is folded into the next product, two
inputs and two outputs. ``TorchWideGraph`` computes the same in PyTorch.
"""

from __future__ import annotations

import numpy as np

from gradcheck import STEP
from intricate_py import Input, Model
from intricate_py.layers import Add, Average, Concatenate, Dense, Multiply, ReLU, Sigmoid, Subtract, TanH


def wide_graph(device: str = "cpu", dtype: str = "float32", seed: int = 0) -> Model:
    a, b = Input(6, name="a"), Input(4, name="b")
    h = ReLU()(Dense(8, name="d0")(a))  # read by three layers
    t = TanH()(Dense(8, name="d1")(h))
    r = Add(name="res")([h, t])
    shared = Dense(4, name="shared")
    s1 = shared(b)
    s2 = shared(Sigmoid()(Dense(4, name="d2")(Average()([r, h]))))
    m = Multiply(name="mul")([s1, s2])
    sub = Subtract(name="sub")([Average(name="avg3")([s1, s2, m]), s2])
    c = Concatenate(name="cat")([r, sub, b])
    logits = Dense(3, name="logits")(c)
    reg = Dense(2, name="reg")(ReLU()(Dense(6, name="d3")(c)))
    model = Model(inputs=[a, b], outputs=[logits, reg], device=device, dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed + 100)  # nonzero biases, so that the tests see them
    for layer in model.layers:
        if isinstance(layer, Dense):
            layer.biases = rng.normal(0, 0.3, layer.biases.shape)
    return model


def wide_inputs(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, 6)), rng.normal(size=(n, 4))]


def _training_outputs(model: Model, xs: list[np.ndarray]):
    """The training pass (no loss fused) and its outputs for ``xs``, with
    the step values of step 0 (Dropout's masks)."""
    backend, plan = model.backend, model.plan
    training = plan.pass_for(training=True, fused=(False,) * len(model.outputs))
    plan.give_step_values(plan.step_values(0))
    outs = plan.forward(training, [backend.from_numpy(np.asarray(x, model.dtype)) for x in xs], training=True)
    return training, outs


def plan_gradients(model: Model, xs: list[np.ndarray], rs: list[np.ndarray]) -> tuple[list[np.ndarray], dict]:
    """The outputs of ``model`` for ``xs`` and the gradient of
    E = Σ_k Σ rs[k] · output_k with respect to each parameter, by layer
    name and tensor name, computed by the model's plan (a training pass of
    step 0, no loss fused)."""
    backend, plan = model.backend, model.plan
    training, outs = _training_outputs(model, xs)
    values = [backend.to_numpy(o).copy() for o in outs]
    plan.backward(training, [backend.from_numpy(np.asarray(r, model.dtype)) for r in rs])
    grads = {(layer.name, name): backend.to_numpy(p.grad).copy()
             for layer in model.layers for name, p in layer.params.items() if p.trainable}
    return values, grads


def energy(model: Model, xs: list[np.ndarray], rs: list[np.ndarray]) -> float:
    """E = Σ_k Σ rs[k] · output_k, outputs of the same training pass as plan_gradients'."""
    _, outs = _training_outputs(model, xs)
    return float(sum(np.sum(r * model.backend.to_numpy(o)) for r, o in zip(rs, outs)))


def numeric_gradients(model: Model, xs: list[np.ndarray], rs: list[np.ndarray]) -> dict:
    """Central differences of :func:`energy` for every parameter (float64, CPU)."""
    grads = {}
    for layer in model.layers:
        for name, p in layer.params.items():
            if not p.trainable:
                continue
            numeric = np.zeros(p.value.shape)
            for i in np.ndindex(p.value.shape):
                old = p.value[i]
                p.value[i] = old + STEP
                up = energy(model, xs, rs)
                p.value[i] = old - STEP
                down = energy(model, xs, rs)
                p.value[i] = old
                numeric[i] = (up - down) / (2 * STEP)
            grads[(layer.name, name)] = numeric
    return grads


try:
    import torch
except ImportError:  # the parity tests skip
    torch = None

if torch is not None:

    class TorchWideGraph(torch.nn.Module):
        """``wide_graph`` in PyTorch, its weights taken from an intricate model."""

        def __init__(self, model: Model, dtype):
            super().__init__()
            self.linear = torch.nn.ModuleDict()
            for layer in model.layers:
                if isinstance(layer, Dense):
                    state = layer.state_dict()  # PyTorch's layout already
                    linear = torch.nn.Linear(state["weight"].shape[1], state["weight"].shape[0]).to(dtype)
                    linear.load_state_dict({k: torch.tensor(v, dtype=dtype) for k, v in state.items()})
                    self.linear[layer.name] = linear

        def forward(self, a, b):
            f = self.linear
            h = torch.relu(f["d0"](a))
            r = h + torch.tanh(f["d1"](h))
            s1 = f["shared"](b)
            s2 = f["shared"](torch.sigmoid(f["d2"]((r + h) * 0.5)))
            m = s1 * s2
            sub = (s1 + s2 + m) * (1.0 / 3.0) - s2
            c = torch.cat([r, sub, b], dim=1)
            return f["logits"](c), f["reg"](torch.relu(f["d3"](c)))
