"""A sweep over learning rate, hidden width and seed for the Fashion-MNIST
MLP (or --model cnn) on Ray Tune, with ASHA stopping bad trials early.

    python examples/sweep/main.py [--model mlp|cnn] [--samples 12] [--epochs 6]
        [--limit N] [--device auto|cpu|gpu] [--address auto|ray://HOST:10001]
        [--concurrent N] [--cpus-per-trial 1] [--gpus-per-trial 0.25] [--seed 0] [--out DIR] [--data DIR]
        [--population N]

Without --address it starts Ray on this machine (no set-up); with
--address auto it joins the cluster this machine is part of (`ray start`),
with --address ray://HOST:10001 a remote one. Each trial trains on the
first 90% of the training images (--limit N: of the first N) and validates
on the rest; ASHA compares trials on val_accuracy at each epoch and stops
the bad ones. At the end it prints the best trials, writes results.csv and
sweep.png (validation accuracy against learning rate, coloured by width) to
--out, and reloads the best checkpoint to measure its test accuracy.
The search is seeded (--seed), so a run draws the same trials as the last.

--population N packs N configurations into each trial: the trial trains an
intricate_py.Population of N networks of its width at once (seeds seed + i,
N learning rates drawn from the trial's seed), reports its best member to
Ray Tune, and the best member of the sweep is reloaded at the end; the run
prints the configurations it tried a minute, to compare with one per trial.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from intricate_py import FormatError, Model, Population
from intricate_py.datasets import MISSING_DATA_ADVICE, FASHION_MNIST, load_mnist
from intricate_py.layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU, Softmax
from intricate_py.optimizers import Adam

try:
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from intricate_py.tune import (ReportPopulationToTune, ReportToTune, load_best, load_best_member, member_rates,
                                   resume)
except ImportError:  # the extra is missing: main() says so
    ray = None


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlp", choices=["mlp", "cnn"])
    parser.add_argument("--samples", type=int, default=12, help="trials to run")
    parser.add_argument("--epochs", type=int, default=6, help="the most epochs a trial runs")
    parser.add_argument("--limit", type=int, default=None, help="use the first N training images")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"])
    parser.add_argument("--address", default=None, help="a Ray cluster to join: auto, or ray://HOST:10001")
    parser.add_argument("--concurrent", type=int, default=None, help="the most trials at once (default: as resources allow)")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0)
    parser.add_argument("--gpus-per-trial", type=float, default=0.25, help="with --device gpu")
    parser.add_argument("--seed", type=int, default=0, help="the search's seed: the same trials each run")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    parser.add_argument("--data", type=Path, default=FASHION_MNIST)
    parser.add_argument("--population", type=int, default=1,
                        help="configurations a trial trains at once, as a Population (1: a Model a trial)")
    args = parser.parse_args(argv)
    if args.population < 1:
        parser.error(f"expected --population of at least 1. Received: {args.population}")
    return args


def network(model: str, width: int) -> list:
    """The layers of the MLP, or of the CNN with ``width`` units in its Dense layer."""
    if model == "cnn":
        return [Conv2D(32, 5), ReLU(), MaxPool2D(2), Conv2D(64, 5), ReLU(), MaxPool2D(2),
                Flatten(), Dropout(0.25), Dense(width), ReLU(), Dropout(0.5), Dense(10), Softmax()]
    return [Dense(width), ReLU(), Dense(10), Softmax()]


def trainable(config: dict, data: dict) -> None:
    """One trial: a new model, or the one of the trial's last checkpoint when
    Ray Tune runs a failed trial again; trained for the epochs left."""
    (x, y), (xv, yv) = data["train"], data["val"]

    def build() -> Model:
        model = Model(network(config["model"], config["width"]), input_size=x.shape[1:],
                      device=config["device"], seed=config["seed"])
        model.compile(optimizer=Adam(config["lr"]), loss="categorical_crossentropy")
        return model

    model, done = resume(build, device=config["device"])
    model.fit(x, y, epochs=config["epochs"], initial_epoch=done, batch_size=config["batch_size"],
              validation_data=(xv, yv), callbacks=[ReportToTune()])


def packed_model(config: dict, input_shape) -> Model:
    """A packed trial's architecture (its members differ in seed and learning rate only)."""
    model = Model(network(config["model"], config["width"]), input_size=input_shape, device=config["device"])
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    return model


def packed_trainable(config: dict, data: dict) -> None:
    """One trial of --population N: N configurations as one Population."""
    (x, y), (xv, yv) = data["train"], data["val"]
    size = config["population"]
    population = Population(lambda: packed_model(config, x.shape[1:]), size, seed=config["seed"])
    population.fit(x, y, optimizer=Adam(member_rates(config["seed"], size)), epochs=config["epochs"],
                   batch_size=config["batch_size"], validation_data=(xv, yv),
                   callbacks=[ReportPopulationToTune("val_accuracy", "max")])


def prepare(images: np.ndarray, model: str) -> np.ndarray:
    """uint8 images -> float32 in [0, 1]: rows for the MLP, (n, 1, 28, 28) for the CNN."""
    x = images.astype(np.float32) / 255
    return x.reshape(len(x), 1, 28, 28) if model == "cnn" else x.reshape(len(x), -1)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if ray is None:
        print("this example needs Ray Tune: pip install 'intricate-py[tune]'", file=sys.stderr)
        return 2
    try:
        (train_images, train_labels), (test_images, test_labels) = load_mnist(args.data)
    except FileNotFoundError as error:
        print(f"{error}\n{MISSING_DATA_ADVICE}", file=sys.stderr)
        return 2
    except FormatError as error:
        print(f"unreadable data: {error}", file=sys.stderr)
        return 2
    if args.limit:
        train_images, train_labels = train_images[: args.limit], train_labels[: args.limit]
    x, x_test = prepare(train_images, args.model), prepare(test_images, args.model)
    split = len(x) * 9 // 10
    data = {"train": (x[:split], train_labels[:split]), "val": (x[split:], train_labels[split:])}

    if args.address:
        ray.init(address=args.address)
    else:  # Ray on this machine, started and stopped by the example
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    start = time.perf_counter()
    try:
        results = sweep(args, data)
    finally:
        if not args.address:
            ray.shutdown()
    minutes = (time.perf_counter() - start) / 60
    configurations = args.samples * args.population
    print(f"\n{configurations} configurations in {args.samples} trials, {60 * minutes:.1f} s: "
          f"{configurations / minutes:.1f} configurations a minute")
    report(args, results, x_test, test_labels, x.shape[1:])
    return 0


def sweep(args, data) -> "tune.ResultGrid":
    resources = {"cpu": args.cpus_per_trial, "gpu": args.gpus_per_trial if args.device == "gpu" else 0}
    space = {
        "width": tune.choice([32, 64, 128, 256]),
        "seed": tune.randint(0, 2**31 - 1),
        "model": args.model, "epochs": args.epochs, "batch_size": args.batch_size, "device": args.device,
    }
    if args.population > 1:  # the learning rates come from each trial's seed, one a member
        space["population"] = args.population
    else:
        space["lr"] = tune.loguniform(1e-4, 3e-2)
    run = packed_trainable if args.population > 1 else trainable
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(run, data=data), resources),
        param_space=space,
        tune_config=tune.TuneConfig(
            num_samples=args.samples, metric="val_accuracy", mode="max", max_concurrent_trials=args.concurrent,
            search_alg=BasicVariantGenerator(random_state=args.seed),
            scheduler=ASHAScheduler(time_attr="epoch", max_t=args.epochs, grace_period=1, reduction_factor=2),
        ),
        run_config=tune.RunConfig(
            name=f"fashion-mnist-{args.model}", storage_path=str((args.out / "ray").resolve()), verbose=1,
            failure_config=tune.FailureConfig(max_failures=2),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="val_accuracy",
                                                    checkpoint_score_order="max"),
        ),
    )
    return tuner.fit()


def report(args, results, x_test: np.ndarray, test_labels: np.ndarray, input_shape) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    frame = results.get_dataframe(filter_metric="val_accuracy", filter_mode="max")
    packed = args.population > 1
    if packed:  # each trial's best member: its learning rate and index
        frame["config/lr"] = frame["learning_rate"]
    columns = ["config/lr", "config/width", "config/seed", *(["member"] if packed else []), "epoch",
               "val_accuracy", "val_loss"]
    table = frame[columns].sort_values("val_accuracy", ascending=False)
    print("\nbest trials (their best epoch):")
    print(table.head(5).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    table.to_csv(args.out / "results.csv", index=False)
    plot(frame, args.out / "sweep.png")

    # the best epoch of the sweep (every epoch has a checkpoint): the first row of the table
    if packed:
        best = load_best_member(results, lambda config: packed_model(config, input_shape), "val_accuracy", "max")
    else:
        best = load_best(results, "val_accuracy", "max", device=args.device)
    accuracy = best.evaluate(x_test, test_labels, loss=best.loss)["accuracy"]
    print(f"\nthe best checkpoint reloaded: test accuracy {accuracy:.4f}")
    print(f"wrote {args.out / 'results.csv'} and {args.out / 'sweep.png'}")


def plot(frame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for width, group in frame.groupby("config/width"):
        ax.scatter(group["config/lr"], group["val_accuracy"], label=f"width {width}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("best validation accuracy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
