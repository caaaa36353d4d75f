"""Layers of the user's own (issue 27, items 8 to 10): registered to be
saved and loaded with their parameters, with WGSL kernels of their own
(intricate_py.Kernel) that run on the GPU as the library's do, recorded and
replayed with no readback, and numpy versions on the CPU; exported through
their onnx_nodes and c_code hooks, or refused naming the hook."""

from __future__ import annotations

import ctypes
import shutil
import subprocess

import numpy as np
import pytest

import intricate_py
from graph_models import numeric_gradients, plan_gradients
from intricate_py import FormatError, Input, Kernel, Model, register_layer
from intricate_py.layers import LAYER_TYPES, Dense, Layer, ReLU, Softmax
from intricate_py.losses import CategoricalCrossEntropy
from intricate_py.optimizers import Adam

SWISH_WGSL = """
// y = x sigmoid(beta[j] x), j the feature (the last axis), and its gradients
struct Params { count: u32, features: u32, rows: u32,
                x_off: u32, beta_off: u32, dy_off: u32, y_off: u32, dx_off: u32, dbeta_off: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> beta: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read_write> dbeta: array<f32>;

fn sigmoid(t: f32) -> f32 { return 1.0 / (1.0 + exp(-t)); }

@compute @workgroup_size(64)
fn swish(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = id.y * groups.x * 64u + id.x;
  if (i >= params.count) { return; }
  let v = x[params.x_off + i];
  y[params.y_off + i] = v * sigmoid(beta[params.beta_off + i % params.features] * v);
}

@compute @workgroup_size(64)
fn swish_grad(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = id.y * groups.x * 64u + id.x;
  if (i >= params.count) { return; }
  let v = x[params.x_off + i];
  let b = beta[params.beta_off + i % params.features];
  let s = sigmoid(b * v);
  dx[params.dx_off + i] = dy[params.dy_off + i] * (s + b * v * s * (1.0 - s));
}

@compute @workgroup_size(64)
fn swish_beta_grad(@builtin(global_invocation_id) id: vec3<u32>) {
  let j = id.x;
  if (j >= params.features) { return; }
  var sum = 0.0;
  for (var r = 0u; r < params.rows; r = r + 1u) {
    let k = r * params.features + j;
    let v = x[params.x_off + k];
    let s = sigmoid(beta[params.beta_off + j] * v);
    sum = sum + dy[params.dy_off + k] * v * v * s * (1.0 - s);
  }
  dbeta[params.dbeta_off + j] = sum;
}
"""


def _sigmoid(t):
    return 1 / (1 + np.exp(-t))


def swish_numpy(x, beta, y, **_):
    np.copyto(y, x * _sigmoid(beta * x))


def swish_grad_numpy(x, beta, dy, dx, **_):
    s = _sigmoid(beta * x)
    np.copyto(dx, dy * (s + beta * x * s * (1 - s)))


def swish_beta_grad_numpy(x, beta, dy, dbeta, features, **_):
    s = _sigmoid(beta * x)
    np.copyto(dbeta, (dy * x * x * s * (1 - s)).reshape(-1, features).sum(axis=0))


SWISH = Kernel(SWISH_WGSL, name="swish", numpy={"swish": swish_numpy, "swish_grad": swish_grad_numpy,
                                                "swish_beta_grad": swish_beta_grad_numpy})


class Swish(Layer):
    """x · sigmoid(beta · x), beta learned per feature (the last axis). Not
    registered here: the ``registered`` fixture registers it."""

    calls = 0  # call() runs, across instances: a replayed step runs none

    def __init__(self, beta_init: float = 1.0, name: str | None = None):
        super().__init__(name=name)
        self.beta_init = beta_init

    def create_parameters(self, rng):
        return {"beta": np.full(self.input_shape[-1], self.beta_init) + rng.normal(0, 0.1, self.input_shape[-1])}

    def _sizes(self, rows):
        count = rows * int(np.prod(self.input_shape))
        return {"count": count, "features": self.input_shape[-1], "rows": count // self.input_shape[-1]}

    def call(self, ctx, x):
        type(self).calls += 1
        y, ctx.x = ctx.buffer("y", x.shape[0], self.input_shape), x
        sizes = self._sizes(x.shape[0])
        SWISH.dispatch(self.backend, "swish", invocations=sizes["count"], x=x, beta=self.params["beta"].value, y=y,
                       **sizes)
        return y

    def parameter_gradients(self, ctx, grad):
        sizes = self._sizes(grad.shape[0])
        SWISH.dispatch(self.backend, "swish_beta_grad", invocations=sizes["features"], x=ctx.x,
                       beta=self.params["beta"].value, dy=grad, dbeta=self.params["beta"].grad, **sizes)

    def backward(self, ctx, grad):
        self.parameter_gradients(ctx, grad)
        dx = ctx.buffer("dx", grad.shape[0], self.input_shape)
        sizes = self._sizes(grad.shape[0])
        SWISH.dispatch(self.backend, "swish_grad", invocations=sizes["count"], x=ctx.x,
                       beta=self.params["beta"].value, dy=grad, dx=dx, **sizes)
        return dx

    def get_config(self):
        return {"beta_init": self.beta_init}


class ExportedSwish(Swish):
    """Swish with both export hooks."""

    def onnx_nodes(self, graph, inputs):
        scaled = graph.node("Mul", [inputs[0], graph.weight("beta", self.get_weights()[0])], "scaled")
        return graph.node("Mul", [inputs[0], graph.node("Sigmoid", [scaled], "gate")], "swish")

    def c_code(self, code, inputs):
        n, features = int(np.prod(self.input_shape)), self.input_shape[-1]
        beta, x, y = code.weight("beta", self.get_weights()[0]), inputs[0], code.output(n)
        code.emit("Swish", f"for (int k = 0; k < {n}; k++)",
                  f"    {y}[k] = {x}[k] / (1.0f + expf(-{beta}[k % {features}] * {x}[k]));")
        return y


@pytest.fixture
def registry():
    """LAYER_TYPES (and the registered classes' names) as they were, after the test."""
    saved = dict(LAYER_TYPES)
    names = {cls: cls.__dict__.get("type_name") for cls in (Swish, ExportedSwish)}
    yield
    LAYER_TYPES.clear()
    LAYER_TYPES.update(saved)
    for cls, name in names.items():
        cls.type_name = name


@pytest.fixture
def registered(registry):
    register_layer(Swish, package="tests")
    register_layer(ExportedSwish, package="tests")


def swish_model(device="cpu", dtype="float32", seed=0, cls=Swish):
    return Model([Dense(6), cls(), Dense(3), Softmax()], input_size=5, device=device, dtype=dtype, seed=seed)


def blobs(n=96, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return (rng.normal(size=(n, 5)) + y[:, None]).astype(np.float32), y


# ------------------------------------------------------------------ item 8: registration and files
def test_a_registered_layer_round_trips_with_its_parameters_in_a_model_and_alone(tmp_path, registered):
    model = swish_model()
    x, y = blobs()
    model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=Adam(0.01), epochs=2, batch_size=16, verbose=0)
    assert Swish.type_name == "tests>Swish" and LAYER_TYPES["tests>Swish"] is Swish
    assert model.layers[1].state_dict().keys() == {"beta"}  # default file tensors: the parameters by name

    model.save(tmp_path / "m.safetensors", include_optimizer=True)
    loaded = Model.load(tmp_path / "m.safetensors", device="cpu")
    assert type(loaded.layers[1]) is Swish and loaded.layers[1].get_config() == model.layers[1].get_config()
    np.testing.assert_array_equal(loaded.layers[1].get_weights()[0], model.layers[1].get_weights()[0])
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    loaded.fit(x, y, epochs=1, batch_size=16, verbose=0)  # the optimizer came along

    graph_in = Input(5, name="x")
    graph = Model(inputs=graph_in, outputs=Dense(2)(Swish(beta_init=0.5, name="gate")(graph_in)), device="cpu")
    graph.save(tmp_path / "g.safetensors")
    again = Model.load(tmp_path / "g.safetensors", device="cpu")
    assert again.layers[0].name == "gate" and again.layers[0].beta_init == 0.5
    np.testing.assert_array_equal(again.predict(x), graph.predict(x))

    layer = model.layers[1]
    layer.save(tmp_path / "swish.safetensors")
    alone = Layer.load(tmp_path / "swish.safetensors")
    assert type(alone) is Swish and alone.input_shape == (6,)
    np.testing.assert_array_equal(alone.get_weights()[0], layer.get_weights()[0])
    twin = Swish()
    twin.load(tmp_path / "swish.safetensors")  # into an instance: checked, then filled
    np.testing.assert_array_equal(twin.get_weights()[0], layer.get_weights()[0])
    other = swish_model(seed=5)
    other.load_weights(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(other.predict(x), model.predict(x))


def test_register_layer_as_keras_names_it(registry):
    @register_layer
    class Plain(Swish):
        pass

    @register_layer(package="my.pkg", name="Gate")
    class Named(Swish):
        pass

    class Called(Swish):
        pass

    assert register_layer(Called, package="p") is Called
    assert (Plain.type_name, Named.type_name, Called.type_name) == ("Custom>Plain", "my.pkg>Gate", "p>Called")
    assert intricate_py.layers.register_layer is register_layer
    register_layer(Called, package="q")  # a new name: the old one goes
    assert "p>Called" not in LAYER_TYPES and LAYER_TYPES["q>Called"] is Called


def test_register_layer_refuses_what_it_cannot_name(registry):
    with pytest.raises(ValueError, match="one of intricate-py's own layers"):
        register_layer(Dense)
    with pytest.raises(ValueError, match="expected a subclass of intricate_py.layers.Layer"):
        register_layer(int)
    for bad in ({"package": ""}, {"package": "a>b"}, {"name": 3}):
        with pytest.raises(ValueError, match="printable characters without '>'"):
            register_layer(Swish, **bad)
    register_layer(Swish, package="tests")

    def another_swish():
        class Swish(Layer):
            def call(self, ctx, x):
                return x
        return Swish

    with pytest.raises(ValueError, match=r"cannot register .*another_swish.<locals>.Swish as 'tests>Swish': "
                                         r"test_custom_layers.Swish holds that name"):
        register_layer(another_swish(), package="tests")
    assert LAYER_TYPES["tests>Swish"] is Swish


def test_a_users_class_named_like_a_built_in_does_not_take_its_place(tmp_path):
    class Dense(Layer):  # noqa: F811 - on purpose
        def call(self, ctx, x):
            return x

    assert LAYER_TYPES["Dense"] is intricate_py.layers.Dense
    model = Model([intricate_py.layers.Dense(2)], input_size=3, device="cpu")
    model.save(tmp_path / "m.safetensors")
    assert type(Model.load(tmp_path / "m.safetensors", device="cpu").layers[0]) is intricate_py.layers.Dense


def test_saving_an_unregistered_custom_layer_says_how_to_register_it(tmp_path):
    model = swish_model()
    how = r"Swish is a custom layer that is not registered.*@intricate_py.register_layer\(package=...\)"
    with pytest.raises(ValueError, match=rf"cannot save layer 1 Swish\(\): {how}"):
        model.save(tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match=rf"cannot save Swish\(\): {how}"):
        model.layers[1].save(tmp_path / "l.safetensors")
    assert list(tmp_path.iterdir()) == []  # nothing written
    model.save_weights(tmp_path / "w.safetensors")  # tensors only: no type to name
    twin = swish_model(seed=3)
    twin.load_weights(tmp_path / "w.safetensors")
    np.testing.assert_array_equal(twin.get_weights()[2], model.get_weights()[2])


def test_a_checkpoint_of_an_unregistered_custom_layer_refuses_the_fit_before_training(tmp_path):
    """ModelCheckpoint and BackupAndRestore could not write their files:
    the fit is refused before its first epoch rather than after it."""
    from intricate_py.callbacks import BackupAndRestore, ModelCheckpoint

    x, y = blobs()
    for callback in (ModelCheckpoint(tmp_path / "ck.safetensors"), BackupAndRestore(tmp_path / "backup")):
        model = swish_model()
        with pytest.raises(ValueError, match=r"saves the model and its optimizer.*Swish is a custom layer that is "
                                             r"not registered.*Nothing was trained"):
            model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=Adam(0.01), epochs=2, callbacks=[callback])
        assert model.optimizer.iterations == 0 and list(tmp_path.iterdir()) == []
    model = swish_model()  # the weights alone need no registration
    model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=Adam(0.01), epochs=1,
              callbacks=[ModelCheckpoint(tmp_path / "w.safetensors", save_weights_only=True)])
    assert (tmp_path / "w.safetensors").is_file()


def test_loading_a_type_that_is_not_registered_says_which_and_how(tmp_path, registry):
    from intricate_py.saving import read_file, write_file

    register_layer(Swish, package="tests")
    swish_model().save(tmp_path / "m.safetensors")
    Swish().save(tmp_path / "l.safetensors")
    LAYER_TYPES.pop("tests>Swish")  # as in a process that has not imported the module defining it
    with pytest.raises(FormatError, match=r"layer 1: unknown layer type 'tests>Swish': a custom layer registered as "
                                          r"'tests>Swish': import the module that defines it, its class decorated "
                                          r"with @intricate_py.register_layer\(package='tests', name='Swish'\)"):
        Model.load(tmp_path / "m.safetensors", device="cpu")
    with pytest.raises(FormatError, match="unknown layer type 'tests>Swish'"):
        Layer.load(tmp_path / "l.safetensors")
    # a file naming the class alone (written before register_layer existed)
    tensors, meta = read_file(tmp_path / "l.safetensors", "layer")
    kept = {k: v for k, v in meta.items() if k not in ("format", "format_version", "library_version", "checksum")}
    write_file(tmp_path / "old.safetensors", tensors, {**kept, "layer_type": "Swish"})
    with pytest.raises(FormatError, match=r"unknown layer type 'Swish': test_custom_layers\S*\.Swish is defined "
                                          r"but not registered: decorate its class with @intricate_py.register_layer"):
        Layer.load(tmp_path / "old.safetensors")
    register_layer(Swish, package="tests")  # registered: the old file's bare class name finds it
    assert type(Layer.load(tmp_path / "old.safetensors")) is Swish


def test_a_config_that_does_not_rebuild_the_layer_is_refused_at_save(tmp_path, registry):
    @register_layer(package="tests")
    class Needy(Layer):
        def __init__(self, width, name=None):
            super().__init__(name=name)
            self.width = width

        def call(self, ctx, x):
            return x

    @register_layer(package="tests")
    class Unplain(Needy):
        def get_config(self):
            return {"width": object()}

    with pytest.raises(ValueError, match=r"Needy.get_config\(\) must give what Needy\(\*\*config\) rebuilds it from: "
                                         r"missing a required argument: 'width'"):
        Needy(3).save(tmp_path / "n.safetensors")
    with pytest.raises(ValueError, match=r"Unplain.get_config\(\) to return a dict of plain values"):
        Unplain(3).save(tmp_path / "n.safetensors")
    assert not (tmp_path / "n.safetensors").exists()


def test_default_file_tensors_are_checked_against_the_parameters(tmp_path, registered):
    from intricate_py.saving import read_file, write_file

    swish_model().save(tmp_path / "m.safetensors")
    tensors, meta = read_file(tmp_path / "m.safetensors", "model")
    kept = {k: v for k, v in meta.items() if k not in ("format", "format_version", "library_version", "checksum")}
    for changed, message in (({"1.beta": np.ones(4, np.float32)}, r"expects tensors \{'beta': \(6,\)\}. "
                                                                   r"Received: \{'beta': \(4,\)\}"),
                             ({"1.gamma": np.ones(6, np.float32)}, r"expects tensors \{'beta': \(6,\)\}")):
        crafted = {k: v for k, v in tensors.items() if not k.startswith("1.")} | changed
        write_file(tmp_path / "crafted.safetensors", crafted, kept)
        with pytest.raises(FormatError, match=rf"layer 1: Swish\(\) {message}"):
            Model.load(tmp_path / "crafted.safetensors", device="cpu")


def test_parameters_that_do_not_fit_in_memory_are_a_value_error():
    class Huge(Layer):  # as a crafted file declaring a huge input shape would make a layer of one's own
        def create_parameters(self, rng):
            raise MemoryError

    layer = Huge()
    layer.input_shape = (2**30,)
    with pytest.raises(ValueError, match=r"Huge\(\): expected an input shape whose parameters fit in memory. "
                                         r"Received: \(1073741824,\)"):
        layer.from_file({"w": np.zeros(3, np.float32)})


# ------------------------------------------------------------------ item 9: kernels of one's own
def test_a_kernel_says_what_its_source_lacks():
    with pytest.raises(ValueError, match=r"Params needs y_off: u32"):
        Kernel(SWISH_WGSL.replace(", y_off: u32,", ","))
    with pytest.raises(ValueError, match="no entry point"):
        Kernel(SWISH_WGSL.split("fn sigmoid")[0])
    with pytest.raises(ValueError, match="numpy= maps entry points"):
        Kernel(SWISH_WGSL, numpy={"nope": swish_numpy})
    with pytest.raises(ValueError, match="binding 0 must be the uniform params"):
        Kernel("@compute @workgroup_size(1) fn f() {}")


def test_dispatch_checks_its_arguments_on_every_backend(cpu):
    x, y = np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"has entry points \['swish', 'swish_grad', 'swish_beta_grad'\]"):
        SWISH.dispatch(cpu, "nope", invocations=6)
    with pytest.raises(ValueError, match="invocations=n or workgroups=.*one of them"):
        SWISH.dispatch(cpu, "swish", x=x)
    with pytest.raises(ValueError, match=r"expected arrays among \['x', 'beta', 'dy', 'y', 'dx', 'dbeta'\] and "
                                         r"numbers among \['count', 'features', 'rows'\].*Received: x_off="):
        SWISH.dispatch(cpu, "swish", invocations=6, x_off=3)
    with pytest.raises(ValueError, match=r"expected workgroups=\(x, y, z\), up to three counts in \[0, 65535\]"):
        SWISH.dispatch(cpu, "swish", workgroups=(70000,))
    with pytest.raises(ValueError, match="count is a u32: an int in"):
        SWISH.dispatch(cpu, "swish", invocations=6, count=-1)
    with pytest.raises(ValueError, match=r"x is an array<f32>. Received: an array of int32"):
        SWISH.dispatch(cpu, "swish", invocations=6, x=np.zeros(3, np.int32))
    gpu_only = Kernel(SWISH_WGSL, name="gpu only")
    with pytest.raises(NotImplementedError, match=r"Kernel\('gpu only'\) has no numpy version of its entry point "
                                                  r"'swish'.*numpy=\{'swish': function\}"):
        gpu_only.dispatch(cpu, "swish", invocations=6, x=x, beta=np.ones(3, np.float32), y=y)


def test_the_numpy_versions_gradients_equal_central_differences(cpu64):
    model = swish_model(dtype="float64")
    rng = np.random.default_rng(0)
    xs, rs = [rng.normal(size=(4, 5))], [rng.normal(size=(4, 3))]
    _, grads = plan_gradients(model, xs, rs)
    for key, value in numeric_gradients(model, xs, rs).items():
        np.testing.assert_allclose(grads[key], value, rtol=1e-6, atol=1e-8, err_msg=str(key))


def test_the_wgsl_kernel_computes_what_its_numpy_version_computes(gpu):
    cpu, on_gpu = swish_model("cpu", seed=3), swish_model("gpu", seed=3)
    rng = np.random.default_rng(1)
    xs, rs = [rng.normal(size=(70, 5))], [rng.normal(size=(70, 3))]
    want_outs, want_grads = plan_gradients(cpu, xs, rs)
    outs, grads = plan_gradients(on_gpu, xs, rs)
    np.testing.assert_allclose(outs[0], want_outs[0], rtol=1e-5, atol=1e-6)
    assert len(grads) == len(want_grads) == 5
    for (key, got), want in zip(grads.items(), want_grads.values()):  # the same layers, in order
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=str(key))
    x, y = blobs()
    for model in (cpu, on_gpu):
        model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=Adam(0.01), epochs=3, batch_size=16, verbose=0)
    for a, b in zip(on_gpu.get_weights(), cpu.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_its_training_steps_are_replayed_with_no_readback(gpu):
    x, y = blobs(160)
    model = swish_model("gpu")
    before_calls = Swish.calls
    before = gpu.stats()
    model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=Adam(0.01), epochs=3, batch_size=32, verbose=0)
    after = gpu.stats()
    assert Swish.calls - before_calls == 1  # recorded at the first step, replayed at the 14 others
    assert after["readbacks"] - before["readbacks"] <= 3  # the epochs' metrics, no readback a step
    assert after["submits"] - before["submits"] <= 15
    # a warm fit: what a model of built-in layers costs, the custom kernel's dispatches aside
    plain = Model([Dense(6), ReLU(), Dense(3), Softmax()], input_size=5, device="gpu", seed=0)
    plain.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=Adam(0.01), epochs=1, batch_size=32, verbose=0)
    costs = []
    for warm in (model, plain):
        start = gpu.stats()
        warm.fit(x, y, epochs=2, batch_size=32, verbose=0)
        costs.append({k: v - start[k] for k, v in gpu.stats().items()})
    ours, theirs = costs
    assert ours["buffers_created"] == 0
    for key in ("uploads", "readbacks", "bytes_read_back", "submits"):
        assert ours[key] == theirs[key], key
    assert ours["dispatches"] - theirs["dispatches"] == 10 * 3  # 10 steps, 3 of the kernel's dispatches each


SCALE = Kernel("""
struct Params { count: u32, factor: f32, x_off: u32, y_off: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64)
fn scale(@builtin(global_invocation_id) id: vec3<u32>) {
  if (id.x < params.count) { y[params.y_off + id.x] = params.factor * x[params.x_off + id.x]; }
}
""", name="scale", numpy={"scale": lambda x, y, factor, **_: np.multiply(x, factor, out=y)})


class Decaying(Layer):
    """y = x / (1 + step) while training: a step value, which a replayed
    step writes into the recorded dispatches."""

    calls = 0

    def step_values(self, step, call):
        return {"factor": 1.0 / (1 + step)}

    def call(self, ctx, x):
        type(self).calls += 1
        ctx.factor = ctx.values["factor"] if ctx.training else 1.0
        y, n = ctx.buffer("y", x.shape[0], self.input_shape), x.shape[0] * self.input_shape[0]
        SCALE.dispatch(self.backend, "scale", invocations=n, x=x, y=y, count=n, factor=ctx.factor)
        return y

    def backward(self, ctx, grad):
        dx, n = ctx.buffer("dx", grad.shape[0], self.input_shape), grad.shape[0] * self.input_shape[0]
        SCALE.dispatch(self.backend, "scale", invocations=n, x=grad, y=dx, count=n, factor=ctx.factor)
        return dx


def test_a_kernels_step_values_change_from_replayed_step_to_step(gpu):
    x, y = blobs(96)
    models = [Model([Dense(4), Decaying(), Dense(3), Softmax()], input_size=5, device=device, seed=2)
              for device in ("cpu", "gpu")]
    calls = []
    for model in models:
        before = Decaying.calls
        model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=Adam(0.05), epochs=3, batch_size=16, shuffle=False,
                  verbose=0)
        calls.append(Decaying.calls - before)
    assert calls == [18, 1]  # every step on the CPU; on the GPU recorded once, then replayed
    for a, b in zip(models[1].get_weights(), models[0].get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_a_dispatch_that_reads_and_writes_one_buffer_is_refused(gpu):
    a = gpu.zeros((8,))
    x, y = gpu.view(a, 0, (2, 2)), gpu.view(a, 4, (2, 2))
    with pytest.raises(ValueError, match="x and y are views of one buffer"):
        SWISH.dispatch(gpu, "swish", invocations=4, x=x, beta=gpu.zeros((2,)), y=y, count=4, features=2)
    with pytest.raises(ValueError, match="takes an array of the GPU backend"):
        SWISH.dispatch(gpu, "swish", invocations=4, x=np.zeros(4, np.float32))


SPLIT = Kernel("""
struct Params { count: u32, x_off: u32, a_off: u32, b_off: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> a: array<f32>;
@group(0) @binding(3) var<storage, read_write> b: array<f32>;
@compute @workgroup_size(64)
fn split(@builtin(global_invocation_id) id: vec3<u32>) {
  if (id.x < params.count) { let v = x[params.x_off + id.x]; a[params.a_off + id.x] = v; b[params.b_off + id.x] = 2.0 * v; }
}
""", name="split", numpy={"split": lambda x, a, b, **_: (np.copyto(a, x), np.multiply(x, 2, out=b))})


def test_views_of_one_buffer_are_checked_alike_on_every_backend(device):
    from intricate_py.backends import select_backend

    backend = select_backend(device)
    buffer, x = backend.zeros((12,)), backend.from_numpy(np.arange(1, 5, dtype=np.float32))

    def view(offset):
        return backend.view(buffer, offset, (4,))

    SPLIT.dispatch(backend, "split", invocations=4, x=x, a=view(0), b=view(4), count=4)  # written apart: fine
    np.testing.assert_array_equal(backend.to_numpy(buffer), [1, 2, 3, 4, 2, 4, 6, 8, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="a and b are both written and overlap"):
        SPLIT.dispatch(backend, "split", invocations=4, x=x, a=view(0), b=view(2), count=4)
    with pytest.raises(ValueError, match="a and b are both written and overlap"):
        SPLIT.dispatch(backend, "split", invocations=4, x=x, a=view(4), b=view(4), count=4)
    with pytest.raises(ValueError, match="x and b are views of one buffer"):  # read and written, even apart
        SPLIT.dispatch(backend, "split", invocations=4, x=view(8), a=backend.zeros((4,)), b=view(0), count=4)
    np.testing.assert_array_equal(backend.to_numpy(buffer), [1, 2, 3, 4, 2, 4, 6, 8, 0, 0, 0, 0])


BUMP_WGSL = """
struct Params { count: u32, x_off: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@compute @workgroup_size(64)
fn bump(@builtin(global_invocation_id) id: vec3<u32>) {
  if (id.x < params.count) { x[params.x_off + id.x] = x[params.x_off + id.x] + STEP; }
}
"""


def _compiled(gpu, fragment):
    """The entries of gpu's kernels whose keys name ``fragment``, by table."""
    kernels = gpu.kernels
    tables = ("pipelines", "modules", "layouts", "entry_file", "entry_point")
    return {t: sorted(k for k in getattr(kernels, t) if fragment in k) for t in tables}


def test_kernels_of_one_source_compile_once_and_dead_ones_are_let_go(gpu):
    import gc

    x = gpu.zeros((4,))

    def bump(step, name):
        Kernel(BUMP_WGSL.replace("STEP", step), name=name).dispatch(gpu, "bump", invocations=4, x=x, count=4)

    kept = [Kernel(BUMP_WGSL.replace("STEP", "1.0"), name="bump_once") for _ in range(20)]
    for kernel in kept:
        kernel.dispatch(gpu, "bump", invocations=4, x=x, count=4)
    assert len(_compiled(gpu, "custom_bump_once_")["pipelines"]) == 1  # one compilation for the 20
    for i in range(20):
        bump("1.0", "bump_again")  # made and dropped in each call: compiled once, kept a while
    assert len(_compiled(gpu, "custom_bump_again_")["pipelines"]) == 1
    for i in range(3 * gpu.UNUSED_KERNELS_KEPT):
        bump(f"{i}.0", f"bump_each{i}")  # a source of its own each: let go
    del kept, kernel
    gc.collect()
    bump("0.0", "bump_last")  # the latest unused kept (bump_once's among them), the others let go
    compiled = _compiled(gpu, "custom_bump_")
    assert all(len(keys) == gpu.UNUSED_KERNELS_KEPT + 1 for keys in compiled.values()), compiled["modules"]
    assert not any(_compiled(gpu, "custom_bump_each0_").values())
    assert not any(key[0].startswith("custom_bump_each0_") for key in gpu._bind_groups)
    np.testing.assert_array_equal(gpu.to_numpy(x), 40 + sum(range(3 * gpu.UNUSED_KERNELS_KEPT)))


def test_a_failed_compilation_leaves_nothing_and_a_corrected_kernel_then_runs(gpu):
    broken = Kernel(BUMP_WGSL.replace("STEP", "undefined_thing"), name="bump_fixed")
    for _ in range(2):  # the same error again: nothing half made is left
        with pytest.raises(ValueError, match=r"(?s)does not compile on .*undefined_thing"):
            broken.dispatch(gpu, "bump", invocations=4, x=gpu.zeros((4,)), count=4)
        assert not any(_compiled(gpu, broken.file.name).values())
    fixed, x = Kernel(BUMP_WGSL.replace("STEP", "2.0"), name="bump_fixed"), gpu.zeros((4,))
    fixed.dispatch(gpu, "bump", invocations=4, x=x, count=4)
    np.testing.assert_array_equal(gpu.to_numpy(x), 2)


def test_a_kernel_that_does_not_compile_says_so(gpu):
    broken = Kernel(SWISH_WGSL.replace("return 1.0 / (1.0 + exp(-t));", "return undefined_thing;"), name="broken")
    with pytest.raises(ValueError, match=r"(?s)Kernel\('broken'\) does not compile on .*undefined_thing"):
        broken.dispatch(gpu, "swish", invocations=1)


# ------------------------------------------------------------------ item 10: export
def test_the_onnx_hook_exports_a_layer_that_runs_in_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model = swish_model(cls=ExportedSwish)
    model.export(tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x, _ = blobs(20)
    np.testing.assert_allclose(session.run(None, {"x": x})[0], model.predict(x), rtol=1e-5, atol=1e-6)
    names = {node.name for node in __import__("onnx").load(str(tmp_path / "m.onnx")).graph.node}
    assert {"1.scaled", "1.gate", "1.swish"} <= names


def test_the_c_hook_exports_a_layer_that_compiles_and_computes_predict(tmp_path):
    from export_models import STRICT

    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler")
    model = swish_model(cls=ExportedSwish)
    model.export(tmp_path, format="c", name="net")
    assert "net_layer1_beta" in (tmp_path / "net.c").read_text()
    subprocess.run([compiler, *STRICT, "-O2", "-shared", "-fPIC", str(tmp_path / "net.c"), "-o",
                    str(tmp_path / "libnet.so"), "-lm"], check=True)
    lib = ctypes.CDLL(str(tmp_path / "libnet.so"))
    x, _ = blobs(9)
    out = np.empty((9, 3), np.float32)
    lib.net_batch(x.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(9))
    np.testing.assert_allclose(out, model.predict(x), rtol=1e-5, atol=1e-6)


def test_a_layer_without_a_hook_is_refused_naming_the_layer_and_the_hook(tmp_path):
    pytest.importorskip("onnx")
    model = swish_model()
    with pytest.raises(ValueError, match=r"cannot export layer 1 Swish\(\) to ONNX: the ONNX exporter knows .*"
                                         r"Received: a Swish layer, which does not define Swish.onnx_nodes"):
        model.export(tmp_path / "m.onnx")
    with pytest.raises(ValueError, match=r"cannot export layer 1 Swish\(\) to C: .* which does not define "
                                         r"Swish.c_code \(the hook by which a layer of your own writes its C code"):
        model.export(tmp_path / "c", format="c")

    class Careless(Swish):
        def onnx_nodes(self, graph, inputs):
            return "nothing"

        def c_code(self, code, inputs):
            return "nothing"

    careless = Model([Dense(2), Careless(), ReLU()], input_size=3, device="cpu")
    with pytest.raises(ValueError, match=r"expected Careless.onnx_nodes to return the name of its output"):
        careless.export(tmp_path / "m.onnx")
    with pytest.raises(ValueError, match=r"expected Careless.c_code to return the name of its output"):
        careless.export(tmp_path / "c", format="c")


def test_a_kernel_may_include_the_library_of_activation_functions(gpu):
    tanh = Kernel("""
// includes: activation_functions.wgsl
struct Params { count: u32, x_off: u32, y_off: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64)  // a comment between the attributes and the function
fn tanh_of(@builtin(global_invocation_id) id: vec3<u32>) {
  if (id.x < params.count) { y[params.y_off + id.x] = activate(ACTIVATION_TANH, x[params.x_off + id.x], 0.0); }
}
""", name="tanh")
    values = np.linspace(-3, 3, 100).astype(np.float32)
    x, y = gpu.view(gpu.asarray(np.r_[np.zeros(5, np.float32), values]), 5, (100,)), gpu.empty((100,))
    tanh.dispatch(gpu, "tanh_of", invocations=100, x=x, y=y, count=100)  # x from element 5: x_off
    np.testing.assert_allclose(gpu.to_numpy(y), np.tanh(values), atol=1e-6)
