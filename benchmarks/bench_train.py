"""Measure fit_sine.py's training time, process time and memory against baselines.

All runs use the default configuration: seed 0, 100 points, BalancedMLP with
hidden width 64 and ReLU, Adam with lr 0.01, MSE loss and 690 full-batch epochs.

  a. fit_sine.train with fit_sine's data, model and make_optimizer("adam", ...),
     at 1 thread because fit_sine.main() calls torch.set_num_threads(1) on CPU.
  b. The plain tutorial loop, bench_common.time_tutorial_loop: an nn.Sequential
     with a's initial weights, torch.optim.Adam without the fused flag,
     nn.MSELoss and loss.item() every epoch, at torch's default thread count.
  c. scikit-learn's MLPRegressor with the same layers, solver, learning rate and
     full batch, fitted on the same data. Skipped if scikit-learn is missing.
  d. The wall time of ``python fit_sine.py --out-dir TMP --quiet`` against the
     import floor ``python -c "import torch, torch._dynamo, matplotlib"``.
  e. The peak resident memory (ru_maxrss from os.wait4) of the same processes.

a, b and c run in one process, in turn, with warm-up rounds first; d and e
alternate the two commands as separate processes. Every figure is the median
over the repeats.

Usage::

    python benchmarks/bench_train.py             # print the table
    python benchmarks/bench_train.py --markdown  # and rewrite its BENCHMARKS.md part
    python benchmarks/bench_train.py --quick     # 20 epochs, 1 round: does it run?
"""

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import matplotlib
import torch
from torch import nn

# Running this file puts its folder first on sys.path, and bench_common puts
# the repository root there for fit_sine.
import bench_common  # noqa: E402
import fit_sine  # noqa: E402
from bench_common import BENCHMARKS_DIR, REPO_ROOT  # noqa: E402
from bench_common import Row, check_at_most, print_progress  # noqa: E402

try:
    import sklearn
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor
except ImportError:
    sklearn = None

SECTION = "bench_train"
SEED = 0
LR = 0.01
EPOCHS = 690
QUICK_EPOCHS = 20
DEFAULT_REPEATS = 7
MIN_MARKDOWN_REPEATS = 5
CPU = torch.device("cpu")
IMPORT_FLOOR_CODE = "import torch, torch._dynamo, matplotlib"

MAX_A_OVER_B = 0.75
MAX_A_OVER_C = 1.0
MAX_SECONDS_BEYOND_FLOOR = 0.45
MAX_MIB_BEYOND_FLOOR = 50.0


# -- a. fit_sine.train -----------------------------------------------------


def train_with_fit_sine(x, y, epochs):
    """Time fit_sine.train at 1 thread; return (seconds, final loss).

    The clock covers building the optimizer and training, not building the model.
    """
    torch.set_num_threads(1)  # as fit_sine.main() does on CPU
    model = fit_sine.make_model(SEED)
    start = time.perf_counter()
    optimizer = fit_sine.make_optimizer("adam", model.parameters(), LR, CPU)
    result = fit_sine.train(model, x, y, optimizer, epochs)
    seconds = time.perf_counter() - start
    return seconds, result.losses[-1]


# -- b. The tutorial loop --------------------------------------------------


def make_tutorial_model(initial_state):
    """Build the tutorial's nn.Sequential and load the given initial weights."""
    model = nn.Sequential(
        nn.Linear(1, 64),
        nn.ReLU(),
        nn.Linear(64, 64),
        nn.ReLU(),
        nn.Linear(64, 1),
    )
    model.load_state_dict(initial_state)
    return model


def train_tutorial_loop(x, y, initial_state, epochs, threads):
    """Time the tutorial loop at the given thread count; return (seconds, final loss).

    The clock covers building the optimizer and loss and training, not building
    the model.
    """
    torch.set_num_threads(threads)
    model = make_tutorial_model(initial_state)
    return bench_common.time_tutorial_loop(model, x, y, epochs, LR)


# -- c. scikit-learn -------------------------------------------------------


def fit_mlp_regressor(x, y, epochs):
    """Time MLPRegressor.fit on the full batch; return (seconds, final MSE).

    scikit-learn's squared-error loss, and so loss_curve_, is half the MSE, so
    the last entry is doubled to compare with a and b.
    """
    regressor = MLPRegressor(
        hidden_layer_sizes=(64, 64),
        activation="relu",
        solver="adam",
        learning_rate_init=LR,
        batch_size=len(x),
        alpha=0.0,
        max_iter=epochs,
        # tol=0 and n_iter_no_change=max_iter keep it from stopping early, so
        # it runs exactly epochs full-batch steps like a and b.
        tol=0.0,
        n_iter_no_change=epochs,
        shuffle=False,
        random_state=SEED,
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        # Reaching max_iter is the point here, so the ConvergenceWarning that
        # fit raises for it carries no information.
        warnings.simplefilter("ignore", ConvergenceWarning)
        regressor.fit(x, y)
    seconds = time.perf_counter() - start
    if regressor.n_iter_ != epochs:
        raise RuntimeError(f"MLPRegressor ran {regressor.n_iter_} epochs, "
                           f"expected {epochs}")
    return seconds, 2 * regressor.loss_curve_[-1]


def blas_threads():
    """Return the BLAS libraries loaded and their thread counts, as text."""
    try:
        import threadpoolctl
    except ImportError:
        return "unknown (threadpoolctl is not installed)"
    pools = []
    for info in threadpoolctl.threadpool_info():
        if info["user_api"] == "blas":
            # The wheels ship BLAS in a folder named after them, as in numpy.libs.
            package = os.path.basename(os.path.dirname(info["filepath"]))
            package = package.removesuffix(".libs")
            pools.append(f"{info['internal_api']} {info['num_threads']} ({package})")
    return ", ".join(pools) or "none found"


# -- d and e. Whole processes ----------------------------------------------


def run_process(command):
    """Run command from the repo root; return (wall seconds, peak RSS in bytes).

    measure_process.py starts the command and reports its time and ru_maxrss
    from os.wait4, so the peak is that process's alone and not this one's.
    Raises RuntimeError with the command's output if it fails.
    """
    launcher = [sys.executable, os.path.join(BENCHMARKS_DIR, "measure_process.py")]
    completed = subprocess.run(launcher + command, cwd=REPO_ROOT,
                               stdin=subprocess.DEVNULL, capture_output=True,
                               text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"measure_process.py failed with exit code "
                           f"{completed.returncode}:\n{completed.stderr}")
    report = json.loads(completed.stdout)
    if report["exit_code"] != 0:
        raise RuntimeError(f"{shlex.join(command)} exited with "
                           f"{report['exit_code']}:\n{completed.stderr}")
    return report["seconds"], report["max_rss_bytes"]


# -- Running and reporting -------------------------------------------------


def measure_in_process(epochs, repeats, warmup, default_threads):
    """Run a, b and c interleaved; return {name: [(seconds, final loss), ...]}."""
    x, y = fit_sine.make_data(seed=SEED)
    initial_state = fit_sine.make_model(SEED).net.state_dict()
    tasks = {
        "a": lambda: train_with_fit_sine(x, y, epochs),
        "b": lambda: train_tutorial_loop(x, y, initial_state, epochs, default_threads),
    }
    if sklearn is not None:
        x_numpy, y_numpy = x.numpy(), y.numpy().ravel()
        tasks["c"] = lambda: fit_mlp_regressor(x_numpy, y_numpy, epochs)
    print_progress(f"training {', '.join(tasks)}: {warmup} warm-up round(s), "
                   f"{repeats} timed round(s) of {epochs} epochs")
    samples = bench_common.run_interleaved(tasks, repeats, warmup)
    torch.set_num_threads(default_threads)
    return samples


def measure_processes(script_command, repeats, warmup):
    """Run the script and the import floor alternately; return their samples."""
    floor_command = [sys.executable, "-c", IMPORT_FLOOR_CODE]
    tasks = {
        "floor": lambda: run_process(floor_command),
        "script": lambda: run_process(script_command),
    }
    print_progress(f"processes: {warmup} warm-up pair(s), {repeats} timed pair(s)")
    return bench_common.run_interleaved(tasks, repeats, warmup)


def training_rows(samples, default_threads):
    """Return the table rows for a, b, c and the ratios a/b and a/c."""
    seconds = {name: [sample[0] for sample in runs] for name, runs in samples.items()}
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    rows = [
        bench_common.seconds_row("a  fit_sine.train, 1 thread", seconds["a"]),
        bench_common.seconds_row(f"b  tutorial loop, {default_threads} thread(s)",
                                 seconds["b"]),
    ]
    a_over_b = medians["a"] / medians["b"]
    if "c" in seconds:
        rows.append(bench_common.seconds_row("c  scikit-learn MLPRegressor",
                                             seconds["c"]))
    rows.append(Row("a/b", f"{a_over_b:.2f}", "", f"<= {MAX_A_OVER_B:.2f}",
                    check_at_most(a_over_b, MAX_A_OVER_B)))
    if "c" in seconds:
        a_over_c = medians["a"] / medians["c"]
        rows.append(Row("a/c", f"{a_over_c:.2f}", "", f"<= {MAX_A_OVER_C:.2f}",
                        check_at_most(a_over_c, MAX_A_OVER_C)))
    else:
        rows.append(Row("a/c", "skipped", "", f"<= {MAX_A_OVER_C:.2f}",
                        "scikit-learn is not installed"))
    return rows


def process_rows(samples):
    """Return the table rows for d (wall time) and e (peak RSS)."""
    seconds = {name: [sample[0] for sample in runs] for name, runs in samples.items()}
    mib = {name: [sample[1] / bench_common.MIB for sample in runs]
           for name, runs in samples.items()}
    script_seconds = statistics.median(seconds["script"])
    floor_seconds = statistics.median(seconds["floor"])
    beyond = script_seconds - floor_seconds
    script_mib = statistics.median(mib["script"])
    floor_mib = statistics.median(mib["floor"])
    extra_mib = script_mib - floor_mib
    return [
        bench_common.seconds_row("d  fit_sine.py process", seconds["script"]),
        bench_common.seconds_row("d  import floor process", seconds["floor"]),
        Row("d  process / floor", f"{script_seconds / floor_seconds:.2f}"),
        Row("d  beyond floor", f"{beyond:.3f} s", "",
            f"<= {MAX_SECONDS_BEYOND_FLOOR:.2f} s",
            check_at_most(beyond, MAX_SECONDS_BEYOND_FLOOR, " s")),
        Row("e  fit_sine.py peak RSS", f"{script_mib:.1f} MiB",
            f"{min(mib['script']):.1f} to {max(mib['script']):.1f} MiB"),
        Row("e  import floor peak RSS", f"{floor_mib:.1f} MiB",
            f"{min(mib['floor']):.1f} to {max(mib['floor']):.1f} MiB"),
        Row("e  beyond floor", f"{extra_mib:.1f} MiB", "",
            f"<= {MAX_MIB_BEYOND_FLOOR:.0f} MiB",
            check_at_most(extra_mib, MAX_MIB_BEYOND_FLOOR, " MiB")),
    ]


def quality_rows(samples):
    """Return one row per run with the median final training MSE."""
    labels = {"a": "a  final MSE, fit_sine.train",
              "b": "b  final MSE, tutorial loop",
              "c": "c  final MSE, MLPRegressor (2 x loss_curve_)"}
    rows = []
    for name, runs in samples.items():
        losses = [sample[1] for sample in runs]
        rows.append(Row(labels[name], f"{statistics.median(losses):.5f}",
                        f"{min(losses):.5f} to {max(losses):.5f}"))
    return rows


def notes(default_threads, epochs):
    """Return the lines that explain the setup under the tables."""
    lines = [
        f"Every run trains {epochs} full-batch epochs on seed {SEED}'s data.",
        "a runs at 1 thread, set with torch.set_num_threads(1) as fit_sine.main() "
        "does on CPU.",
        f"b runs at torch's default of {default_threads} thread(s), restored before "
        "each run because a sets 1.",
        "a and b start from the same weights; b uses torch.optim.Adam without "
        "fused, so its loss can differ from a's by rounding.",
    ]
    if sklearn is None:
        lines.append("c was skipped: scikit-learn is not installed.")
    else:
        lines.append(f"c draws its own initial weights (random_state={SEED}). "
                     f"BLAS threads it can use: {blas_threads()}.")
        lines.append("scikit-learn's loss_curve_ is half the MSE, so c's final "
                     "loss is doubled to compare with a and b.")
    lines.append("Times for a, b and c cover building the optimizer and training; "
                 "d and e cover whole processes, interpreter start included.")
    return lines


def versions():
    return {
        "Python": sys.version.split()[0],
        "torch": torch.__version__,
        "matplotlib": matplotlib.__version__,
        "scikit-learn": sklearn.__version__ if sklearn is not None else "not installed",
    }


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Benchmark fit_sine.py's training, process time and memory.",
    )
    parser.add_argument("--repeats", type=bench_common.positive_int, default=None,
                        help=f"timed rounds; each figure is their median "
                             f"(default {DEFAULT_REPEATS})")
    parser.add_argument("--markdown", action="store_true",
                        help=f"rewrite the {SECTION} section of BENCHMARKS.md")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_EPOCHS} epochs, 1 round, no process warm-up: "
                             "checks that the benchmark runs, not how fast")
    args = parser.parse_args(argv)
    if args.quick and args.markdown:
        parser.error("--markdown cannot be combined with --quick, whose numbers "
                     "are not worth recording")
    if args.quick and args.repeats is not None:
        parser.error("--repeats cannot be combined with --quick, which runs 1 round")
    if args.repeats is None:
        args.repeats = 1 if args.quick else DEFAULT_REPEATS
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
    process_warmup = 0 if args.quick else 1
    if sklearn is None:
        print("scikit-learn is not installed: skipping c (MLPRegressor).")

    train_samples = measure_in_process(epochs, args.repeats, 1, default_threads)
    with tempfile.TemporaryDirectory() as out_dir:
        script_command = [sys.executable, "fit_sine.py", "--out-dir", out_dir,
                          "--quiet"]
        if args.quick:
            script_command += ["--epochs", str(epochs)]
        process_samples = measure_processes(script_command, args.repeats,
                                            process_warmup)

    rows = training_rows(train_samples, default_threads)
    rows += process_rows(process_samples)
    quality = quality_rows(train_samples)
    note_lines = notes(default_threads, epochs)
    floor_text = f'python -c "{IMPORT_FLOOR_CODE}"'
    script_text = "python fit_sine.py --out-dir TMP --quiet"
    if args.quick:
        script_text += f" --epochs {epochs}"
    process_lines = [f"d and e compare `{script_text}` with the import floor "
                     f"`{floor_text}`."]

    print(f"bench_train: median of {args.repeats} round(s)")
    print(bench_common.format_text_table(rows))
    print()
    print("quality (final training MSE):")
    print(bench_common.format_text_table(quality))
    print()
    for line in note_lines + process_lines:
        print(line.replace("`", ""))

    if args.markdown:
        body = "\n".join([
            "## Training speed, process time and memory",
            "",
            *bench_common.environment_lines(versions(), load_average),
            f"- Repeats: median of {args.repeats} rounds after 1 warm-up round",
            "",
            bench_common.format_markdown_table(rows),
            "",
            "Final training MSE, to weigh each run's speed against its fit:",
            "",
            bench_common.format_markdown_table(quality),
            "",
            *(f"- {line}" for line in note_lines + process_lines),
        ])
        bench_common.write_markdown_section(SECTION, body)
        print(f"wrote the {SECTION} section of {bench_common.BENCHMARKS_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
