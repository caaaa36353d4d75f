"""Sequences: Embedding, PositionEmbedding, MultiHeadAttention and Dense on
(n, ..., features), against PyTorch, Keras's formulas worked with einsum,
and hand-made answers; on numpy and on the GPU."""

from __future__ import annotations

import numpy as np
import pytest

from intricate_py import Input, Model
from intricate_py.backends import NumpyBackend
from intricate_py.layers import Add, Dense, Embedding, Layer, LayerNormalization, MultiHeadAttention, PositionEmbedding
from intricate_py.losses import CategoricalCrossEntropy
from intricate_py.optimizers import Adam

torch = pytest.importorskip("torch")

E, H = 12, 3  # embedding width and heads: key_dim 4


def _torch_mha(mha: MultiHeadAttention, kdim: int = E, vdim: int = E, dtype=torch.float64):
    """torch.nn.MultiheadAttention (batch_first) holding ``mha``'s weights."""
    t = torch.nn.MultiheadAttention(E, H, batch_first=True, kdim=kdim, vdim=vdim, dtype=dtype)
    Wq, bq, Wk, bk, Wv, bv, Wo, bo = (torch.tensor(w, dtype=dtype) for w in mha.get_weights())
    with torch.no_grad():
        if kdim == vdim == E:
            t.in_proj_weight.copy_(torch.cat([Wq.reshape(E, E).T, Wk.reshape(kdim, E).T, Wv.reshape(vdim, E).T]))
        else:
            t.q_proj_weight.copy_(Wq.reshape(E, E).T)
            t.k_proj_weight.copy_(Wk.reshape(kdim, E).T)
            t.v_proj_weight.copy_(Wv.reshape(vdim, E).T)
        t.in_proj_bias.copy_(torch.cat([bq.reshape(-1), bk.reshape(-1), bv.reshape(-1)]))
        t.out_proj.weight.copy_(Wo.reshape(E, E).T)
        t.out_proj.bias.copy_(bo)
    return t


def _causal(tq: int, tk: int):
    return torch.triu(torch.ones(tq, tk, dtype=torch.bool), 1)


def _standalone_gradients(mha, inputs, grad):
    """Forward, then backward of E = Σ grad · y: (y, input gradients, parameter gradients in get_weights order)."""
    backend = mha.backend
    y = backend.to_numpy(mha.forward([backend.asarray(a) for a in inputs])).copy()
    dxs = mha.back_propagate(backend.asarray(grad))
    return y, [backend.to_numpy(d).copy() for d in dxs], [backend.to_numpy(p.grad).copy() for p in mha.params.values()]


def _rebuild(mha: MultiHeadAttention, backend) -> None:
    """Move a built layer to ``backend`` (its parameters as they are)."""
    mha.build(mha.input_shape, backend)


@pytest.mark.parametrize("causal, tq", [(True, 5), (False, 5), (True, 1)])
def test_self_attention_equals_pytorch_with_gradients_in_float64(causal, tq):
    rng = np.random.default_rng(tq)
    mha = MultiHeadAttention(H, E // H, use_causal_mask=causal)
    x = rng.normal(size=(3, tq, E))
    mha.build(((tq, E), (tq, E)), NumpyBackend("float64"), np.random.default_rng(1))
    mha.set_weights([w + rng.normal(0, 0.1, w.shape) for w in mha.get_weights()])  # nonzero biases
    g = rng.normal(size=(3, tq, E))
    y, (dq, dv), param_grads = _standalone_gradients(mha, [x, x], g)

    t = _torch_mha(mha)
    xt = torch.tensor(x, requires_grad=True)
    want = t(xt, xt, xt, attn_mask=_causal(tq, tq) if causal else None, need_weights=False)[0]
    (want * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(y, want.detach().numpy(), rtol=1e-10, atol=1e-12)
    # the query's and the value's (and key's) gradients add up to x's
    np.testing.assert_allclose(dq + dv, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    Wq, bq, Wk, bk, Wv, bv, Wo, bo = param_grads
    w_grad, b_grad = t.in_proj_weight.grad.numpy(), t.in_proj_bias.grad.numpy()
    np.testing.assert_allclose(np.concatenate([Wq.reshape(E, E).T, Wk.reshape(E, E).T, Wv.reshape(E, E).T]), w_grad,
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.concatenate([bq.ravel(), bk.ravel(), bv.ravel()]), b_grad, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(Wo.reshape(E, E).T, t.out_proj.weight.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(bo, t.out_proj.bias.grad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_cross_attention_with_its_own_key_equals_pytorch(request, device):
    """A query of 4 positions over a value of 7 and a key of other widths
    (PyTorch's kdim and vdim), causal (a query sees the keys up to its
    own position); float64 on numpy, float32 on the GPU."""
    if device == "gpu":
        request.getfixturevalue("gpu")
    dtype = "float64" if device == "cpu" else "float32"
    rng = np.random.default_rng(3)
    q, v, k = rng.normal(size=(2, 4, E)), rng.normal(size=(2, 7, 5)), rng.normal(size=(2, 7, 9))
    query, value, key = Input((4, E)), Input((7, 5)), Input((7, 9))
    mha = MultiHeadAttention(H, E // H)
    model = Model([query, value, key], mha(query, value, key=key, use_causal_mask=True), device=device, dtype=dtype,
                  seed=2)
    mha.set_weights([w + rng.normal(0, 0.1, w.shape) for w in mha.get_weights()])
    g = rng.normal(size=(2, 4, E))
    y, (dq, dv, dk), _ = _standalone_gradients(mha, [q, v, k], g)

    t = _torch_mha(mha, kdim=9, vdim=5)
    qt, vt, kt = (torch.tensor(a, requires_grad=True) for a in (q, v, k))
    want = t(qt, kt, vt, attn_mask=_causal(4, 7), need_weights=False)[0]
    (want * torch.tensor(g)).sum().backward()
    tolerance = dict(rtol=1e-9, atol=1e-12) if device == "cpu" else dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(y, want.detach().numpy(), **tolerance)
    np.testing.assert_allclose(model.predict([q, v, k]), y, **tolerance)
    for ours, theirs in ((dq, qt), (dv, vt), (dk, kt)):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), **tolerance)


def test_weights_are_keras_arrays_in_keras_order_and_compute_keras_einsums():
    """Keras's MultiHeadAttention computes with EinsumDense kernels (query
    (features, heads, key_dim), ...); written with its own equations, the
    arrays get_weights gives compute what the layer computes."""
    rng = np.random.default_rng(0)
    mha = MultiHeadAttention(2, 3, value_dim=4, output_shape=5)
    q, v = rng.normal(size=(2, 3, 6)), rng.normal(size=(2, 4, 7))
    y = mha(q, v)
    weights = mha.get_weights()
    assert [w.shape for w in weights] == [(6, 2, 3), (2, 3), (7, 2, 3), (2, 3), (7, 2, 4), (2, 4), (2, 4, 5), (5,)]
    Wq, bq, Wk, bk, Wv, bv, Wo, bo = [w.astype(np.float64) for w in weights]
    query = np.einsum("abc,cde->abde", q, Wq) + bq
    key = np.einsum("abc,cde->abde", v, Wk) + bk
    value = np.einsum("abc,cde->abde", v, Wv) + bv
    scores = np.einsum("aecd,abcd->acbe", key, query / np.sqrt(3))
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    heads = np.einsum("acbe,aecd->abcd", probs, value)
    want = np.einsum("abcd,cde->abe", heads, Wo) + bo
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
    mha.set_weights([w * 2 for w in weights])
    np.testing.assert_array_equal(mha.get_weights()[6], weights[6] * 2)
    with pytest.raises(ValueError, match=r"weights\[6\]"):
        mha.set_weights(weights[:6] + [np.zeros((4, 2, 5))] + weights[7:])


def test_attention_calls_say_what_they_expect():
    mha = MultiHeadAttention(2, 3)
    x = Input((4, 6))
    with pytest.raises(ValueError, match="query and a value"):
        mha(x)
    mha(x, x, use_causal_mask=True)
    with pytest.raises(ValueError, match="one mask in all its calls"):
        mha(x, x, use_causal_mask=False)
    with pytest.raises(ValueError, match="num_heads=0"):
        MultiHeadAttention(0, 3)
    with pytest.raises(ValueError, match=r"key as long as the value \(4\). Received: 3"):
        MultiHeadAttention(2, 3)(x, x, key=Input((3, 6)))


def test_a_file_keeps_the_attention_its_mask_and_its_weights(tmp_path):
    ids = Input(6, name="ids")
    h = Embedding(9, E)(ids)
    out = Dense(9)(MultiHeadAttention(H, E // H, dropout=0.2)(h, h, use_causal_mask=True))
    model = Model(ids, out, seed=3)
    model.save(tmp_path / "m.safetensors")
    loaded = Model.load(tmp_path / "m.safetensors")
    x = np.random.default_rng(0).integers(0, 9, (4, 6))
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert repr(loaded.layers[1]) == "MultiHeadAttention(3×4, causal)"
    assert loaded.layers[1].get_config() == model.layers[1].get_config()
    mha = model.layers[1]
    assert sorted(mha.state_dict()) == ["key.bias", "key.weight", "output.bias", "output.weight", "query.bias",
                                        "query.weight", "value.bias", "value.weight"]
    assert mha.state_dict()["query.weight"].shape == (E, E)  # a PyTorch Linear's (out, in)


def test_a_chain_of_an_embedding_and_a_dense_of_sequences_loads(tmp_path):
    """A chain's file names its input shape only: the layers get theirs from
    it before their tensors are read (an Embedding's table says nothing of
    its ids' shape, a Dense's weight nothing of the positions)."""
    model = Model([Embedding(10, 4), Dense(3), LayerNormalization()], input_size=(5,), seed=0)
    model.save(tmp_path / "chain.safetensors")
    loaded = Model.load(tmp_path / "chain.safetensors")
    x = np.random.default_rng(0).integers(0, 10, (3, 5))
    assert loaded.output_shape == (5, 3)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    layer = model.layers[0]
    layer.save(tmp_path / "embedding.safetensors")
    again = Layer.load(tmp_path / "embedding.safetensors")
    assert again.input_shape == (5,)
    np.testing.assert_array_equal(again.embeddings, layer.embeddings)


# ------------------------------------------------------------------ embeddings
def test_embedding_looks_up_rows_and_adds_their_gradients_as_pytorch():
    rng = np.random.default_rng(0)
    layer = Embedding(5, 3)
    ids = np.array([[4, 1, 4], [0, 4, 1]])
    y = layer(ids)
    np.testing.assert_array_equal(y, layer.embeddings[ids])
    layer.build(layer.input_shape, NumpyBackend("float64"))
    g = rng.normal(size=(2, 3, 3))
    layer.forward(layer.backend.asarray(ids.astype(np.float64)))
    layer.compute_gradients(g)
    t = torch.nn.Embedding(5, 3, dtype=torch.float64)
    with torch.no_grad():
        t.weight.copy_(torch.tensor(layer.embeddings))
    (t(torch.tensor(ids)) * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(layer.params["embeddings"].grad, t.weight.grad.numpy(), rtol=1e-12)
    assert not layer.params["embeddings"].grad[2].any()  # an id that never came


def test_the_gpu_adds_embedding_gradients_in_the_same_order_bit_for_bit(gpu):
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 13, 300).astype(np.float32)
    dy = rng.normal(size=(300, 7)).astype(np.float32)
    grads = []
    for backend in (NumpyBackend(), gpu):
        out = backend.zeros((13, 7))
        backend.embedding_grad(backend.from_numpy(ids), backend.from_numpy(dy), out)
        grads.append(backend.to_numpy(out))
    np.testing.assert_array_equal(grads[1], grads[0])


@pytest.mark.parametrize("ids, match", [
    (np.array([[1, 9, 2]]), r"ids in \[0, 6\] \(input_dim=7\). Received: x holds the id 9 \(largest 9\)"),
    (np.array([[1, -1, 2]]), r"Received: x holds the id -1"),
    (np.array([[1, 2.5, 2]]), r"whole-number ids in x. Received: 2.5"),
])
def test_ids_outside_the_table_are_refused_when_the_data_is_given(ids, match):
    x = Input(3)
    model = Model(x, Dense(2)(Embedding(7, 4)(x)))
    with pytest.raises(ValueError, match=match):
        model.predict(ids)
    with pytest.raises(ValueError, match=match):
        model.fit(ids, np.zeros((1, 3, 2)), loss="mse", optimizer=Adam(1e-3), epochs=1)
    with pytest.raises(ValueError, match="input_dim=7"):
        Embedding(7, 4)(np.array([[7]]))


def test_the_gpu_writes_nan_for_an_id_outside_the_table(gpu):
    out = gpu.empty((3, 2))
    gpu.embedding(gpu.from_numpy(np.array([1, 5, 0], np.float32)), gpu.from_numpy(np.ones((4, 2), np.float32)), out)
    got = gpu.to_numpy(out)
    assert np.isnan(got[1]).all() and (got[[0, 2]] == 1).all()


def test_position_embedding_gives_its_first_rows_to_every_sample_and_sums_their_gradients():
    layer = PositionEmbedding(6)
    x = np.zeros((2, 4, 3))
    y = layer(x)
    table = layer.embeddings
    assert table.shape == (6, 3)
    np.testing.assert_array_equal(y, np.broadcast_to(table[:4], (2, 4, 3)))
    g = np.arange(24.0).reshape(2, 4, 3)
    layer.forward(layer.backend.asarray(x.astype(np.float32)))
    dx = layer.back_propagate(layer.backend.asarray(g.astype(np.float32)))
    grad = layer.params["embeddings"].grad
    np.testing.assert_array_equal(grad[:4], g.sum(axis=0))
    assert not grad[4:].any() and not np.asarray(dx).any()
    with pytest.raises(ValueError, match=r"length ≤ 6"):
        PositionEmbedding(6)(Input((7, 3)))


# ------------------------------------------------------------------ Dense
def test_dense_on_sequences_equals_a_pytorch_linear_on_the_last_axis():
    rng = np.random.default_rng(0)
    x = Input((5, 4))
    model = Model(x, Dense(3, activation="gelu")(x), dtype="float64", seed=0)
    layer = model.layers[0]
    a = rng.normal(size=(2, 5, 4))
    linear = torch.nn.Linear(4, 3, dtype=torch.float64)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(layer.weights.T))
        linear.bias.copy_(torch.tensor(layer.biases))
    want = torch.nn.functional.gelu(linear(torch.tensor(a))).detach().numpy()
    np.testing.assert_allclose(model.predict(a), want, rtol=1e-12)
    assert repr(layer) == "Dense(4→3, gelu)"


# --------------------------------------------------------------- a small model
def _language_model(device: str, seed: int = 1) -> Model:
    T, V = 8, 11
    ids = Input((T,), name="ids")
    h = Embedding(V, 16)(ids)
    h = Add()([h, PositionEmbedding(T)(h)])
    n = LayerNormalization()(h)
    h = Add()([h, MultiHeadAttention(2, 8)(n, n, use_causal_mask=True)])
    h = Add()([h, Dense(16)(Dense(32, activation="gelu")(LayerNormalization()(h)))])
    return Model(ids, Dense(V)(LayerNormalization()(h)), device=device, seed=seed)


def _counting_data(count: int = 120, T: int = 8, V: int = 11):
    seq = np.arange(count + T + 1) % V
    return np.stack([seq[i:i + T] for i in range(count)]), np.stack([seq[i + 1:i + T + 1] for i in range(count)])


def test_a_small_language_model_learns_to_count_on_both_devices_alike(gpu):
    x, y = _counting_data(240)
    histories, models = [], []
    for device in ("cpu", "gpu"):
        model = _language_model(device)
        model.compile(optimizer=Adam(5e-3), loss=CategoricalCrossEntropy(from_logits=True))
        histories.append(model.fit(x, y, epochs=5, batch_size=16, verbose=0).history)
        models.append(model)
    assert histories[0]["loss"][-1] < 0.5 * histories[0]["loss"][0]
    np.testing.assert_allclose(histories[1]["loss"], histories[0]["loss"], rtol=1e-4)
    for a, b in zip(models[0].layers, models[1].layers):
        for k, (wa, wb) in enumerate(zip(a.get_weights(), b.get_weights())):
            if isinstance(a, MultiHeadAttention) and k == 3:
                # the key's bias adds the same to a query's every score: its gradient is 0 but for
                # rounding, which Adam scales up to steps of the learning rate, differently on each device
                continue
            np.testing.assert_allclose(wb, wa, rtol=1e-3, atol=1e-5, err_msg=f"{a!r} {k}")


def test_the_same_seed_gives_the_same_bits(gpu):
    x, y = _counting_data(40)
    for device in ("cpu", "gpu"):
        runs = []
        for _ in range(2):
            model = _language_model(device, seed=4)
            model.fit(x, y, loss=CategoricalCrossEntropy(from_logits=True), optimizer=Adam(1e-3), epochs=2,
                      batch_size=8, verbose=0)
            runs.append([w for layer in model.layers for w in layer.get_weights()])
        for a, b in zip(*runs):
            np.testing.assert_array_equal(a, b)


def test_a_language_model_step_stays_on_the_gpu(gpu):
    """Steps are replayed: no readback and no buffer made after the first epoch's."""
    x, y = _counting_data(64)
    model = _language_model("gpu")
    stats = []
    model.fit(x, y, loss=CategoricalCrossEntropy(from_logits=True), optimizer=Adam(1e-3), epochs=3, batch_size=16,
              verbose=0, callbacks=[lambda epoch, logs: stats.append(model.device.stats())])
    assert stats[2]["buffers_created"] == stats[0]["buffers_created"]
    assert stats[2]["readbacks"] - stats[1]["readbacks"] == 1  # the epoch's metrics
    assert stats[2]["submits"] - stats[1]["submits"] <= 4  # 4 steps an epoch, at most one submission each


def test_a_layer_of_the_sequence_api_is_a_layer():
    assert all(issubclass(cls, Layer) for cls in (Embedding, PositionEmbedding, MultiHeadAttention))
