"""Measure the effect of each of fit_sine.py's speed choices, one lever at a time.

Every run uses the default configuration: seed 0, 100 points, BalancedMLP with
hidden width 64 and ReLU, Adam with lr 0.01, MSE loss and 690 full-batch epochs.

Training loop, in this process. Every variant builds its model with
fit_sine.make_model(0), so all start from the same weights:

  1   the tutorial loop: torch.optim.Adam with its default implementation,
      loss.item() appended every epoch, torch's default thread count.
  2   1 at 1 thread, set with torch.set_num_threads(1).
  3   2 with each epoch's loss stored in a preallocated tensor, copied out once.
  4   3 with Adam(fused=True), which is the setup of fit_sine.train.
  4b  fit_sine.train itself with fit_sine.make_optimizer, to show that 4 matches.
  5   3 with Adam(foreach=True). On CPU, torch 2.13's default Adam in 1 to 3 is
      the single-tensor implementation, so 3, 4 and 5 cover all three. The
      notes name the default of the torch that ran.
  6   4 at 2 threads.

Prediction, in this process: fit_sine.predict, which runs under torch.no_grad,
against the same model call under torch.inference_mode.

Whole processes, each variant a fresh process, alternating:

  garbage collector  python -c code that imports fit_sine and calls
                     fit_sine.main(["--out-dir", TMP, "--quiet"]), with and
                     without gc.freeze() before main().
  figures            a process trains the default model, then times drawing and
                     saving fit.png and loss.png (a) as fit_sine does, (b) with
                     layout="constrained" in place of fixed margins, (c) with the
                     default mathtext tick labels on the log axis.
  imports            import torch and matplotlib, then matplotlib.pyplot, against
                     only matplotlib.figure and matplotlib.backends.backend_agg.
  pyplot import      the import time that python -X importtime reports for
                     matplotlib.pyplot when it comes after those two modules.

Each figure is the median over the repeats, after one warm-up round.

Usage::

    python benchmarks/bench_levers.py             # print the tables
    python benchmarks/bench_levers.py --markdown  # and rewrite its BENCHMARKS.md part
    python benchmarks/bench_levers.py --quick     # 20 epochs, 1 round: does it run?
"""

import argparse
import concurrent.futures
import gc
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import matplotlib
import torch
from matplotlib.ticker import LogFormatterSciNotation
from torch import nn

# Running this file puts its folder first on sys.path, and bench_common puts
# the repository root there for fit_sine.
import bench_common  # noqa: E402
import fit_sine  # noqa: E402
from bench_common import BENCHMARKS_DIR, REPO_ROOT  # noqa: E402
from bench_common import print_progress  # noqa: E402

SECTION = "bench_levers"
SEED = 0
LR = 0.01
NOISE = 0.3  # fit_sine's default --noise
EPOCHS = 690
QUICK_EPOCHS = 20
DEFAULT_REPEATS = 7
MIN_MARKDOWN_REPEATS = 5
PREDICT_CALLS = 1000
QUICK_PREDICT_CALLS = 50
# --quick runs its fresh processes this many at a time, to finish sooner.
QUICK_WORKERS = 2
EXTRA_THREADS = 2
CPU = torch.device("cpu")
# Seconds after which a child process counts as hung.
CHILD_TIMEOUT_S = 300

TRAINING = "training loop"
PREDICTION = "prediction"
COLLECTOR = "garbage collector"
FIGURES = "figures"
IMPORTS = "imports"
PYPLOT_IMPORT = "pyplot import"


@dataclass
class LeverRow:
    """One line of a result table, with every cell already formatted."""

    lever: str
    variant: str
    median: str
    spread: str = ""
    comparison: str = ""


TIMING_HEADINGS = LeverRow("lever", "variant", "median", "min to max",
                           "ratio or difference")
QUALITY_HEADINGS = LeverRow("lever", "variant", "final MSE", "min to max",
                            "minus row 1")
FIELDS = ("lever", "variant", "median", "spread", "comparison")
RIGHT_ALIGNED = ("median", "spread")


# -- Training loop ---------------------------------------------------------


def train_tutorial_loop(x, y, epochs, threads):
    """Time the tutorial loop, which calls loss.item() every epoch.

    Returns (seconds, final loss). The clock covers building the optimizer and
    loss and training, not building the model.
    """
    torch.set_num_threads(threads)
    model = fit_sine.make_model(SEED)
    return bench_common.time_tutorial_loop(model, x, y, epochs, LR)


def train_loss_on_device(x, y, epochs, threads, adam_options):
    """Time the loop that stores each epoch's loss in a preallocated tensor.

    Returns (seconds, final loss). adam_options go to torch.optim.Adam, for
    example {"fused": True}. The clock covers building the optimizer and loss,
    training and copying the loss history out once with tolist(), but not
    building the model.
    """
    torch.set_num_threads(threads)
    model = fit_sine.make_model(SEED)
    start = time.perf_counter()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, **adam_options)
    loss_fn = nn.MSELoss()
    losses = torch.empty(epochs)
    for epoch in range(epochs):
        optimizer.zero_grad()
        prediction = model(x)
        loss = loss_fn(prediction, y)
        loss.backward()
        optimizer.step()
        losses[epoch] = loss.detach()
    history = losses.tolist()
    seconds = time.perf_counter() - start
    return seconds, history[-1]


def train_with_fit_sine(x, y, epochs):
    """Time fit_sine.train at 1 thread and return (seconds, final loss).

    The clock covers building the optimizer and training, not building the model.
    """
    torch.set_num_threads(1)  # as fit_sine.main() does on CPU
    model = fit_sine.make_model(SEED)
    start = time.perf_counter()
    optimizer = fit_sine.make_optimizer("adam", model.parameters(), LR, CPU)
    result = fit_sine.train(model, x, y, optimizer, epochs)
    seconds = time.perf_counter() - start
    return seconds, result.losses[-1]


def training_variants(x, y, epochs, default_threads):
    """Return the training variants as {row label: callable}, row 1 first."""
    return {
        "1 tutorial loop, default threads":
            lambda: train_tutorial_loop(x, y, epochs, default_threads),
        "2 tutorial loop, 1 thread":
            lambda: train_tutorial_loop(x, y, epochs, 1),
        "3 loss on device, 1 thread":
            lambda: train_loss_on_device(x, y, epochs, 1, {}),
        "4 fused Adam, 1 thread":
            lambda: train_loss_on_device(x, y, epochs, 1, {"fused": True}),
        "4b fit_sine.train, 1 thread":
            lambda: train_with_fit_sine(x, y, epochs),
        "5 foreach Adam, 1 thread":
            lambda: train_loss_on_device(x, y, epochs, 1, {"foreach": True}),
        f"6 fused Adam, {EXTRA_THREADS} threads":
            lambda: train_loss_on_device(x, y, epochs, EXTRA_THREADS,
                                         {"fused": True}),
    }


def default_adam_implementation():
    """Return the name of the Adam implementation torch picks for CPU tensors.

    Uses torch.optim.optimizer._default_to_fused_or_foreach, a private helper
    of torch 2.x, and returns "unknown" when it is missing or has changed.
    """
    try:
        from torch.optim.optimizer import _default_to_fused_or_foreach

        fused, foreach = _default_to_fused_or_foreach(
            [torch.zeros(1)], differentiable=False, use_fused=False)
    except (ImportError, TypeError, ValueError):
        return "unknown"
    if fused:
        return "fused"
    return "foreach" if foreach else "single-tensor"


# -- Prediction ------------------------------------------------------------


@torch.inference_mode()
def predict_in_inference_mode(model, grid):
    """Do what fit_sine.predict does, under torch.inference_mode."""
    model.eval()
    return model(grid).squeeze(-1)


def time_calls(predict, model, grid, calls):
    """Call predict(model, grid) calls times; return each call's seconds."""
    seconds = []
    for _ in range(calls):
        start = time.perf_counter()
        predict(model, grid)
        seconds.append(time.perf_counter() - start)
    return seconds


# -- Figures, in a child process -------------------------------------------


def with_constrained_layout(new_figure):
    """Wrap fit_sine.new_figure so that its figures use layout="constrained".

    The constrained layout engine places the axes when the figure is drawn,
    so the fixed margins that new_figure sets no longer apply.
    """

    def new_figure_constrained(*args, **kwargs):
        figure = new_figure(*args, **kwargs)
        figure.set_layout_engine("constrained")
        return figure

    return new_figure_constrained


def with_mathtext_labels(set_log_scale):
    """Wrap fit_sine.set_log_scale so that it keeps the default tick labels.

    The wrapper puts back LogFormatterSciNotation, the major formatter that
    set_yscale("log") installs, which writes each label in mathtext, for
    example $10^{-2}$. Tick positions and minor labels stay as set_log_scale
    sets them.
    """

    def set_log_scale_mathtext(axes, *args, **kwargs):
        set_log_scale(axes, *args, **kwargs)
        axes.yaxis.set_major_formatter(LogFormatterSciNotation(base=10))

    return set_log_scale_mathtext


# Maps each figure variant to {fit_sine function name: wrapper of it}.
FIGURE_PATCHES = {
    "a project settings": {},
    "b layout=constrained": {"new_figure": with_constrained_layout},
    "c mathtext log labels": {"set_log_scale": with_mathtext_labels},
}


def time_figures(variant, out_dir, epochs):
    """Train the default model, then time drawing and saving fit.png and loss.png.

    Runs in a fresh child process started by run_figure_child. The figures are
    those of fit_sine.run_single, drawn after FIGURE_PATCHES[variant] has
    wrapped fit_sine functions. Returns {"seconds": ...} for both files,
    which save_png writes.
    """
    gc.freeze()  # as fit_sine.py's __main__ guard does after its imports
    torch.set_num_threads(1)  # as fit_sine.main() does on CPU
    x, y = fit_sine.make_data(noise=NOISE, seed=SEED)
    grid = fit_sine.make_grid()
    model = fit_sine.make_model(SEED)
    optimizer = fit_sine.make_optimizer("adam", model.parameters(), LR, CPU)
    result = fit_sine.train(model, x, y, optimizer, epochs)
    prediction = fit_sine.predict(model, grid)
    mse = fit_sine.mse_against_sine(grid, prediction).item()
    title = (f"BalancedMLP after {result.epochs_run} epochs: "
             f"loss {result.losses[-1]:.4f}, MSE vs sin(x) {mse:.4f}")
    for name, wrap in FIGURE_PATCHES[variant].items():
        original = getattr(fit_sine, name, None)
        if not callable(original):
            raise AttributeError(f"fit_sine has no function {name!r} to wrap "
                                 f"for the figure variant {variant!r}")
        setattr(fit_sine, name, wrap(original))

    start = time.perf_counter()
    fit_figure = fit_sine.plot_fit(x, y, grid, prediction, title)
    save_png(fit_figure, os.path.join(out_dir, "fit.png"))
    loss_figure = fit_sine.plot_loss(result.losses, NOISE)
    save_png(loss_figure, os.path.join(out_dir, "loss.png"))
    return {"seconds": time.perf_counter() - start}


def save_png(figure, path):
    """Write figure to path with fit_sine.figure_writer, which also clears it.

    fit_sine.write_files writes to a temporary file and renames it, which this
    skips because renaming costs the same with every figure variant.
    """
    write = fit_sine.figure_writer(figure)
    with open(path, "wb") as file:
        write(file)


FIGURE_CHILD_CODE = (
    "import json, sys\n"
    f"sys.path.insert(0, {BENCHMARKS_DIR!r})\n"
    "import bench_levers\n"
    "variant, out_dir, epochs = sys.argv[1:]\n"
    "print(json.dumps(bench_levers.time_figures(variant, out_dir, int(epochs))))\n"
)


def run_figure_child(variant, out_dir, epochs):
    """Run time_figures in a fresh process and return its seconds.

    Raises RuntimeError with the child's output if it fails.
    """
    command = [sys.executable, "-c", FIGURE_CHILD_CODE, variant, out_dir,
               str(epochs)]
    completed = subprocess.run(command, cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                               capture_output=True, text=True,
                               timeout=CHILD_TIMEOUT_S, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"the figure process for {variant!r} failed with exit "
                           f"code {completed.returncode}:\n{completed.stderr}")
    return json.loads(completed.stdout.splitlines()[-1])["seconds"]


# -- Garbage collector and imports, as whole processes ---------------------


def script_code(argv, freeze):
    """Return python -c code that runs fit_sine.main(argv), gc.freeze() first or not."""
    lines = ["import gc, sys", "import fit_sine"]
    if freeze:
        lines.append("gc.freeze()")
    lines.append(f"sys.exit(fit_sine.main({argv!r}))")
    return "; ".join(lines)


IMPORT_CODES = {
    "figure + backend_agg":
        "import torch, matplotlib, matplotlib.figure, matplotlib.backends.backend_agg",
    "pyplot": "import torch, matplotlib, matplotlib.pyplot",
}
# Imports pyplot last, so that -X importtime charges it only for the modules
# that it adds to torch, matplotlib.figure and the Agg backend.
PYPLOT_LAST_CODE = IMPORT_CODES["figure + backend_agg"] + ", matplotlib.pyplot"


def run_process_seconds(command):
    """Run command from the repo root; return its wall time in seconds.

    measure_process.py starts the command and times it from start to exit, so
    the time excludes the launcher's own start. Raises RuntimeError with the
    command's output if it fails.
    """
    launcher = [sys.executable, os.path.join(BENCHMARKS_DIR, "measure_process.py")]
    completed = subprocess.run(launcher + command, cwd=REPO_ROOT,
                               stdin=subprocess.DEVNULL, capture_output=True,
                               text=True, timeout=CHILD_TIMEOUT_S, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"measure_process.py failed with exit code "
                           f"{completed.returncode}:\n{completed.stderr}")
    report = json.loads(completed.stdout)
    if report["exit_code"] != 0:
        raise RuntimeError(f"{shlex.join(command)} exited with "
                           f"{report['exit_code']}:\n{completed.stderr}")
    return report["seconds"]


def run_pyplot_import_time():
    """Return the seconds that importing matplotlib.pyplot adds in a fresh process.

    Runs PYPLOT_LAST_CODE under python -X importtime and reads the cumulative
    time of matplotlib.pyplot, which covers pyplot and every module that it
    imports for the first time. Raises RuntimeError if the process fails or
    its report has no matplotlib.pyplot line.
    """
    command = [sys.executable, "-X", "importtime", "-c", PYPLOT_LAST_CODE]
    completed = subprocess.run(command, cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                               capture_output=True, text=True,
                               timeout=CHILD_TIMEOUT_S, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} exited with "
                           f"{completed.returncode}:\n{completed.stderr}")
    # Each report line reads "import time: SELF_US | CUMULATIVE_US | MODULE".
    for line in completed.stderr.splitlines():
        fields = [field.strip() for field in line.split("|")]
        if len(fields) == 3 and fields[2] == "matplotlib.pyplot":
            return int(fields[1]) / 1e6
    raise RuntimeError(f"python -X importtime reported no matplotlib.pyplot line:\n"
                       f"{completed.stderr}")


# -- Measuring -------------------------------------------------------------


def measure_training(epochs, repeats, default_threads):
    """Run the training variants interleaved.

    Returns {label: [(seconds, final loss), ...]}.
    """
    x, y = fit_sine.make_data(noise=NOISE, seed=SEED)
    tasks = training_variants(x, y, epochs, default_threads)
    print_progress(f"training loop: {len(tasks)} variants, 1 warm-up round, "
                   f"{repeats} timed round(s) of {epochs} epochs")
    return bench_common.run_interleaved(tasks, repeats, warmup=1)


def measure_prediction(calls, repeats):
    """Time both prediction variants interleaved.

    Returns {label: [seconds of each call, ...] per round}.
    """
    torch.set_num_threads(1)  # as fit_sine.main() does on CPU
    model = fit_sine.make_model(SEED)
    grid = fit_sine.make_grid()
    tasks = {
        "no_grad (fit_sine.predict)":
            lambda: time_calls(fit_sine.predict, model, grid, calls),
        "inference_mode":
            lambda: time_calls(predict_in_inference_mode, model, grid, calls),
    }
    print_progress(f"prediction: 1 warm-up round, {repeats} timed round(s) of "
                   f"{calls} calls")
    return bench_common.run_interleaved(tasks, repeats, warmup=1)


def process_tasks(out_dir, epochs):
    """Return the process variants as {lever: {variant: callable}}, baseline first.

    Every process writes into out_dir. fit_sine writes each file to a temporary
    name and renames it, so processes that run at the same time do not clash.
    """
    argv = ["--out-dir", out_dir, "--quiet"]
    if epochs != EPOCHS:
        argv += ["--epochs", str(epochs)]
    collector_tasks = {
        "gc.freeze() before main": lambda: run_process_seconds(
            [sys.executable, "-c", script_code(argv, freeze=True)]),
        "no gc.freeze()": lambda: run_process_seconds(
            [sys.executable, "-c", script_code(argv, freeze=False)]),
    }
    figure_tasks = {
        variant: (lambda variant=variant: run_figure_child(variant, out_dir, epochs))
        for variant in FIGURE_PATCHES
    }
    import_tasks = {
        variant: (lambda code=code: run_process_seconds([sys.executable, "-c", code]))
        for variant, code in IMPORT_CODES.items()
    }
    pyplot_import_tasks = {
        "-X importtime, after figure + backend_agg": run_pyplot_import_time,
    }
    return {COLLECTOR: collector_tasks, FIGURES: figure_tasks, IMPORTS: import_tasks,
            PYPLOT_IMPORT: pyplot_import_tasks}


def measure_processes(epochs, repeats, warmup):
    """Run the process variants of each lever, alternating, in fresh processes.

    Returns {lever: {variant: [seconds, ...]}}.
    """
    samples = {}
    with tempfile.TemporaryDirectory() as out_dir:
        for lever, tasks in process_tasks(out_dir, epochs).items():
            print_progress(f"{lever}: {len(tasks)} variants, {warmup} warm-up "
                           f"round(s), {repeats} timed round(s) of fresh processes")
            samples[lever] = bench_common.run_interleaved(tasks, repeats, warmup)
    return samples


def run_processes_concurrently(epochs):
    """Run every process variant once, QUICK_WORKERS at a time, for --quick.

    Returns {lever: {variant: [seconds]}}. Processes that share the CPU slow
    each other down, so these times only show that every variant runs.
    """
    samples = {}
    print_progress(f"processes: every variant once, {QUICK_WORKERS} at a time")
    with tempfile.TemporaryDirectory() as out_dir:
        tasks = process_tasks(out_dir, epochs)
        with concurrent.futures.ThreadPoolExecutor(QUICK_WORKERS) as executor:
            futures = {lever: {variant: executor.submit(task)
                               for variant, task in variants.items()}
                       for lever, variants in tasks.items()}
            for lever, variants in futures.items():
                samples[lever] = {variant: [future.result()]
                                  for variant, future in variants.items()}
    return samples


# -- Tables ----------------------------------------------------------------


def spread_text(values, unit, digits):
    return f"{min(values):.{digits}f} to {max(values):.{digits}f}{unit}"


def training_rows(samples):
    """Return one row per training variant with its time and ratio to row 1."""
    seconds = {label: [sample[0] for sample in runs]
               for label, runs in samples.items()}
    baseline = statistics.median(next(iter(seconds.values())))
    rows = []
    for label, values in seconds.items():
        median = statistics.median(values)
        rows.append(LeverRow(TRAINING, label, f"{median:.3f} s",
                             spread_text(values, " s", 3),
                             f"{median / baseline:.2f}"))
    return rows


def quality_rows(samples):
    """Return one row per training variant with its final training MSE."""
    losses = {label: [sample[1] for sample in runs]
              for label, runs in samples.items()}
    baseline = statistics.median(next(iter(losses.values())))
    rows = []
    for label, values in losses.items():
        median = statistics.median(values)
        rows.append(LeverRow(TRAINING, label, f"{median:.5f}",
                             spread_text(values, "", 5),
                             f"{median - baseline:+.1e}"))
    return rows


def prediction_rows(samples):
    """Return the prediction rows in microseconds per call.

    The median pools every timed call of every round; the range is over the
    medians of single rounds.
    """
    rows = []
    baseline = None
    for label, rounds in samples.items():
        pooled = [seconds * 1e6 for calls in rounds for seconds in calls]
        round_medians = [statistics.median(calls) * 1e6 for calls in rounds]
        median = statistics.median(pooled)
        if baseline is None:
            baseline = median
            comparison = "baseline"
        else:
            comparison = f"{median - baseline:+.1f} µs"
        rows.append(LeverRow(PREDICTION, label, f"{median:.1f} µs",
                             spread_text(round_medians, " µs", 1), comparison))
    return rows


def process_rows(samples):
    """Return one row per process variant with its difference to the baseline.

    The baseline is the first variant of each lever. A lever with a single
    variant has no comparison.
    """
    rows = []
    for lever, variants in samples.items():
        baseline = None
        for label, values in variants.items():
            median = statistics.median(values)
            if len(variants) == 1:
                comparison = ""
            elif baseline is None:
                baseline = median
                comparison = "baseline"
            else:
                comparison = f"{median - baseline:+.3f} s"
            rows.append(LeverRow(lever, label, f"{median:.3f} s",
                                 spread_text(values, " s", 3), comparison))
    return rows


def format_text_table(headings, rows):
    """Format rows as fixed-width text columns under a heading line."""
    table = [headings, *rows]
    widths = {field: max(len(getattr(row, field)) for row in table)
              for field in FIELDS}
    lines = []
    for row in table:
        cells = []
        for field in FIELDS:
            cell = getattr(row, field)
            if field in RIGHT_ALIGNED:
                cells.append(cell.rjust(widths[field]))
            else:
                cells.append(cell.ljust(widths[field]))
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def format_markdown_table(headings, rows):
    """Format rows as a GitHub-flavoured Markdown table."""
    alignments = ["---:" if field in RIGHT_ALIGNED else "---" for field in FIELDS]
    lines = [
        "| " + " | ".join(getattr(headings, field) for field in FIELDS) + " |",
        "| " + " | ".join(alignments) + " |",
    ]
    for row in rows:
        cells = [getattr(row, field).replace("|", "\\|") for field in FIELDS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def notes(epochs, default_threads, predict_calls, repeats, quick):
    """Return the note lines that explain exactly what each row runs."""
    freeze_code = script_code(["--out-dir", "TMP", "--quiet"], freeze=True)
    lines = []
    if quick:
        lines.append(f"--quick ran the processes {QUICK_WORKERS} at a time, so "
                     "their times only show that each variant runs.")
    return lines + [
        f"Every training row trains {epochs} full-batch epochs on seed {SEED}'s "
        f"data from the weights of fit_sine.make_model({SEED}). Its clock covers "
        "building the optimizer and training, not building the model.",
        f"Row 1 runs at torch's default of {default_threads} thread(s); rows 2 to "
        "5 call torch.set_num_threads(1), as fit_sine.main() does on CPU, and "
        f"row 6 calls torch.set_num_threads({EXTRA_THREADS}).",
        "Rows 1 and 2 call torch.optim.Adam(params, lr=0.01) and append "
        "loss.item() to a list every epoch.",
        "Rows 3 to 6 store each loss in a preallocated tensor and copy the "
        "history out once with tolist(). Row 3 uses torch.optim.Adam's default "
        "implementation, row 4 and 6 pass fused=True and row 5 foreach=True.",
        "On this machine, torch.optim.Adam's default for CPU tensors is the "
        f"{default_adam_implementation()} implementation.",
        "Row 4b calls fit_sine.train with fit_sine.make_optimizer, which is row "
        "4's loop plus a check for NaN or inf losses every 10 epochs.",
        "Ratios are each row's median over row 1's. The final MSE differs "
        "between implementations only by rounding, which grows over the epochs.",
        f"Prediction calls the model on fit_sine.make_grid()'s 300 points at 1 "
        f"thread, with fit_sine.make_model({SEED})'s initial weights. Each of "
        f"{repeats} round(s) times {predict_calls} calls of each variant one by "
        "one. The median pools all calls and the range is over round medians.",
        "inference_mode runs fit_sine.predict's body under "
        "@torch.inference_mode() in place of @torch.no_grad().",
        "Each process row starts a fresh Python process from the repo root, and "
        "the variants of one lever alternate. Differences are each variant's "
        "median minus the baseline's, so a positive one is what the baseline "
        "saves.",
        f"Garbage collector: `python -c \"{freeze_code}\"` against the same code "
        "without gc.freeze(). The times are the wall time of the whole process.",
        f"Figures: each process imports torch, matplotlib and fit_sine, calls "
        f"gc.freeze() as fit_sine.py does, and trains the real default model for "
        f"{epochs} epochs at 1 thread. Only then does the clock start. It covers "
        "plot_fit and plot_loss and writing fit.png and loss.png with fit_sine's "
        "PNG writer, as fit_sine.run_single draws them.",
        "b wraps fit_sine.new_figure to call figure.set_layout_engine("
        "\"constrained\") on each figure, which replaces the fixed margins. c "
        "wraps fit_sine.set_log_scale to put back the log scale's default major "
        "formatter, LogFormatterSciNotation, whose labels are mathtext. Tick "
        "positions and minor labels stay as set_log_scale sets them.",
        "Imports: "
        + " against ".join(f"`python -c \"{code}\"`" for code in IMPORT_CODES.values())
        + ", timed as whole processes.",
        f"pyplot import: `python -X importtime -c \"{PYPLOT_LAST_CODE}\"`. The "
        "row is the cumulative import time of matplotlib.pyplot from that report, "
        "which counts only the modules that pyplot adds. It is the cost of the "
        "imports lever without the noise of whole-process times.",
    ]


# -- Command line ----------------------------------------------------------


def versions():
    return {
        "Python": sys.version.split()[0],
        "torch": torch.__version__,
        "matplotlib": matplotlib.__version__,
    }


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Benchmark each speed choice of fit_sine.py on its own.",
    )
    parser.add_argument("--repeats", type=bench_common.positive_int, default=None,
                        help=f"timed rounds, both in this process and of fresh "
                             f"processes. Each figure is their median (default "
                             f"{DEFAULT_REPEATS})")
    parser.add_argument("--markdown", action="store_true",
                        help=f"rewrite the {SECTION} section of BENCHMARKS.md")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_EPOCHS} epochs, 1 round, no warm-up for the "
                             f"processes, which run {QUICK_WORKERS} at a time: "
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
    predict_calls = QUICK_PREDICT_CALLS if args.quick else PREDICT_CALLS

    training_samples = measure_training(epochs, args.repeats, default_threads)
    prediction_samples = measure_prediction(predict_calls, args.repeats)
    torch.set_num_threads(default_threads)
    if args.quick:
        process_samples = run_processes_concurrently(epochs)
    else:
        process_samples = measure_processes(epochs, args.repeats, warmup=1)

    rows = training_rows(training_samples)
    rows += prediction_rows(prediction_samples)
    rows += process_rows(process_samples)
    quality = quality_rows(training_samples)
    note_lines = notes(epochs, default_threads, predict_calls, args.repeats,
                       args.quick)

    print(f"bench_levers: median of {args.repeats} round(s)")
    print(format_text_table(TIMING_HEADINGS, rows))
    print()
    print("quality (final training MSE):")
    print(format_text_table(QUALITY_HEADINGS, quality))
    print()
    for line in note_lines:
        print(line.replace("`", ""))

    if args.markdown:
        body = "\n".join([
            "## Speed levers, one at a time",
            "",
            *bench_common.environment_lines(versions(), load_average),
            f"- Repeats: median of {args.repeats} rounds after 1 warm-up round",
            "",
            format_markdown_table(TIMING_HEADINGS, rows),
            "",
            "Final training MSE, to show that the levers leave the fit as it is:",
            "",
            format_markdown_table(QUALITY_HEADINGS, quality),
            "",
            *(f"- {line}" for line in note_lines),
        ])
        bench_common.write_markdown_section(SECTION, body)
        print(f"wrote the {SECTION} section of {bench_common.BENCHMARKS_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
