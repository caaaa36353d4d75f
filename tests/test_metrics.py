"""intricate_py.metrics: each metric against a hand-worked answer and
against Keras 3's definition written out here in numpy; the GPU's counts
against numpy's; metrics in fit (training and validation), evaluate and
graph models, by Keras's names; and no readback a step on the GPU."""

import numpy as np
import pytest

from intricate_py import Input, Model, fit_data
from intricate_py import metrics as M
from intricate_py.layers import Dense, Sigmoid, Softmax
from intricate_py.losses import BinaryCrossEntropy, CategoricalCrossEntropy, MeanSquared
from intricate_py.optimizers import SGD, Adam

EPS = 1e-7  # Keras's backend.epsilon()


# ----------------------------------------------------------------- Keras's definitions, in numpy
def keras_precision_recall(t, p, threshold=0.5, class_id=None, top_k=None):
    if top_k is not None:  # Keras's _filter_top_k: the k largest of a row kept (ties: the lower index), the rest -inf
        kept = np.full_like(p, -np.inf)
        top = np.argsort(-p, axis=-1, kind="stable")[..., :top_k]
        np.put_along_axis(kept, top, np.take_along_axis(p, top, -1), -1)
        p = kept
    if class_id is not None:
        t, p = t[..., class_id], p[..., class_id]
    pos, truth = p.reshape(-1) > threshold, t.reshape(-1) > 0.5
    tp, fp, fn = (pos & truth).sum(), (pos & ~truth).sum(), (~pos & truth).sum()
    return (tp / (tp + fp) if tp + fp else 0.0), (tp / (tp + fn) if tp + fn else 0.0)


def keras_fbeta(t, p, average, beta=1.0, threshold=None):
    if threshold is None:
        pred = (p >= p.max(-1, keepdims=True)) & (np.abs(p) > 1e-9)
    else:
        pred = p > threshold
    pred, t = pred.astype(np.float64), t.astype(np.float64)
    axis = None if average == "micro" else 0
    tp, fp = (pred * t).sum(axis), (pred * (1 - t)).sum(axis)
    fn, w = ((1 - pred) * t).sum(axis), t.sum(axis)
    precision, recall = tp / (tp + fp + EPS), tp / (tp + fn + EPS)
    f = precision * recall / (beta ** 2 * precision + recall + EPS) * (1 + beta ** 2)
    if average == "weighted":
        return (f * w / (w.sum() + EPS)).sum()
    return np.mean(f)


def keras_auc(t, p, num_thresholds=200, curve="ROC", summation="interpolation"):
    thresholds = np.array([-EPS] + [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
                          + [1 + EPS], np.float32)
    p, truth = p.reshape(-1).astype(np.float32), t.reshape(-1) > 0.5
    above = p[None, :] > thresholds[:, None]
    tp, fp = (above & truth).sum(1), (above & ~truth).sum(1)
    fn, tn = (~above & truth).sum(1), (~above & ~truth).sum(1)

    def div(a, b):
        return np.where(b > 0, a / np.maximum(b, 1e-300), 0.0)

    if curve == "PR" and summation == "interpolation":
        dtp = tp[:-1] - tp[1:]
        pp = tp + fp
        dp = pp[:-1] - pp[1:]
        slope = div(dtp, np.maximum(dp, 0))
        intercept = tp[1:] - slope * pp[1:]
        ratio = np.where((pp[:-1] > 0) & (pp[1:] > 0), div(pp[:-1], np.maximum(pp[1:], 0)), 1.0)
        return div(slope * (dtp + intercept * np.log(ratio)), np.maximum(tp[1:] + fn[1:], 0)).sum()
    recall = div(tp, tp + fn)
    x, y = (div(fp, fp + tn), recall) if curve == "ROC" else (recall, div(tp, tp + fp))
    heights = {"interpolation": (y[:-1] + y[1:]) / 2, "minoring": np.minimum(y[:-1], y[1:]),
               "majoring": np.maximum(y[:-1], y[1:])}[summation]
    return ((x[:-1] - x[1:]) * heights).sum()


def keras_r2(t, p, aggregation="uniform_average", num_regressors=0):
    s, s2, e2, count = t.sum(0), (t * t).sum(0), ((t - p) ** 2).sum(0), len(t)
    total = s2 - s * (s / count)
    raw = 1 - e2 / total
    raw = np.where(np.isinf(raw), 0.0, raw)
    score = raw.mean() if aggregation == "uniform_average" else (total * raw).sum() / total.sum()
    n = t.size
    if num_regressors and num_regressors < n - 1:
        score = 1 - (1 - score) * (n - 1) / (n - num_regressors - 1)
    return score


def keras_top_k(labels, p, k):
    mine = p[np.arange(len(p)), labels]
    return np.mean((p > mine[:, None]).sum(1) < k)


def reference(name_or_metric, t, p):
    """Keras's value of a metric (as the tests configure them) for targets t and predictions p."""
    m = name_or_metric
    if isinstance(m, M.AUC):
        return keras_auc(t, p, m.num_thresholds, m.curve, m.summation_method)
    if isinstance(m, M.FBetaScore):
        return keras_fbeta(t, p, m.average, m.beta, m.threshold)
    if isinstance(m, M.Precision):
        return keras_precision_recall(t, p, m.thresholds, m.class_id, m.top_k)[0]
    if isinstance(m, M.Recall):
        return keras_precision_recall(t, p, m.thresholds, m.class_id, m.top_k)[1]
    if isinstance(m, M.R2Score):
        return keras_r2(t, p, m.class_aggregation, m.num_regressors)
    if isinstance(m, M.TopKCategoricalAccuracy):
        return keras_top_k(t.argmax(-1), p, m.k)
    if isinstance(m, M.CategoricalAccuracy):
        return np.mean(p.argmax(-1) == t.argmax(-1))
    if isinstance(m, M.BinaryAccuracy):
        return np.mean((p > m.threshold) == (t > 0.5))
    if isinstance(m, M.Accuracy):
        return np.mean(p == t)
    if isinstance(m, M.RootMeanSquaredError):
        return np.sqrt(np.mean((p - t) ** 2))
    if isinstance(m, M.MeanSquaredError):
        return np.mean((p - t) ** 2)
    if isinstance(m, M.MeanAbsoluteError):
        return np.mean(np.abs(p - t))
    raise AssertionError(m)


def classifier_metrics():
    return [M.BinaryAccuracy(), M.BinaryAccuracy(threshold=0.3), M.CategoricalAccuracy(),
            M.TopKCategoricalAccuracy(k=2), M.Precision(), M.Recall(), M.Precision(thresholds=0.7),
            M.Recall(class_id=1), M.Precision(top_k=2), M.Recall(top_k=1, thresholds=0.3),
            M.Precision(top_k=2, class_id=3), M.F1Score(), M.F1Score(average="micro"), M.F1Score(average="weighted"),
            M.F1Score(threshold=0.4), M.FBetaScore(beta=2.0, average="macro"), M.AUC(), M.AUC(num_thresholds=7),
            M.AUC(curve="PR"), M.AUC(summation_method="minoring"), M.AUC(curve="PR", summation_method="majoring"),
            M.MeanAbsoluteError(), M.MeanSquaredError(), M.RootMeanSquaredError(), M.R2Score(),
            M.R2Score(class_aggregation="variance_weighted_average"), M.R2Score(num_regressors=2)]


# ----------------------------------------------------------------- hand-worked answers (Keras's docs)
def test_hand_worked_answers():
    assert M.Precision()([0, 1, 1, 1], [1, 0, 1, 1]) == pytest.approx(2 / 3)
    assert M.Recall()([0, 1, 1, 1], [1, 0, 1, 1]) == pytest.approx(2 / 3)
    # thresholds -1e-7, 0.5, 1 + 1e-7: tp [2, 1, 0], fp [2, 0, 0]; ((1 + 0.5) / 2) · 1
    assert M.AUC(num_thresholds=3)([0, 0, 1, 1], [0, 0.5, 0.3, 0.9]) == pytest.approx(0.75)
    t = np.array([[1, 1, 1], [1, 0, 0], [1, 1, 0]])
    p = np.array([[0.2, 0.6, 0.7], [0.2, 0.6, 0.6], [0.6, 0.8, 0.0]])
    # per class 0.5, 0.8, 0.6666667 (Keras's example)
    assert M.F1Score(threshold=0.5)(t, p) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3, abs=1e-6)
    assert M.R2Score()([[1], [4], [3]], [[2], [4], [4]]) == pytest.approx(0.57142854, abs=1e-7)
    t3 = [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
    p3 = [[0.4, 0.5, 0.6], [0.1, 0.2, 0.3], [0.5, 0.8, 0.2]]
    assert M.R2Score()(t3, p3) == pytest.approx(-0.12, abs=1e-6)  # sklearn's, in Keras's tests
    assert M.TopKCategoricalAccuracy(k=1)([[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]]) == 0.5
    assert M.SparseTopKCategoricalAccuracy(k=1)([2, 1], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]]) == 0.5
    assert M.CategoricalAccuracy()([[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]]) == 0.5
    assert M.SparseCategoricalAccuracy()([[2], [1]], [[0.1, 0.6, 0.3], [0.05, 0.95, 0]]) == 0.5
    assert M.BinaryAccuracy()([[1], [1], [0], [0]], [[0.98], [1], [0], [0.6]]) == 0.75
    assert M.Accuracy()([[1], [2], [3], [4]], [[0], [2], [3], [4]]) == 0.75
    assert M.MeanAbsoluteError()([[0, 1], [0, 0]], [[1, 1], [0, 0]]) == 0.25
    assert M.MeanSquaredError()([[0, 1], [0, 0]], [[1, 1], [0, 0]]) == 0.25
    assert M.RootMeanSquaredError()([[0, 1], [0, 0]], [[1, 1], [0, 0]]) == 0.5
    assert M.Precision()([0, 0], [0.1, 0.2]) == 0.0  # no positive predicted: 0, as divide_no_nan
    assert M.get("acc")[1]([[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]]) == 0.5
    assert M.get("accuracy")[1]([1, 0], [0.7, 0.6]) == 0.5


@pytest.mark.parametrize("metric", classifier_metrics(), ids=repr)
def test_each_metric_is_keras_definition(metric, rng):
    classes = 4
    p = rng.dirichlet(np.ones(classes), size=300)
    p[:5] = np.round(p[:5], 1)  # predictions on a threshold
    labels = rng.integers(0, classes, 300)
    t = np.eye(classes)[labels]
    assert metric(t, p) == pytest.approx(reference(metric, t, p), abs=1e-9)
    # integer labels are their one-hot rows
    assert metric(labels, p) == pytest.approx(metric(t, p), abs=1e-12)


@pytest.mark.parametrize("metric", classifier_metrics(), ids=repr)
def test_gpu_counts_as_numpy(metric, gpu, rng):
    p = rng.dirichlet(np.ones(5), size=700).astype(np.float32)
    labels = rng.integers(0, 5, 700)
    t = np.eye(5, dtype=np.float32)[labels]
    want = metric(t, p)
    assert metric(t, p, backend=gpu) == pytest.approx(want, rel=1e-5, abs=1e-6)
    assert metric(labels, p, backend=gpu) == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_gpu_and_numpy_ops_add_the_same(gpu, cpu, rng):
    """The operations themselves: the softmax and sigmoid transforms, then_sigmoid, column ranges, sums."""
    z = rng.normal(size=(70, 6)).astype(np.float32)
    t = (rng.random((70, 6)) > 0.6).astype(np.float32)
    thresholds = np.linspace(-0.1, 1.1, 9).astype(np.float32)
    for transform in ("none", "softmax", "sigmoid"):
        calls = [("metric_counts", ("confusion", 4), dict(threshold=0.3, transform=transform)),
                 ("metric_counts", ("confusion", 12), dict(per_class=True, row_max=True, columns=(2, 5),
                                                           transform=transform)),
                 ("metric_counts", ("buckets", 20), dict(transform=transform, then_sigmoid=True)),
                 ("metric_counts", ("top_k", 2), dict(k=3, transform=transform)),
                 ("metric_counts", ("categorical", 2), dict(transform=transform)),
                 ("metric_counts", ("binary", 2), dict(threshold=0.2, transform=transform)),
                 ("metric_sums", ("absolute",), dict(transform=transform)),
                 ("metric_sums", ("squared",), dict(transform=transform)),
                 ("metric_sums", ("columns",), dict(transform=transform))]
        for op, args, kwargs in calls:
            results = []
            for backend in (cpu, gpu):
                acc = backend.zeros((40,))
                if args[0] == "buckets":
                    kwargs["thresholds"] = backend.from_numpy(thresholds)
                getattr(backend, op)(args[0], backend.asarray(z), backend.asarray(t), acc, 3, *args[1:], **kwargs)
                results.append(backend.to_numpy(acc))
            np.testing.assert_allclose(results[1], results[0], rtol=1e-5, atol=1e-5, err_msg=f"{op}{args} {kwargs}")
            assert results[0][:3].sum() == 0  # from index on


# ----------------------------------------------------------------- in fit and evaluate
def _classifier(device, last=Softmax, classes=3, seed=3):
    return Model([Dense(16, activation="tanh"), Dense(classes), last()], input_size=5, device=device, seed=seed)


def _data(rng, n=150, classes=3):
    x = rng.normal(size=(n, 5)).astype(np.float32)
    labels = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5).astype(int)
    return x, np.minimum(labels, classes - 1)


CLASSIFIER = ["accuracy", "categorical_accuracy", "top_k_categorical_accuracy", "precision", "recall",
              "f1_score", "auc", "mae", "mse", "rmse", "r2_score", M.Precision(class_id=2, name="p2")]


def test_training_metrics_match_evaluate_with_the_same_weights(device, rng):
    """With a learning rate of 1e-30 the weights do not move, so an epoch's
    metrics (counted on the fused Softmax's input, through the metric's
    softmax) are evaluate's (counted on the probabilities) and Keras's."""
    x, labels = _data(rng)
    model = _classifier(device)
    history = model.fit(x, labels, loss=CategoricalCrossEntropy(), optimizer=SGD(1e-30), epochs=2, batch_size=32,
                        metrics=CLASSIFIER, validation_data=(x[:60], labels[:60]))
    keys = ["loss"] + [m if isinstance(m, str) else m.name for m in CLASSIFIER]
    assert list(history.history) == keys + ["val_" + k for k in keys]
    result = model.evaluate(x, labels)
    assert list(result) == keys
    p, t = model.predict(x).astype(np.float64), np.eye(3)[labels]
    for key in keys[1:]:
        assert history.history[key][0] == pytest.approx(history.history[key][1], abs=1e-6)
        assert history.history[key][-1] == pytest.approx(result[key], abs=2e-6), key
    for m in CLASSIFIER[1:]:
        name, metric = M.get(m)
        assert result[name] == pytest.approx(reference(metric, t, p), abs=2e-5), name
    validation = model.evaluate(x[:60], labels[:60])
    for key in keys:
        assert history.history["val_" + key][-1] == pytest.approx(validation[key], rel=1e-6, abs=1e-7)
    assert model.evaluate(x, labels, return_dict=False) == pytest.approx(list(result.values()))


def test_binary_metrics_after_a_fused_sigmoid(device, rng):
    x, labels = _data(rng, classes=2)
    model = _classifier(device, Sigmoid, classes=1)
    metrics = ["binary_accuracy", "precision", "recall", "auc", M.F1Score(threshold=0.5), "mae", "acc"]
    history = model.fit(x, labels, loss=BinaryCrossEntropy(), optimizer=SGD(1e-30), batch_size=40, metrics=metrics)
    result = model.evaluate(x, labels)
    for key, value in result.items():
        assert history.history[key][-1] == pytest.approx(value, abs=2e-6), key
    assert result["acc"] == result["binary_accuracy"]
    # logits: AUC(from_logits=True) applies the sigmoid; the model outputs logits
    logits = Model([Dense(16, activation="tanh"), Dense(1)], input_size=5, device=device, seed=3)
    got = logits.evaluate(x, labels, loss=BinaryCrossEntropy(from_logits=True),
                          metrics=[M.AUC(from_logits=True, name="auc_of_logits"), "auc"])
    z = logits.predict(x).astype(np.float64)
    assert got["auc_of_logits"] == pytest.approx(keras_auc(labels, 1 / (1 + np.exp(-z))), abs=1e-6)
    with pytest.raises(ValueError, match="names differ"):
        logits.evaluate(x, labels, loss="binary_crossentropy", metrics=[M.AUC(from_logits=True), "auc"])


def test_gpu_training_metrics_follow_numpy(gpu, rng):
    x, labels = _data(rng)
    histories = []
    for device in ("cpu", "gpu"):
        model = _classifier(device)
        histories.append(model.fit(x, labels, loss=CategoricalCrossEntropy(), optimizer=Adam(0.01), epochs=3,
                                   batch_size=16, metrics=CLASSIFIER, validation_split=0.2).history)
    for key, values in histories[0].items():
        np.testing.assert_allclose(histories[1][key], values, rtol=1e-3, atol=1e-3, err_msg=key)


def test_metrics_read_back_with_the_loss_only(gpu, rng):
    """No readback a step: one an epoch (a callback watches each), the
    block of accumulators, metrics included."""
    x, labels = _data(rng, n=320)
    model = _classifier("gpu")
    model.compile(optimizer=Adam(1e-3), loss=CategoricalCrossEntropy(), metrics=CLASSIFIER)
    model.fit(x[:32], labels[:32], epochs=1)  # compiled kernels, recorded steps
    before = model.device.stats()
    model.fit(x, labels, epochs=3, batch_size=32, callbacks=[lambda epoch, logs: None])
    after = model.device.stats()
    bound = fit_data.bind_metrics(model, model.output_losses(), CLASSIFIER)
    size = fit_data.metric_slots(1, bound).size
    assert size > 3 * 200  # the AUC's histograms among them
    assert after["readbacks"] - before["readbacks"] == 3
    assert after["bytes_read_back"] - before["bytes_read_back"] == 3 * 4 * size


def test_regression_metrics(device, rng):
    x = rng.normal(size=(90, 5)).astype(np.float32)
    y = np.stack([x[:, 0] * 2, x[:, 1] - x[:, 2]], 1).astype(np.float32)
    model = Model([Dense(8, activation="tanh"), Dense(2)], input_size=5, device=device, seed=1)
    history = model.fit(x, y, loss="mse", optimizer=SGD(1e-30), metrics=["mae", "rmse", "r2_score",
                                                                       M.MeanSquaredError()])
    assert list(history.history) == ["loss", "mae", "rmse", "r2_score", "mean_squared_error"]
    p = model.predict(x).astype(np.float64)
    result = model.evaluate(x, y)
    assert result["mean_squared_error"] == pytest.approx(result["loss"], rel=1e-5)
    assert result["r2_score"] == pytest.approx(keras_r2(y.astype(np.float64), p), abs=1e-5)
    assert result["rmse"] == pytest.approx(np.sqrt(np.mean((p - y) ** 2)), rel=1e-5)


# ----------------------------------------------------------------- defaults, names, outputs
def test_accuracy_only_where_it_means_something(rng):
    x = rng.normal(size=(40, 5)).astype(np.float32)
    regression = Model([Dense(1)], input_size=5, device="cpu", seed=0)
    history = regression.fit(x, x[:, :1], loss=MeanSquared(), optimizer=SGD(0.01), validation_split=0.25)
    assert list(history.history) == ["loss", "val_loss"]
    assert list(regression.evaluate(x, x[:, :1])) == ["loss"]
    assert regression.evaluate(x, x[:, :1], return_dict=False) == pytest.approx(
        regression.evaluate(x, x[:, :1])["loss"])
    # asked for, it is reported (binary for one output, as Keras's "accuracy" string)
    assert list(regression.evaluate(x, x[:, :1] > 0, metrics=["accuracy"])) == ["loss", "accuracy"]
    classifier = _classifier("cpu")
    assert list(classifier.fit(x, np.zeros(40, int), loss="categorical_crossentropy", optimizer="sgd").history) \
        == ["loss", "accuracy"]
    # metrics asked for replace the default; [] reports the loss only
    assert list(classifier.evaluate(x, np.zeros(40, int), metrics=["auc"])) == ["loss", "auc"]
    assert list(classifier.evaluate(x, np.zeros(40, int), metrics=[])) == ["loss"]


def test_unknown_names_list_the_known_ones():
    model = _classifier("cpu")
    for call in (lambda: model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["f1"]),
                 lambda: M.get("f1")):
        with pytest.raises(ValueError, match=r"one of \[.*'f1_score'.*\].*Received: 'f1'"):
            call()
    with pytest.raises(ValueError, match="average"):
        M.F1Score(average=None)
    with pytest.raises(ValueError, match="class_aggregation"):
        M.R2Score(class_aggregation=None)
    with pytest.raises(ValueError, match="class_id below the 3 classes"):
        model.evaluate(np.zeros((2, 5)), [0, 1], loss="categorical_crossentropy", metrics=[M.Precision(class_id=3)])
    assert M.get("mae")[0] == "mae" and isinstance(M.get("mae")[1], M.MeanAbsoluteError)
    assert M.get(M.MeanAbsoluteError())[0] == "mean_absolute_error"
    assert M.get("AUC")[0] == "AUC" and M.get(M.AUC)[0] == "auc"


def _two_outputs(device):
    x = Input((5,), name="x")
    h = Dense(12, activation="tanh")(x)
    klass = Dense(3, activation="softmax", name="klass")(h)
    score = Dense(1, name="score")(h)
    return Model(inputs=x, outputs=[klass, score], device=device, seed=2)


def test_per_output_metrics_in_a_graph_model(device, rng):
    x, labels = _data(rng, n=120)
    score = x[:, :1] * 3
    model = _two_outputs(device)
    metrics = {"klass": ["accuracy", "auc", M.F1Score(average="micro")], "score": "mae"}
    history = model.fit(x, {"klass": labels, "score": score}, loss={"klass": "categorical_crossentropy",
                                                                    "score": "mse"},
                        optimizer=SGD(1e-30), metrics=metrics, validation_data=(x[:50], [labels[:50], score[:50]]))
    keys = ["loss", "klass_loss", "score_loss", "klass_accuracy", "klass_auc", "klass_f1_score", "score_mae"]
    assert list(history.history) == keys + ["val_" + k for k in keys]
    result = model.evaluate(x, [labels, score])
    assert list(result) == keys
    p, s = model.predict(x)
    t = np.eye(3)[labels]
    assert result["klass_auc"] == pytest.approx(keras_auc(t, p.astype(np.float64)), abs=1e-6)
    assert result["klass_f1_score"] == pytest.approx(keras_fbeta(t, p, "micro"), abs=1e-6)
    assert result["score_mae"] == pytest.approx(np.mean(np.abs(s - score)), rel=1e-5)
    for key in keys:
        assert history.history[key][-1] == pytest.approx(result[key], rel=1e-5, abs=1e-6), key
    val = model.evaluate(x[:50], [labels[:50], score[:50]])
    for key in keys:
        assert history.history["val_" + key][-1] == pytest.approx(val[key], rel=1e-5, abs=1e-6), key
    # a list with an entry per output, as Keras 3 takes it
    listed = model.evaluate(x, [labels, score], metrics=[["auc"], None])
    assert list(listed) == ["loss", "klass_loss", "score_loss", "klass_auc"]
    with pytest.raises(ValueError, match="an entry per output"):
        model.evaluate(x, [labels, score], metrics=[["accuracy"], ["mae"], None])
    # a flat list: every output with a loss reports each
    assert list(model.evaluate(x, [labels, score], metrics=["mae", "accuracy"])) == [
        "loss", "klass_loss", "score_loss", "klass_mae", "klass_accuracy", "score_mae", "score_accuracy"]
    assert list(model.evaluate(x, [labels, None], loss=["categorical_crossentropy", None], metrics=["mae"])) == [
        "loss", "klass_loss", "klass_mae"]
    with pytest.raises(ValueError, match="by output name"):
        model.evaluate(x, [labels, score], metrics={"nope": ["mae"]})


def test_per_token_metrics_of_a_sequence_output(device):
    """A (seq, vocab) output: its rows are tokens, as the loss's (labels (n, seq) or one-hot rows)."""
    from test_sequence_losses import _data, _model

    x, labels, hot = _data(4)
    model = _model(device)
    loss = CategoricalCrossEntropy(from_logits=True)
    names = ["sparse_categorical_accuracy", M.SparseTopKCategoricalAccuracy(k=2), "accuracy", "auc"]
    history = model.fit(x, labels, loss=loss, optimizer=SGD(1e-12), batch_size=3, metrics=names,
                        validation_data=(x, hot)).history
    z = model.predict(x).astype(np.float64)
    vocab = z.shape[-1]
    rows, token_labels = z.reshape(-1, vocab), labels.reshape(-1)
    accuracy = np.mean(rows.argmax(-1) == token_labels)
    top2 = keras_top_k(token_labels, rows, 2)
    for prefix in ("", "val_"):
        assert history[prefix + "sparse_categorical_accuracy"][0] == pytest.approx(accuracy)
        assert history[prefix + "accuracy"][0] == pytest.approx(accuracy)
        assert history[prefix + "sparse_top_k_categorical_accuracy"][0] == pytest.approx(top2)
        # logits as they are (Keras's AUC sees what the model outputs)
        assert history[prefix + "auc"][0] == pytest.approx(keras_auc(np.eye(vocab)[token_labels], rows), abs=1e-6)


def test_monitors_know_which_way_metrics_improve():
    from intricate_py.callbacks import EarlyStopping

    for key in ("val_auc", "precision", "out_recall", "f1_score", "val_r2_score", "top_k_categorical_accuracy"):
        assert EarlyStopping(monitor=key)._monitor.mode == "max", key
    for key in ("val_loss", "mae", "val_rmse", "mean_squared_error", "klass_loss"):
        assert EarlyStopping(monitor=key)._monitor.mode == "min", key


def test_per_class_counts_of_many_classes_on_the_gpu(gpu, rng):
    """More classes than one dispatch's bins (256 a dispatch): counted in column ranges."""
    p = rng.random((90, 600)).astype(np.float32)
    labels = rng.integers(0, 600, 90)
    for metric in (M.F1Score(), M.F1Score(average="weighted", threshold=0.9), M.FBetaScore(beta=0.5)):
        want = reference(metric, np.eye(600)[labels], p.astype(np.float64))
        assert metric(labels, p) == pytest.approx(want, abs=1e-9)
        assert metric(labels, p, backend=gpu) == pytest.approx(want, abs=1e-6)


def test_batch_logs_and_the_progress_bar_carry_the_metrics(device, rng):
    from intricate_py.callbacks import Callback

    class Batches(Callback):
        def __init__(self):
            self.logs = []

        def on_train_batch_end(self, batch, logs=None):
            self.logs.append(dict(logs))

    x, labels = _data(rng, n=64)
    model = _classifier(device)
    batches = Batches()
    model.fit(x, labels, loss="categorical_crossentropy", optimizer="adam", batch_size=16, verbose=1,
              metrics=["auc", "precision"], callbacks=[batches])
    assert len(batches.logs) == 4 and set(batches.logs[-1]) == {"loss", "auc", "precision"}
    assert 0 <= batches.logs[0]["auc"] <= 1


def test_a_metric_called_on_arrays_keeps_nothing_per_call(rng):
    """Metric.__call__ counts with one shared float64 numpy backend: AUC's
    thresholds are placed on it once, not once a call."""
    auc = M.AUC()
    t, p = rng.random(50) > 0.5, rng.random(50)
    values = [auc(t, p) for _ in range(5)]
    assert values == [values[0]] * 5 and len(auc._on) == 1


def test_compile_without_metrics_drops_those_of_an_earlier_compile(rng):
    x = rng.normal(size=(40, 5)).astype(np.float32)
    labels = np.zeros(40, int)
    model = _classifier("cpu")
    model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["auc"])
    assert list(model.evaluate(x, labels)) == ["loss", "auc"]
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    assert list(model.evaluate(x, labels)) == ["loss", "accuracy"]
