"""Measure training many seeds batched against training them one after another.

Trains seeds 0 to N-1 (N is 32 unless --seeds sets it), 690 epochs each,
with fit_sine's default configuration, in one process:

  sequential  fit_sine.train once per seed, at 1 thread as fit_sine.main() sets.
  batched     fit_sine.train_batched on a StackedMLP of all N models, at
              torch's default thread count, as fit_sine.py --seeds runs it:
              its tensors are N times larger than a single run's.
  batched 1   the same batched run at 1 thread, for reference.

Seed s uses make_model(s) and make_data(seed=s), as ``fit_sine.py --seeds``
does. The three runs take turns, after a warm-up round, and each figure is
the median over the repeats.

Usage::

    python benchmarks/bench_seeds.py             # print the table
    python benchmarks/bench_seeds.py --markdown  # and rewrite its BENCHMARKS.md part
    python benchmarks/bench_seeds.py --quick     # 4 seeds, 20 epochs: does it run?
"""

import argparse
import os
import statistics
import sys
import time

import matplotlib
import torch

# Running this file puts its folder first on sys.path, and bench_common puts
# the repository root there for fit_sine.
import bench_common  # noqa: E402
import fit_sine  # noqa: E402
from bench_common import Row, check_at_most, print_progress  # noqa: E402

SECTION = "bench_seeds"
LR = 0.01
EPOCHS = 690
QUICK_EPOCHS = 20
DEFAULT_SEEDS = 32
QUICK_SEEDS = 4
DEFAULT_REPEATS = 3
MIN_MARKDOWN_REPEATS = 3
CPU = torch.device("cpu")

MAX_BATCHED_OVER_SEQUENTIAL = 0.25
# Relative loss difference from which a batched run counts as having left the
# single run of the same seed. One float32 rounding step is about 6e-8 of a value.
DIVERGENCE_TOLERANCE = 1e-4


def make_seed_data(seeds):
    """Return x shared by every seed, the per-seed y list and y stacked."""
    data = [fit_sine.make_data(seed=seed) for seed in seeds]
    x = data[0][0]  # make_data's x is the same linspace for every seed
    ys = [y for _, y in data]
    return x, ys, torch.stack(ys)


def train_sequentially(seeds, x, ys, epochs):
    """Time fit_sine.train for each seed in turn at 1 thread.

    Returns (seconds, loss history per seed). The clock covers building each
    optimizer and training, not building the models.
    """
    torch.set_num_threads(1)  # as fit_sine.main() does on CPU
    models = [fit_sine.make_model(seed) for seed in seeds]
    start = time.perf_counter()
    histories = []
    for model, y in zip(models, ys):
        optimizer = fit_sine.make_optimizer("adam", model.parameters(), LR, CPU)
        result = fit_sine.train(model, x, y, optimizer, epochs)
        histories.append(result.losses)
    seconds = time.perf_counter() - start
    return seconds, histories


def train_batched(seeds, x, stacked_ys, epochs, threads):
    """Time fit_sine.train_batched over every seed at the given thread count.

    Returns (seconds, loss history per seed). The clock covers building the
    StackedMLP from the models, building the optimizer and training, but not
    building the models.
    """
    torch.set_num_threads(threads)
    models = [fit_sine.make_model(seed) for seed in seeds]
    start = time.perf_counter()
    # The same steps as fit_sine.run_seeds, without its plots and files.
    stacked = fit_sine.StackedMLP(models)
    optimizer = fit_sine.make_optimizer("adam", stacked.parameters(), LR, CPU)
    result = fit_sine.train_batched(stacked, x, stacked_ys, optimizer, epochs)
    seconds = time.perf_counter() - start
    # result.losses has one list per epoch with one loss per seed.
    histories = [list(history) for history in zip(*result.losses)]
    return seconds, histories


def measure(seed_count, epochs, repeats, warmup, default_threads):
    """Run the three variants interleaved; return their samples by name.

    Each sample is (seconds, loss history per seed).
    """
    seeds = list(range(seed_count))
    x, ys, stacked_ys = make_seed_data(seeds)
    tasks = {
        "sequential": lambda: train_sequentially(seeds, x, ys, epochs),
        # fit_sine.py --seeds keeps torch's default thread count.
        "batched": lambda: train_batched(seeds, x, stacked_ys, epochs,
                                         default_threads),
        "batched_extra": lambda: train_batched(seeds, x, stacked_ys, epochs, 1),
    }
    print_progress(f"training {seed_count} seeds: {warmup} warm-up round(s), "
                   f"{repeats} timed round(s) of {epochs} epochs")
    return bench_common.run_interleaved(tasks, repeats, warmup)


def timing_rows(samples, seed_count, default_threads):
    """Return the rows with each variant's time and the ratios to sequential."""
    seconds = {name: [sample[0] for sample in runs] for name, runs in samples.items()}
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    batched_ratio = medians["batched"] / medians["sequential"]
    extra_ratio = medians["batched_extra"] / medians["sequential"]
    extra_over_batched = medians["batched_extra"] / medians["batched"]
    return [
        bench_common.seconds_row(f"sequential: {seed_count} x train, 1 thread",
                                 seconds["sequential"]),
        bench_common.seconds_row("batched: train_batched, default threads",
                                 seconds["batched"]),
        bench_common.seconds_row("batched: train_batched, 1 thread",
                                 seconds["batched_extra"]),
        Row("batched / sequential", f"{batched_ratio:.2f}", "",
            f"<= {MAX_BATCHED_OVER_SEQUENTIAL:.2f}",
            check_at_most(batched_ratio, MAX_BATCHED_OVER_SEQUENTIAL)),
        Row("batched 1 thread / sequential", f"{extra_ratio:.2f}"),
        Row("batched 1 thread / batched default threads",
            f"{extra_over_batched:.2f}"),
    ]


def first_divergent_epoch(history, reference):
    """Return the first 1-based epoch at which history leaves reference, or None.

    An epoch leaves reference when its loss differs from the reference loss by
    more than DIVERGENCE_TOLERANCE times the reference loss.
    """
    for epoch, (loss, expected) in enumerate(zip(history, reference), start=1):
        if abs(loss - expected) > DIVERGENCE_TOLERANCE * abs(expected):
            return epoch
    return None


def divergence_row(label, histories, references):
    """Return a row with the epochs at which batched runs leave the single runs."""
    epochs = [first_divergent_epoch(history, reference)
              for history, reference in zip(histories, references)]
    diverged = [epoch for epoch in epochs if epoch is not None]
    if not diverged:
        return Row(label, "none", f"0 of {len(epochs)} seeds")
    median = f"epoch {statistics.median(diverged):.0f}"
    spread = (f"{min(diverged)} to {max(diverged)}, "
              f"{len(diverged)} of {len(epochs)} seeds")
    return Row(label, median, spread)


def quality_rows(samples):
    """Return rows comparing the batched runs' losses with the sequential runs'.

    The rows cover the median final loss, the largest difference in final loss
    for one seed, and when each seed's batched loss history first leaves the
    sequential one. Every row uses the last round.
    """
    histories = {name: runs[-1][1] for name, runs in samples.items()}
    last = {name: [history[-1] for history in runs]
            for name, runs in histories.items()}
    labels = {"sequential": "sequential",
              "batched": "batched, default threads",
              "batched_extra": "batched, 1 thread"}
    rows = []
    for name, label in labels.items():
        rows.append(Row(f"median final MSE, {label}",
                        f"{statistics.median(last[name]):.5f}",
                        f"{min(last[name]):.5f} to {max(last[name]):.5f}"))
    for name in ("batched", "batched_extra"):
        deviation = max(abs(batched - single)
                        for batched, single in zip(last[name], last["sequential"]))
        rows.append(Row(f"max |final MSE - sequential|, {labels[name]}",
                        f"{deviation:.1e}"))
    for name in ("batched", "batched_extra"):
        rows.append(divergence_row(
            f"first epoch off sequential by > {DIVERGENCE_TOLERANCE:g}, "
            f"{labels[name]}", histories[name], histories["sequential"]))
    return rows


def notes(seed_count, epochs, default_threads):
    return [
        f"Each run trains seeds 0 to {seed_count - 1} for {epochs} full-batch "
        "epochs with Adam (fit_sine's fused kernel), lr 0.01.",
        "sequential uses 1 thread, set with torch.set_num_threads(1) as "
        "fit_sine.main() does for a single run on CPU.",
        f"The batched run keeps torch's default of {default_threads} thread(s), "
        "as fit_sine.main() does for --seeds; the extra batched run uses 1.",
        "Times cover stacking the models into a StackedMLP, building optimizers "
        "and training, not building the models.",
        "The min to max of the final MSE is over seeds, from the last round.",
        "A batched run and the single run of the same seed differ only by "
        "rounding at first. The 'first epoch off sequential' rows show when that "
        "difference grows past the given fraction of the loss.",
    ]


def versions():
    return {
        "Python": sys.version.split()[0],
        "torch": torch.__version__,
        "matplotlib": matplotlib.__version__,
    }


def seed_count(text):
    value = bench_common.positive_int(text)
    if value > fit_sine.MAX_SEEDS:
        raise argparse.ArgumentTypeError(
            f"must be at most {fit_sine.MAX_SEEDS}, got {value}")
    return value


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Benchmark batched training of many seeds against "
                    "training them one by one.",
    )
    parser.add_argument("--seeds", type=seed_count, default=None,
                        help=f"number of seeds, 0 onwards (default {DEFAULT_SEEDS}; "
                             f"{QUICK_SEEDS} with --quick)")
    parser.add_argument("--repeats", type=bench_common.positive_int, default=None,
                        help=f"timed rounds; each figure is their median "
                             f"(default {DEFAULT_REPEATS})")
    parser.add_argument("--markdown", action="store_true",
                        help=f"rewrite the {SECTION} section of BENCHMARKS.md")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_EPOCHS} epochs, {QUICK_SEEDS} seeds, 1 round: "
                             "checks that the benchmark runs, not how fast")
    args = parser.parse_args(argv)
    if args.quick and args.markdown:
        parser.error("--markdown cannot be combined with --quick, whose numbers "
                     "are not worth recording")
    if args.quick and args.repeats is not None:
        parser.error("--repeats cannot be combined with --quick, which runs 1 round")
    if args.repeats is None:
        args.repeats = 1 if args.quick else DEFAULT_REPEATS
    if args.seeds is None:
        args.seeds = QUICK_SEEDS if args.quick else DEFAULT_SEEDS
    if args.markdown and args.repeats < MIN_MARKDOWN_REPEATS:
        parser.error(f"--markdown needs --repeats of at least {MIN_MARKDOWN_REPEATS}, "
                     f"got {args.repeats}")
    return args


def main(argv=None):
    args = parse_args(argv)
    load_average = os.getloadavg()
    # Taken before anything sets a thread count, so it is torch's own default.
    default_threads = torch.get_num_threads()
    epochs = QUICK_EPOCHS if args.quick else EPOCHS

    samples = measure(args.seeds, epochs, args.repeats, warmup=1,
                      default_threads=default_threads)
    torch.set_num_threads(default_threads)
    rows = timing_rows(samples, args.seeds, default_threads)
    quality = quality_rows(samples)
    note_lines = notes(args.seeds, epochs, default_threads)

    print(f"bench_seeds: {args.seeds} seeds, median of {args.repeats} round(s)")
    print(bench_common.format_text_table(rows))
    print()
    print("quality (final training MSE):")
    print(bench_common.format_text_table(quality))
    print()
    for line in note_lines:
        print(line)

    if args.markdown:
        body = "\n".join([
            f"## {args.seeds} seeds: batched against sequential training",
            "",
            *bench_common.environment_lines(versions(), load_average),
            f"- Repeats: median of {args.repeats} rounds after 1 warm-up round",
            "",
            bench_common.format_markdown_table(rows),
            "",
            "Final training MSE of the last round, over seeds:",
            "",
            bench_common.format_markdown_table(quality),
            "",
            *(f"- {line}" for line in note_lines),
        ])
        bench_common.write_markdown_section(SECTION, body)
        print(f"wrote the {SECTION} section of {bench_common.BENCHMARKS_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
