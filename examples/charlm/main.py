"""A character-level transformer language model trained on the fortunes of
Debian's fortunes package, then asked to write some more.

    python examples/charlm/main.py [--device auto|cpu|gpu] [--epochs N] [--limit N] [--seed 0] [--out DIR]
        [--context T] [--width D] [--heads H] [--layers L] [--batch-size N] [--learning-rate X]
        [--weight-decay X] [--warmup N] [--dropout X] [--data DIR] [--compare-torch]
        [--prompt TEXT] [--temperature X] [--top-k K] [--length N]
    python examples/charlm/main.py --load FILE [--prompt TEXT] ...   # sample from a saved model, no training

The text: every plain-text fortune file in /usr/share/games/fortunes (not
the .dat indexes nor the .u8 links), split into fortunes at the lines
holding '%', overstruck characters (``c\\b``) removed, the fortunes
shuffled once with a fixed generator and joined by lines holding '%'
again; the last 5% of that text is held out for validation, --limit
takes the first N characters of the rest. The vocabulary is the
characters seen at least 10 times in the training text, and one id (0)
for every other character; it is saved beside the model, in
``charlm.vocab.json``.

The model (functional API): ids (n, T) -> Embedding + PositionEmbedding
-> L pre-LayerNorm blocks (h + causal MultiHeadAttention(LN(h)), then h +
Dense(D) · GELU · Dense(4D) (LN(h))) -> LayerNorm -> Dense(vocabulary)
logits. Categorical cross-entropy on the logits, with the next character
of each position as its target; AdamW whose learning rate warms up
linearly then falls on a cosine to 0 (CosineDecay with warmup_target),
global gradient clipping at norm 1. An epoch is one pass over the
training text in windows of T characters (starting at an offset drawn
each epoch, the windows shuffled): a fit per epoch on those windows, each
continuing the last with ``initial_epoch``. Each epoch prints the
validation loss in bits per character.

With --compare-torch the same network, written in PyTorch by hand, starts
from the same initial weights and trains with the same recipe on the same
batches in the same order; both validation losses and the time a training
step takes are printed side by side (and written to comparison.json).

In --out it leaves the model (``charlm.safetensors``), its vocabulary,
the loss curves (``curves.png``) and a sample of generated text
(``sample.txt``).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from intricate_py import Input, Model
from intricate_py.layers import (Add, Dense, Dropout, Embedding, LayerNormalization, MultiHeadAttention,
                                 PositionEmbedding)
from intricate_py.losses import CategoricalCrossEntropy
from intricate_py.optimizers import AdamW
from intricate_py.schedules import CosineDecay

FORTUNES = Path("/usr/share/games/fortunes")
MISSING_FORTUNES_ADVICE = ("the fortunes come from Debian's fortunes package: install it with "
                           "`sudo apt-get install fortunes` (or `make system`), or give --data DIR, "
                           "a folder of fortune files (fortunes separated by lines holding '%')")
#: the fortunes' order is drawn once, with this seed, whatever --seed says: the same validation text always
SPLIT_SEED = 2026
VALIDATION_FRACTION = 0.05
#: a character seen fewer times than this in the training text becomes the unknown id
MIN_COUNT = 10
UNKNOWN = 0
LN2 = math.log(2)
#: the training characters by default: 4 epochs of them take a few minutes on a 2-core CPU
DEFAULT_LIMIT = 0


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT,
                        help=f"train on the first N characters only ({DEFAULT_LIMIT:,}; 0: all of them)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    parser.add_argument("--data", type=Path, default=FORTUNES, help="folder of fortune files")
    parser.add_argument("--context", type=int, default=64, help="characters a window (T)")
    parser.add_argument("--width", type=int, default=64, help="features a position (d_model)")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=2, help="transformer blocks")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=6e-3, help="the peak, after the warmup")
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--warmup", type=int, default=100, help="steps of linear warmup")
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--compare-torch", action="store_true",
                        help="train the same network with the same recipe and batches in PyTorch too")
    parser.add_argument("--load", type=Path, default=None, help="sample from this saved model, without training")
    parser.add_argument("--prompt", default="The ")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-k", type=int, default=None, help="sample among the K likeliest characters only")
    parser.add_argument("--length", type=int, default=500, help="characters to generate")
    args = parser.parse_args(argv)
    if args.width % args.heads:
        parser.error(f"--width ({args.width}) must be a multiple of --heads ({args.heads})")
    if args.temperature <= 0:
        parser.error("--temperature must be positive")
    return args


# ------------------------------------------------------------------- data
def read_fortunes(folder: Path) -> list[str]:
    """Every fortune of the plain-text fortune files in ``folder`` (their
    .dat indexes and .u8 links skipped), stripped, overstriking removed,
    in file order. FileNotFoundError when there are none."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.is_symlink()
                   and p.suffix not in (".dat", ".u8")) if folder.is_dir() else []
    fortunes = []
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n")
        text = re.sub(".\x08", "", text)  # "_\b_" and "c\bc": underlined and bold the typewriter way
        fortunes += [f.strip("\n") for f in re.split(r"^%\s*$", text, flags=re.M) if f.strip()]
    if not fortunes:
        raise FileNotFoundError(f"no fortunes in {folder}")
    return fortunes


def corpus(folder: Path) -> tuple[str, str]:
    """(training text, validation text): the fortunes shuffled with
    SPLIT_SEED, joined by lines holding '%', the last
    VALIDATION_FRACTION held out (cut at a fortune's start)."""
    fortunes = read_fortunes(folder)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(fortunes))
    text = "".join(fortunes[i] + "\n%\n" for i in order)
    cut = text.find("\n%\n", int(len(text) * (1 - VALIDATION_FRACTION))) + 3
    return text[:cut], text[cut:]


class Vocabulary:
    """Characters to ids and back: id 0 for any character not in
    ``characters``, 1, 2, ... for those."""

    def __init__(self, characters: str):
        self.characters = characters
        self.ids = {c: i + 1 for i, c in enumerate(characters)}

    @classmethod
    def of(cls, text: str) -> "Vocabulary":
        counts = Counter(text)
        return cls("".join(sorted(c for c, k in counts.items() if k >= MIN_COUNT)))

    def __len__(self) -> int:
        return len(self.characters) + 1

    def encode(self, text: str) -> np.ndarray:
        return np.array([self.ids.get(c, UNKNOWN) for c in text], np.int32)

    def decode(self, ids) -> str:
        return "".join(self.characters[i - 1] if i != UNKNOWN else "\N{REPLACEMENT CHARACTER}" for i in ids)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"characters": self.characters, "unknown": UNKNOWN}, ensure_ascii=False))

    @classmethod
    def load(cls, path: Path) -> "Vocabulary":
        return cls(json.loads(path.read_text())["characters"])


def vocabulary_path(model_path: Path) -> Path:
    return model_path.with_suffix(".vocab.json")


def windows(ids: np.ndarray, context: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (n, context) and targets (n, context), the next character of
    each: the non-overlapping windows of ``ids`` from ``offset``."""
    n = (len(ids) - offset - 1) // context
    x = ids[offset : offset + n * context].reshape(n, context)
    y = ids[offset + 1 : offset + 1 + n * context].reshape(n, context)
    return x, y


def epoch_windows(ids: np.ndarray, context: int, seed: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """The windows an epoch trains on, from an offset drawn from (seed,
    epoch), in an order drawn from them too: the same batches for every
    network trained with that seed."""
    rng = np.random.default_rng([seed, epoch])
    x, y = windows(ids, context, int(rng.integers(context)))
    order = rng.permutation(len(x))
    return x[order], y[order]


# ------------------------------------------------------------------ model
def build_model(vocab_size: int, args, dtype: str = "float32") -> Model:
    """ids (n, T) -> logits (n, T, vocab_size), pre-LayerNorm blocks."""
    width, context = args.width, args.context
    ids = Input((context,), name="ids")
    h = Embedding(vocab_size, width, name="embedding")(ids)
    h = Add(name="positioned")([h, PositionEmbedding(context, name="positions")(h)])
    for i in range(args.layers):
        n = LayerNormalization(name=f"block{i}_norm1")(h)
        attention = MultiHeadAttention(args.heads, width // args.heads, dropout=args.dropout,
                                       name=f"block{i}_attention")
        h = Add(name=f"block{i}_add1")([h, attention(n, n, use_causal_mask=True)])
        n = LayerNormalization(name=f"block{i}_norm2")(h)
        m = Dense(width, name=f"block{i}_mlp_out")(Dense(4 * width, activation="gelu", name=f"block{i}_mlp_in")(n))
        if args.dropout:
            m = Dropout(args.dropout, name=f"block{i}_dropout")(m)
        h = Add(name=f"block{i}_add2")([h, m])
    logits = Dense(vocab_size, name="logits")(LayerNormalization(name="final_norm")(h))
    return Model(ids, logits, device=args.device, dtype=dtype, seed=args.seed, name="charlm")


def recipe(args, steps: int):
    """AdamW's learning rate: a linear warmup from 0 to --learning-rate over
    --warmup steps, then a cosine to 0 over the other steps."""
    warmup = min(args.warmup, steps // 2)
    return CosineDecay(0.0, max(1, steps - warmup), warmup_target=args.learning_rate, warmup_steps=warmup)


# ------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.load is not None:
        return sample_saved(args)
    try:
        train_text, val_text = corpus(args.data)
    except FileNotFoundError as error:
        print(f"{error}\n{MISSING_FORTUNES_ADVICE}", file=sys.stderr)
        return 2
    if args.limit:
        train_text = train_text[: args.limit]
    if min(len(train_text), len(val_text)) < 2 * args.context + 1:
        print(f"expected at least {2 * args.context + 1} characters of training and validation text (two "
              f"windows of --context {args.context}). Received: {len(train_text)} and {len(val_text)}",
              file=sys.stderr)
        return 2
    vocab = Vocabulary.of(train_text)
    train_ids, val_ids = vocab.encode(train_text), vocab.encode(val_text)
    x_val, y_val = windows(val_ids, args.context)
    print(f"{len(train_ids):,} training and {len(val_ids):,} validation characters, a vocabulary of {len(vocab)} "
          f"ids (the characters seen at least {MIN_COUNT} times, and one for the rest)")

    model = build_model(len(vocab), args)
    print(model)
    twin = TorchTwin(model) if args.compare_torch else None  # before training: the same initial weights
    if twin is not None:
        difference = np.abs(twin.logits(x_val[:8]) - model.predict(x_val[:8])).max()
        print(f"the PyTorch twin's logits differ from the model's by {difference:.1e} at most (the same weights)")
    steps = sum(-(-len(epoch_windows(train_ids, args.context, args.seed, e)[0]) // args.batch_size)
                for e in range(args.epochs))
    model.compile(optimizer=AdamW(recipe(args, steps), weight_decay=args.weight_decay, global_clipnorm=1.0),
                  loss=CategoricalCrossEntropy(from_logits=True))
    history = train(model, args, train_ids, (x_val, y_val))

    args.out.mkdir(parents=True, exist_ok=True)
    model_path = args.out / "charlm.safetensors"
    model.save(model_path)
    vocab.save(vocabulary_path(model_path))
    written = [model_path, vocabulary_path(model_path), write_curves(args.out, history)]
    if twin is not None:
        theirs = twin.train(args, train_ids, (x_val, y_val), steps)
        written.append(write_comparison(args.out, history, theirs, model.device.kind))
    text = generate(model, vocab, args.prompt, args.length, args.temperature, args.top_k, args.seed)
    print(f"\nsampled at temperature {args.temperature}:\n\n{text}\n")
    (args.out / "sample.txt").write_text(text + "\n")
    written.append(args.out / "sample.txt")
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def train(model: Model, args, train_ids: np.ndarray, validation) -> dict[str, list[float]]:
    """A fit an epoch on that epoch's windows, then the validation loss;
    the history, with the seconds a training step took each epoch."""
    history: dict[str, list[float]] = {"loss": [], "val_loss": [], "step_seconds": []}
    for epoch in range(args.epochs):
        x, y = epoch_windows(train_ids, args.context, args.seed, epoch)
        start = time.perf_counter()
        fitted = model.fit(x, y, epochs=epoch + 1, initial_epoch=epoch, batch_size=args.batch_size, shuffle=False,
                           verbose=1)
        history["step_seconds"].append((time.perf_counter() - start) / -(-len(x) // args.batch_size))
        if fitted.stop_reason:
            print(fitted.stop_reason)
            break
        history["loss"].append(fitted.history["loss"][-1])
        history["val_loss"].append(model.evaluate(*validation)["loss"])
        print(f"epoch {epoch + 1}/{args.epochs}: training loss {history['loss'][-1] / LN2:.3f}, validation loss "
              f"{history['val_loss'][-1] / LN2:.3f} bits per character, {1000 * history['step_seconds'][-1]:.0f} ms "
              "a step")
    return history


# --------------------------------------------------------------- sampling
def generate(model: Model, vocab: Vocabulary, prompt: str, length: int, temperature: float,
             top_k: int | None, seed: int) -> str:
    """``prompt`` and ``length`` characters drawn one at a time from the
    model's distribution of the next one (divided by ``temperature``, among
    the ``top_k`` likeliest), the unknown id never drawn. The window holds
    the last T characters, from its first position: the attention is
    causal, so the positions after the last character do not matter."""
    context = model.input_shape[0]
    rng = np.random.default_rng(seed)
    ids = list(vocab.encode(prompt)) or [vocab.ids.get("\n", UNKNOWN)]
    window = np.zeros((1, context), np.int32)
    for _ in range(length):
        recent = ids[-context:]
        window[0, : len(recent)] = recent
        logits = model.predict(window)[0, len(recent) - 1].astype(np.float64) / temperature
        logits[UNKNOWN] = -np.inf
        if top_k is not None and top_k < len(logits):
            logits[logits < np.sort(logits)[-top_k]] = -np.inf
        p = np.exp(logits - logits.max())
        ids.append(int(rng.choice(len(p), p=p / p.sum())))
    return prompt + vocab.decode(ids[len(vocab.encode(prompt)):])


def sample_saved(args) -> int:
    """--load: the text a saved model writes from --prompt."""
    vocab_file = vocabulary_path(args.load)
    if not args.load.is_file() or not vocab_file.is_file():
        print(f"expected a model file and its vocabulary beside it. Received: {args.load} "
              f"({'found' if args.load.is_file() else 'missing'}), {vocab_file} "
              f"({'found' if vocab_file.is_file() else 'missing'})", file=sys.stderr)
        return 2
    model, vocab = Model.load(args.load, device=args.device), Vocabulary.load(vocab_file)
    print(generate(model, vocab, args.prompt, args.length, args.temperature, args.top_k, args.seed))
    return 0


# ---------------------------------------------------------------- PyTorch
class TorchTwin:
    """The same network in PyTorch, written out by hand, holding the
    model's current weights (its dtype's): its layers by their names, each
    as Keras's get_weights lays it out (Dense kernels (in, out), the
    attention's query kernel (features, heads, key_dim) ...)."""

    def __init__(self, model: Model):
        import torch

        self.torch = torch
        self.dtype = torch.float64 if model.dtype == "float64" else torch.float32
        self.epsilon = {}
        self.heads = {}
        self.weights = {}
        for layer in model.layers:
            values = layer.get_weights()
            if not values:
                continue
            self.weights[layer.name] = [torch.tensor(v, dtype=self.dtype, requires_grad=True) for v in values]
            if isinstance(layer, LayerNormalization):
                self.epsilon[layer.name] = layer.epsilon
        self.blocks = sum(name.endswith("_attention") for name in self.weights)
        self.dropout = next((layer.dropout for layer in model.layers if isinstance(layer, MultiHeadAttention)), 0.0)
        self.training = False

    def parameters(self) -> list:
        return [w for values in self.weights.values() for w in values]

    def _norm(self, x, name: str):
        gamma, beta = self.weights[name]
        return self.torch.nn.functional.layer_norm(x, x.shape[-1:], gamma, beta, self.epsilon[name])

    def _dense(self, x, name: str):
        kernel, bias = self.weights[name]
        return x @ kernel + bias

    def _attention(self, x, name: str):
        torch = self.torch
        wq, bq, wk, bk, wv, bv, wo, bo = self.weights[name]
        q = torch.einsum("ntf,fhk->nhtk", x, wq) + bq[:, None]
        k = torch.einsum("ntf,fhk->nhtk", x, wk) + bk[:, None]
        v = torch.einsum("ntf,fhk->nhtk", x, wv) + bv[:, None]
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        t = x.shape[1]
        causal = torch.ones(t, t, dtype=torch.bool).tril()
        weights = torch.softmax(scores.masked_fill(~causal, -math.inf), dim=-1)
        weights = torch.nn.functional.dropout(weights, self.dropout, self.training)
        return torch.einsum("nhtk,hkf->ntf", weights @ v, wo) + bo

    def forward(self, ids):
        torch = self.torch
        (table,), (positions,) = self.weights["embedding"], self.weights["positions"]
        h = table[ids] + positions[: ids.shape[1]]
        for i in range(self.blocks):
            h = h + self._attention(self._norm(h, f"block{i}_norm1"), f"block{i}_attention")
            m = torch.nn.functional.gelu(self._dense(self._norm(h, f"block{i}_norm2"), f"block{i}_mlp_in"))
            m = torch.nn.functional.dropout(self._dense(m, f"block{i}_mlp_out"), self.dropout, self.training)
            h = h + m
        return self._dense(self._norm(h, "final_norm"), "logits")

    def logits(self, x: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            return self.forward(self.torch.from_numpy(x.astype(np.int64))).numpy()

    def loss(self, x: np.ndarray, y: np.ndarray, batch: int = 256) -> float:
        """The mean loss a character (in nats) over windows x, targets y."""
        torch, total = self.torch, 0.0
        with torch.no_grad():
            for i in range(0, len(x), batch):
                logits = self.forward(torch.from_numpy(x[i : i + batch].astype(np.int64)))
                targets = torch.from_numpy(y[i : i + batch].astype(np.int64))
                total += float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(),
                                                                 reduction="sum"))
        return total / y.size

    def optimizer(self, weight_decay: float):
        """torch.optim.AdamW, the rule ours follows, over the twin's weights."""
        return self.torch.optim.AdamW(self.parameters(), lr=0.0, betas=(0.9, 0.999), eps=1e-8,
                                      weight_decay=weight_decay)

    def step(self, optimizer, x, y, rate: float) -> float:
        """One training step on windows x (n, T) and targets y (n, T),
        torch int64 tensors, at learning rate ``rate``, the gradients
        clipped as Keras's global_clipnorm=1 (scaled by 1 / max(‖g‖, 1)):
        the batch's mean loss a character."""
        torch = self.torch
        for group in optimizer.param_groups:
            group["lr"] = rate
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(self.forward(x).flatten(0, 1), y.flatten())
        loss.backward()
        params = self.parameters()
        norm = torch.sqrt(sum((p.grad**2).sum() for p in params))
        for p in params:
            p.grad.mul_(1.0 / torch.clamp(norm, min=1.0))
        optimizer.step()
        return float(loss.detach())

    def train(self, args, train_ids: np.ndarray, validation, steps: int) -> dict[str, list[float]]:
        """The recipe of main(): the same windows and batches, AdamW
        (torch.optim.AdamW, the rule ours follows) at our schedule's rate
        each step, the gradients clipped as Keras's global_clipnorm."""
        torch = self.torch
        torch.manual_seed(args.seed)
        optimizer, schedule, step = self.optimizer(args.weight_decay), recipe(args, steps), 0
        history: dict[str, list[float]] = {"loss": [], "val_loss": [], "step_seconds": []}
        for epoch in range(args.epochs):
            x, y = epoch_windows(train_ids, args.context, args.seed, epoch)
            x, y = torch.from_numpy(x.astype(np.int64)), torch.from_numpy(y.astype(np.int64))
            self.training, total, start = True, 0.0, time.perf_counter()
            for i in range(0, len(x), args.batch_size):
                total += self.step(optimizer, x[i : i + args.batch_size], y[i : i + args.batch_size],
                                   schedule(step)) * len(x[i : i + args.batch_size])
                step += 1
            history["step_seconds"].append((time.perf_counter() - start) / -(-len(x) // args.batch_size))
            self.training = False
            history["loss"].append(total / len(x))
            history["val_loss"].append(self.loss(*validation))
            print(f"PyTorch (CPU) epoch {epoch + 1}/{args.epochs}: training loss {history['loss'][-1] / LN2:.3f}, "
                  f"validation loss {history['val_loss'][-1] / LN2:.3f} bits per character, "
                  f"{1000 * history['step_seconds'][-1]:.0f} ms a step")
        return history


def write_comparison(out: Path, ours: dict, theirs: dict, device: str) -> Path:
    """Both validation losses (bits per character) and times a step (ours
    on ``device``, PyTorch's on the CPU), printed and as comparison.json."""
    print(f"\nvalidation loss (bits per character) and ms a training step, intricate-py on the {device}, "
          "PyTorch on the CPU:")
    print(f"{'epoch':>5} {'intricate-py':>13} {'PyTorch':>8} {'ms/step':>8} {'PyTorch':>8}")
    for e, (a, b, s, t) in enumerate(zip(ours["val_loss"], theirs["val_loss"], ours["step_seconds"],
                                         theirs["step_seconds"])):
        print(f"{e + 1:>5} {a / LN2:13.4f} {b / LN2:8.4f} {1000 * s:8.1f} {1000 * t:8.1f}")
    ratio = float(np.median(ours["step_seconds"]) / np.median(theirs["step_seconds"]))
    print(f"median time a step: intricate-py ({device}) / PyTorch (CPU) = {ratio:.2f}")
    path = out / "comparison.json"
    bits = {name: {"val_bits_per_character": [v / LN2 for v in h["val_loss"]], "step_seconds": h["step_seconds"]}
            for name, h in (("intricate-py", ours), ("pytorch", theirs))}
    path.write_text(json.dumps({"device": device, **bits, "time_ratio": ratio}, indent=1))
    return path


def write_curves(out: Path, history: dict[str, list[float]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = list(range(1, len(history["loss"]) + 1))
    fig, axes = plt.subplots(figsize=(6, 4))
    axes.plot(epochs, np.array(history["loss"]) / LN2, "o-", label="training (mean over the epoch)")
    axes.plot(epochs, np.array(history["val_loss"]) / LN2, "o-", label="validation (after the epoch)")
    axes.set(xlabel="epoch", ylabel="bits per character", title="character-level transformer on fortunes",
             xticks=epochs)
    axes.grid(alpha=0.3)
    axes.legend()
    fig.tight_layout()
    path = out / "curves.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


if __name__ == "__main__":
    raise SystemExit(main())
