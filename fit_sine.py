"""Fit a small MLP to a noisy sine curve with PyTorch, as in the classic tutorial.

The script follows the tutorial's steps in order: make 100 noisy points of
sin(x), define ``BalancedMLP``, pick ``nn.MSELoss`` and Adam, run the
full-batch training loop, predict on a fine grid without gradients, and plot.
It also shows what the tutorial only discusses: other learning rates, SGD,
activations (including none), learning-rate schedulers, input scaling, and how
much the fit depends on the seed.

Usage::

    python fit_sine.py                      # the tutorial's run, files in outputs/
    python fit_sine.py --compare lr         # 0.01 against 0.001, side by side
    python fit_sine.py --seeds 8            # 8 seeds trained in one batched pass
    python fit_sine.py --help               # every flag, with its unit and default

Exit codes: 0 done, 1 an output file could not be written, 2 invalid input,
3 training diverged, 130 interrupted.
"""

import argparse
import contextlib
import copy
import errno
import gc
import json
import math
import os
import platform
import signal
import statistics
import sys
import tempfile
import time

if __name__ == "__main__":
    # Until main() starts, Ctrl-C ends the script at once and quietly, rather
    # than with a traceback from inside the imports below.
    signal.signal(signal.SIGINT, signal.SIG_DFL)

import matplotlib  # noqa: E402
import torch  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import LogLocator, NullFormatter  # noqa: E402
from torch import nn  # noqa: E402

EXIT_OK = 0
EXIT_WRITE_FAILED = 1
EXIT_USAGE = 2
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "none": nn.Identity,
}
OPTIMIZERS = ("adam", "sgd", "sgd-momentum")
SGD_MOMENTUM = 0.9
SCHEDULERS = ("none", "step", "plateau")
INPUT_MODES = ("raw", "scaled")
COMPARISONS = ("lr", "optimizer", "activation", "scheduler", "input")
DEFAULT_COMPARE_VALUES = {
    "lr": (0.01, 0.001),
    "optimizer": OPTIMIZERS,
    "activation": tuple(ACTIVATIONS),
    "scheduler": SCHEDULERS,
    "input": INPUT_MODES,
}

# Upper bounds that catch a mistyped value, such as an extra zero or two.
MAX_EPOCHS = 1_000_000
MAX_POINTS = 1_000_000
MAX_HIDDEN = 4096
MAX_SEEDS = 1000
MAX_SEED = 2**32 - 1
# Keeps squared errors far below float32's maximum of about 3.4e38.
MAX_NOISE = 1e6
# Points x hidden units x models, the size of one hidden layer's activations.
# 2**27 float32 values are 512 MiB, and training keeps several such tensors.
MAX_LAYER_VALUES = 2**27

# The loss stays on the device and is read back every CHECK_EVERY epochs, so
# a CUDA run does not wait for the GPU after each step. A NaN is still
# reported at the exact epoch where it first appeared.
CHECK_EVERY = 10

X_MIN, X_MAX = -10.0, 10.0


# -- 1. Data ---------------------------------------------------------------


def make_data(points=100, noise=0.3, seed=0):
    """Return x and y = sin(x) + noise * N(0, 1), both shaped (points, 1).

    The noise comes from its own CPU generator, so a seed gives the same data
    on every device and does not depend on how many weights were drawn.
    """
    x = torch.linspace(X_MIN, X_MAX, points)
    generator = torch.Generator().manual_seed(seed)
    y = torch.sin(x) + noise * torch.randn(points, generator=generator)
    # nn.Linear expects (batch, features): one feature per point.
    return x.unsqueeze(1), y.unsqueeze(1)


def make_grid(grid_points=300):
    """Return the prediction grid over the data's range, shaped (grid_points, 1)."""
    return torch.linspace(X_MIN, X_MAX, grid_points).unsqueeze(1)


def scale_input(x):
    """Map x from the data's range [-10, 10] linearly onto [-1, 1]."""
    center = (X_MAX + X_MIN) / 2
    half_range = (X_MAX - X_MIN) / 2
    return (x - center) / half_range


# -- 2. Model --------------------------------------------------------------


class BalancedMLP(nn.Module):
    """Two hidden layers of equal width; 4,353 parameters at the default 64."""

    def __init__(self, hidden=64, activation="relu"):
        super().__init__()
        act = ACTIVATIONS[activation]
        self.net = nn.Sequential(
            nn.Linear(1, hidden),
            act(),
            nn.Linear(hidden, hidden),
            act(),
            nn.Linear(hidden, 1),
        )

    def forward(self, x):
        return self.net(x)


def make_model(seed, hidden=64, activation="relu"):
    """Build BalancedMLP on the CPU with initial weights drawn from seed."""
    torch.manual_seed(seed)
    return BalancedMLP(hidden, activation)


class StackedMLP(nn.Module):
    """Several BalancedMLPs of the same shape, evaluated in one batched pass.

    The weights of layer k of every model are stacked along a new first
    dimension, so one torch.baddbmm does the work of that nn.Linear for all
    models. Weights are stored transposed, as (models, in, out), which keeps
    every intermediate tensor contiguous and the backward pass fast.
    """

    def __init__(self, models):
        super().__init__()
        linears = [[model.net[k] for model in models] for k in (0, 2, 4)]
        self.weights = nn.ParameterList(
            torch.stack([layer.weight.detach().t() for layer in layers])
            for layers in linears
        )
        self.biases = nn.ParameterList(
            torch.stack([layer.bias.detach() for layer in layers]).unsqueeze(1)
            for layers in linears
        )
        self.activation = copy.deepcopy(models[0].net[1])

    def forward(self, x):
        """Map x of shape (points, 1) to predictions of shape (models, points, 1)."""
        hidden = x.expand(len(self.weights[0]), -1, -1)
        last = len(self.weights) - 1
        for k, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            hidden = torch.baddbmm(bias, hidden, weight)
            if k < last:
                hidden = self.activation(hidden)
        return hidden


def collapsed_line(model):
    """Return (slope, intercept) of a BalancedMLP built without activations.

    Without a nonlinearity, W3 (W2 (W1 x + b1) + b2) + b3 multiplies out to a
    single line: slope W3 W2 W1, intercept W3 (W2 b1 + b2) + b3.
    """
    first, _, second, _, third = model.net
    with torch.no_grad():
        slope = third.weight @ second.weight @ first.weight
        intercept = third.weight @ (second.weight @ first.bias + second.bias)
        intercept = intercept + third.bias
    return slope.item(), intercept.item()


def least_squares_line(x, y):
    """Return (slope, intercept) of the least-squares line through the points."""
    design = torch.cat([x, torch.ones_like(x)], dim=1).double()
    solution = torch.linalg.lstsq(design, y.double()).solution
    return solution[0, 0].item(), solution[1, 0].item()


# -- 3. Loss and optimizer -------------------------------------------------


def make_optimizer(name, params, lr, device):
    """Build Adam or SGD; Adam uses the fused kernel, one call per step."""
    if name == "adam":
        # fused=True updates every parameter in one kernel, which matters
        # here because each epoch is only a few microseconds of arithmetic.
        return torch.optim.Adam(params, lr=lr, fused=device.type in ("cpu", "cuda"))
    momentum = SGD_MOMENTUM if name == "sgd-momentum" else 0.0
    return torch.optim.SGD(params, lr=lr, momentum=momentum)


def make_scheduler(name, optimizer, step_size, gamma, patience):
    """Build a StepLR or ReduceLROnPlateau, or return None for 'none'."""
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size, gamma)
    if name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=gamma, patience=patience
        )
    return None


# -- 4. Training loop ------------------------------------------------------


class StopFlag:
    """Set by Ctrl-C during training, so that training ends after the epoch."""

    def __init__(self):
        self.requested = False


@contextlib.contextmanager
def stop_on_ctrl_c():
    """Yield a StopFlag that the first Ctrl-C sets instead of interrupting.

    A second Ctrl-C raises KeyboardInterrupt at once. Outside the main thread
    signal handlers cannot be set, so there Ctrl-C is left as it is.
    """
    stop = StopFlag()

    def request_stop(signum, frame):
        stop.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    try:
        previous = signal.signal(signal.SIGINT, request_stop)
    except ValueError:
        yield stop
        return
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


class TrainResult:
    """Loss history and how training ended."""

    def __init__(self, losses, seconds, diverged_at=None, interrupted=False):
        self.losses = losses  # float per epoch; a list of lists when batched
        self.seconds = seconds
        self.diverged_at = diverged_at  # first 1-based epoch with a NaN or inf loss
        self.interrupted = interrupted

    @property
    def epochs_run(self):
        return len(self.losses)

    @property
    def finite_losses(self):
        """Return the losses before the first NaN or inf one."""
        for index, value in enumerate(self.losses):
            if not math.isfinite(value):
                return self.losses[:index]
        return self.losses


class EpochMonitor:
    """Record each epoch's loss on the device and check it every few epochs."""

    def __init__(self, epochs, shape, device, log_every, log,
                 stop_on_divergence=True):
        self.losses = torch.empty((epochs, *shape), device=device)
        self.stop_on_divergence = stop_on_divergence
        self.epochs = epochs
        self.log_every = log_every
        self.log = log
        self.checked = 0
        self.diverged_at = None
        self.start = time.perf_counter()

    def record(self, epoch, loss):
        """Store the loss; return False once training should stop."""
        self.losses[epoch] = loss.detach()
        done = epoch + 1
        logging = self.log is not None and done % self.log_every == 0
        checking = done % CHECK_EVERY == 0 or done == self.epochs or logging
        if checking and self.stop_on_divergence and not self.check(done):
            return False
        if logging:
            # With several models, the median loss stands for all of them.
            loss_value = self.losses[epoch].nanmedian().item()
            elapsed = time.perf_counter() - self.start
            self.log(
                f"epoch {done:>6}/{self.epochs}  loss {loss_value:.6f}  "
                f"elapsed {elapsed:6.2f} s"
            )
        return True

    def check(self, done):
        """Look for a NaN or inf loss among the epochs since the last check."""
        new = self.losses[self.checked : done]
        finite = torch.isfinite(new.reshape(len(new), -1)).all(dim=1)
        self.checked = done
        if bool(finite.all()):
            return True
        self.diverged_at = done - len(new) + int((~finite).nonzero()[0]) + 1
        return False

    def result(self, epochs_run, interrupted):
        if self.diverged_at is not None:
            epochs_run = self.diverged_at
        losses = self.losses[:epochs_run].cpu()  # the whole history, copied once
        return TrainResult(
            losses.tolist(),
            time.perf_counter() - self.start,
            self.diverged_at,
            interrupted,
        )


def train(
    model,
    x,
    y,
    optimizer,
    epochs,
    scheduler=None,
    log_every=100,
    log=None,
):
    """Train on the full batch for epochs steps; return the TrainResult.

    Each epoch is the tutorial's five steps. Training ends early when the loss
    turns NaN or inf (result.diverged_at) or after the epoch in which Ctrl-C
    was pressed (result.interrupted).
    """
    loss_fn = nn.MSELoss()
    monitor = EpochMonitor(epochs, (), x.device, log_every, log)
    epochs_run = 0
    model.train()
    with stop_on_ctrl_c() as stop:
        for epoch in range(epochs):
            optimizer.zero_grad()
            prediction = model(x)
            loss = loss_fn(prediction, y)
            loss.backward()
            optimizer.step()

            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(loss.detach())  # NOTE: reads the loss back each epoch
            elif scheduler is not None:
                scheduler.step()
            epochs_run = epoch + 1
            if not monitor.record(epoch, loss) or stop.requested:
                break
    return monitor.result(epochs_run, stop.requested)


def train_batched(
    model,
    x,
    ys,
    optimizer,
    epochs,
    scheduler=None,
    log_every=100,
    log=None,
):
    """Train every model of a StackedMLP at once; return the TrainResult.

    ys contains one target column per model, shaped (models, points, 1).
    The per-model MSE losses are summed, so each model gets exactly its own
    gradient. Adam and SGD update every element on its own, so model i
    follows the same path as a single run, up to rounding. A model whose loss
    turns NaN or inf keeps training without harming the others. The losses of
    the result are one list per epoch, one value per model.
    """
    monitor = EpochMonitor(epochs, (len(ys),), x.device, log_every, log,
                           stop_on_divergence=False)
    epochs_run = 0
    model.train()
    with stop_on_ctrl_c() as stop:
        for epoch in range(epochs):
            optimizer.zero_grad()
            prediction = model(x)
            member_losses = ((prediction - ys) ** 2).mean(dim=(1, 2))
            member_losses.sum().backward()
            optimizer.step()

            if scheduler is not None:
                scheduler.step()
            epochs_run = epoch + 1
            monitor.record(epoch, member_losses)
            if stop.requested:
                break
    return monitor.result(epochs_run, stop.requested)


# -- 5. Prediction ---------------------------------------------------------


@torch.no_grad()
def predict(model, grid):
    """Return the model's output on the grid without its feature dimension.

    The result is (grid_points,) for one model and (models, grid_points) for a
    StackedMLP.
    """
    model.eval()
    return model(grid).squeeze(-1)


def mse_against_sine(grid, prediction):
    """Return the mean squared error of a prediction against the noise-free sin."""
    target = torch.sin(grid.squeeze(-1)).to(prediction.device)
    return torch.mean((prediction - target) ** 2, dim=-1)


# -- 6. Plots and files ----------------------------------------------------


def new_figure(columns=1):
    """Return a Figure drawn by the Agg canvas, whatever MPLBACKEND is set to.

    The margins are fixed rather than computed by a layout engine, which
    would measure every label once more and add about 0.05 s per figure.
    """
    figure = Figure(figsize=(6.4 * columns, 4.8))
    FigureCanvasAgg(figure)
    figure.subplots_adjust(left=0.1 / columns, right=1 - 0.03 / columns,
                           bottom=0.1, top=0.92, wspace=0.15)
    return figure


def plot_data(axes, x, y, grid):
    axes.scatter(x, y, s=14, color="0.45", label="noisy data")
    axes.plot(grid, torch.sin(grid), "k--", linewidth=1, label="sin(x)")
    axes.set_xlabel("x")
    axes.set_ylabel("y")


def plot_fit(x, y, grid, prediction, title):
    figure = new_figure()
    axes = figure.add_subplot()
    plot_data(axes, x, y, grid)
    axes.plot(grid, prediction, color="C0", linewidth=2, label="model")
    axes.set_title(title)
    axes.legend()
    return figure


def set_log_scale(axes, values):
    """Use a log y axis with plain-number tick labels, such as 0.05 and 0.1.

    Over three decades or less the labels sit at 1, 2 and 5 times each power
    of ten, and over more at powers of ten only. The default labels are
    mathtext, whose parser setup added about 0.04 s to a run in
    benchmarks/bench_levers.py.
    """
    values = torch.as_tensor(values, dtype=torch.float64)
    values = values[torch.isfinite(values) & (values > 0)]
    decades = 0.0
    if len(values):
        decades = math.log10(values.max().item() / values.min().item())
    axes.set_yscale("log")
    if decades <= 3:
        axes.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    axes.yaxis.set_major_formatter("{x:g}")
    axes.yaxis.set_minor_formatter(NullFormatter())


def plot_loss(losses, noise):
    figure = new_figure()
    axes = figure.add_subplot()
    epochs = range(1, len(losses) + 1)
    axes.plot(epochs, losses, color="C0", label="training MSE")
    if noise > 0:
        axes.axhline(noise**2, color="k", linestyle="--", linewidth=1,
                     label=f"noise variance {noise**2:.3g}")
    set_log_scale(axes, [*losses, noise**2])
    axes.set_xlabel("epoch")
    axes.set_ylabel("MSE loss")
    axes.set_title("Training loss")
    axes.legend()
    return figure


def plot_comparison(name, x, y, grid, rows):
    figure = new_figure(columns=2)
    fit_axes, loss_axes = figure.subplots(1, 2)
    plot_data(fit_axes, x, y, grid)
    colors = [f"C{index}" for index in range(len(rows))]
    if len(rows) > 10:  # the default cycle repeats after ten colors
        colors = matplotlib.colormaps["viridis"](torch.linspace(0, 1, len(rows)))
    for row, color in zip(rows, colors):
        label = row["variant"]
        if row["diverged_at"] is not None:
            label += f" (diverged at epoch {row['diverged_at']})"
        else:
            fit_axes.plot(grid, row["prediction"], color=color, linewidth=2,
                          label=label)
        history = row["loss_history"]
        loss_axes.plot(range(1, len(history) + 1), history, color=color,
                       label=label)
    fit_axes.set_title(f"Fit by {name}")
    fit_axes.legend(fontsize="small")
    set_log_scale(loss_axes, [loss for row in rows for loss in row["loss_history"]])
    loss_axes.set_xlabel("epoch")
    loss_axes.set_ylabel("MSE loss")
    loss_axes.set_title("Training loss")
    loss_axes.legend(fontsize="small")
    return figure


def plot_seeds(x, y, grid, predictions, losses, seeds):
    """Plot the spread of the finite predictions and every seed's loss curve."""
    figure = new_figure(columns=2)
    fit_axes, loss_axes = figure.subplots(1, 2)
    plot_data(fit_axes, x, y, grid)
    if len(predictions):
        low = predictions.min(dim=0).values
        high = predictions.max(dim=0).values
        fit_axes.fill_between(grid.squeeze(1), low, high, color="C0", alpha=0.25,
                              label="lowest to highest prediction")
        fit_axes.plot(grid, predictions.median(dim=0).values, color="C0",
                      linewidth=2, label="median prediction")
    seed_range = f"seed {seeds[0]}" if len(seeds) == 1 else (
        f"{len(seeds)} seeds, {seeds[0]} to {seeds[-1]}")
    fit_axes.set_title(f"{seed_range} (data of seed {seeds[0]})")
    fit_axes.legend(fontsize="small")

    # A diverged seed's curve stops where its loss stopped being finite.
    losses = torch.where(torch.isfinite(losses), losses, torch.nan)
    epochs = range(1, losses.shape[0] + 1)
    loss_axes.plot(epochs, losses, color="C0", alpha=0.3, linewidth=0.8)
    loss_axes.plot(epochs, losses.nanmedian(dim=1).values, color="k",
                   linewidth=2, label="median")
    set_log_scale(loss_axes, losses.flatten())
    loss_axes.set_xlabel("epoch")
    loss_axes.set_ylabel("MSE loss")
    loss_axes.set_title("Training loss of every seed")
    loss_axes.legend()
    return figure


def write_temporary(path, write):
    """Call write(file) on a new temporary file beside path; return its name."""
    handle, temporary = tempfile.mkstemp(
        dir=os.path.dirname(os.path.abspath(path)),
        prefix=f".{os.path.basename(path)}.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
        # mkstemp creates the file readable by its owner only; give it the
        # permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
    except BaseException:
        os.unlink(temporary)
        raise
    return temporary


def write_atomic(path, write):
    """Call write(file) on a temporary file, then rename it onto path.

    Readers see the old file or the complete new one, never a partial file.
    """
    os.replace(write_temporary(path, write), path)


class OutputError(Exception):
    """An output file could not be written; printed as one line, exit code 1."""


def figure_writer(figure):
    """Return a writer that renders figure as PNG into a binary file."""

    def write(file):
        figure.savefig(file, format="png", dpi=100)
        figure.clear()

    return write


def json_writer(data):
    """Return a writer of data as JSON; NaN and inf raise, as JSON has neither."""
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    return lambda file: file.write(text.encode())


def write_files(folder, writers):
    """Write every file of writers, a {name: write(file)} dict, into folder.

    Each file goes to a temporary file first, and only when all of them are
    complete are they renamed into place, so a failure leaves the earlier
    outputs as they were. Returns the paths written; raises OutputError.
    """
    staged = []
    try:
        for name, write in writers.items():
            path = os.path.join(folder, name)
            if os.path.isdir(path):  # found now, before any file is replaced
                raise IsADirectoryError(errno.EISDIR, "is a folder", path)
            staged.append((write_temporary(path, write), path))
        for temporary, path in staged:
            os.replace(temporary, path)
    except OSError as error:
        raise OutputError(f"cannot write {error.filename or folder!r}: "
                          f"{error.strerror or error}") from None
    finally:
        for temporary, _ in staged:
            if os.path.exists(temporary):
                os.unlink(temporary)
    return [path for _, path in staged]


def show_figures(paths, say):
    """Open the saved PNGs in windows, where an interactive backend exists."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        say(f"--show: cannot open a window ({error}); the figures are saved.")
        return
    from matplotlib.backends import BackendFilter, backend_registry

    interactive = backend_registry.list_builtin(BackendFilter.INTERACTIVE)
    if matplotlib.get_backend().lower() not in interactive:
        say("--show: no display found; the figures are saved.")
        return
    for path in paths:
        plt.figure(os.path.basename(path))
        plt.imshow(plt.imread(path))
        plt.axis("off")
    plt.show()


# -- Command line ----------------------------------------------------------


class UsageError(Exception):
    """A user mistake in the arguments; printed as one line, exit code 2."""


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        if message.startswith("unrecognized arguments"):
            message += "; see --help for the flags"
        elif message.endswith("expected one argument"):
            # argparse reads a value such as -1e-3 as another flag.
            message += "; write a value that starts with '-' as --flag=VALUE"
        raise UsageError(message)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Append the default to each help line, except for unset flags."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def int_in(low, high):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer from {low} to {high}, got {text!r}"
            ) from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"must be from {low} to {high}, got {value}"
            )
        return value

    parse.__name__ = "integer"
    return parse


def float_in(low, high=math.inf, low_open=False):
    lower = f"above {low:g}" if low_open else f"at least {low:g}"
    upper = f" and at most {high:g}" if high < math.inf else ""
    accepted = f"a finite number {lower}{upper}"

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {accepted}, got {text!r}"
            ) from None
        too_low = value <= low if low_open else value < low
        if not math.isfinite(value) or too_low or value > high:
            raise argparse.ArgumentTypeError(f"must be {accepted}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


positive_float = float_in(0.0, low_open=True)


def build_parser():
    parser = ArgumentParser(
        description="Fit a small MLP to noisy sin(x) and plot the result.",
        formatter_class=HelpFormatter,
        allow_abbrev=False,
    )
    add = parser.add_argument
    add("--epochs", type=int_in(1, MAX_EPOCHS), default=690, metavar="N",
        help="full-batch training epochs")
    add("--lr", type=positive_float, default=0.01, metavar="RATE",
        help="learning rate")
    add("--optimizer", choices=OPTIMIZERS, default="adam",
        help=f"optimizer; sgd-momentum is SGD with momentum {SGD_MOMENTUM}")
    add("--activation", choices=tuple(ACTIVATIONS), default="relu",
        help="activation after each hidden layer; none makes the model linear")
    add("--hidden", type=int_in(1, MAX_HIDDEN), default=64, metavar="UNITS",
        help="width of both hidden layers, in units")
    add("--points", type=int_in(2, MAX_POINTS), default=100, metavar="N",
        help="number of training points on [-10, 10]")
    add("--noise", type=float_in(0.0, MAX_NOISE), default=0.3, metavar="STD",
        help="standard deviation of the Gaussian noise added to sin(x)")
    add("--grid-points", type=int_in(2, MAX_POINTS), default=300, metavar="N",
        help="number of prediction points on [-10, 10]")

    add("--scale-input", action="store_true",
        help="map x from [-10, 10] onto [-1, 1] before the first layer")
    add("--scheduler", choices=SCHEDULERS, default="none",
        help="learning-rate schedule: step is StepLR, which multiplies the rate "
             "by --gamma every --step-size epochs; plateau is ReduceLROnPlateau, "
             "which multiplies it by --gamma after --patience epochs without a "
             "lower training loss")
    add("--step-size", type=int_in(1, MAX_EPOCHS), default=200, metavar="EPOCHS",
        help="epochs between learning-rate drops for --scheduler step")
    add("--gamma", type=float_in(0.0, 1.0, low_open=True), default=0.5,
        metavar="FACTOR",
        help="factor applied to the learning rate at each drop")
    add("--patience", type=int_in(0, MAX_EPOCHS), default=20, metavar="EPOCHS",
        help="epochs without improvement before a drop for --scheduler plateau")

    add("--seed", type=int_in(0, MAX_SEED), default=0, metavar="N",
        help="seed for both the noise and the initial weights")
    add("--device", choices=("auto", "cpu", "cuda"), default="auto",
        help="where to train; auto picks cuda when it is available")
    add("--out-dir", default="outputs", metavar="DIR",
        help="folder for figures, metrics and model")
    add("--log-every", type=int_in(1, MAX_EPOCHS), default=100, metavar="EPOCHS",
        help="epochs between progress lines")
    add("--quiet", action="store_true", help="print no progress lines")
    add("--show", action="store_true",
        help="also open the figures in a window, where a display exists")

    add("--compare", choices=COMPARISONS,
        help="train one variant per value of this setting, from the same data "
             "and initial weights, and plot them together")
    add("--compare-values", metavar="LIST",
        help="comma-separated values for --compare, for example 0.1,0.01,0.001 "
             "for lr; defaults: "
             + "; ".join(f"{name} {','.join(map(str, values))}"
                         for name, values in DEFAULT_COMPARE_VALUES.items()))
    add("--seeds", type=int_in(1, MAX_SEEDS), metavar="N",
        help=f"train this many seeds, --seed onwards, in one batched pass and "
             f"plot their spread; 1 to {MAX_SEEDS}")
    return parser


def parse_compare_values(name, text):
    """Return the list of variant values for --compare name."""
    if text is None:
        return list(DEFAULT_COMPARE_VALUES[name])
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise UsageError(f"argument --compare-values: empty value in {text!r}")
    if name == "lr":
        try:
            values = [positive_float(item) for item in items]
        except argparse.ArgumentTypeError as error:
            raise UsageError(f"argument --compare-values: {error}") from None
    else:
        accepted = DEFAULT_COMPARE_VALUES[name]
        for item in items:
            if item not in accepted:
                raise UsageError(
                    f"argument --compare-values: invalid {name} {item!r}, "
                    f"choose from {', '.join(accepted)}"
                )
        values = items
    for index, value in enumerate(values):
        if value in values[:index]:
            raise UsageError(f"argument --compare-values: {items[index]} is "
                             f"listed twice in {text!r}; list each value once")
    return values


def parse_args(argv):
    """Parse and check every argument before any work; raise UsageError."""
    args = build_parser().parse_args(argv)
    if args.seeds is not None and args.compare is not None:
        raise UsageError("argument --seeds: cannot be combined with --compare; "
                         "run them separately")
    if args.seeds is not None and args.seed + args.seeds - 1 > MAX_SEED:
        raise UsageError(f"argument --seeds: --seed + --seeds - 1 must be at "
                         f"most {MAX_SEED}, got {args.seed + args.seeds - 1}")
    if args.seeds is not None and args.scheduler == "plateau":
        raise UsageError("argument --scheduler: plateau cannot be used with "
                         "--seeds because each seed would need its own learning "
                         "rate; use step or none")
    models = args.seeds or 1
    layer_values = max(args.points, args.grid_points) * args.hidden * models
    if layer_values > MAX_LAYER_VALUES:
        raise UsageError(
            f"arguments --points, --grid-points, --hidden and --seeds: one hidden "
            f"layer would hold {layer_values:,} values, above the limit of "
            f"{MAX_LAYER_VALUES:,}; lower one of them")
    if args.compare_values is not None and args.compare is None:
        raise UsageError("argument --compare-values: needs --compare")
    if args.compare is not None:
        args.compare_values = parse_compare_values(args.compare, args.compare_values)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("argument --device: cuda is not available on this "
                         "machine; use --device cpu or auto")
    return args


def prepare_out_dir(path):
    """Create the output folder with its parents and check that it is writable.

    Returns the folders that were created, outermost first, so that they can
    be removed again when the run writes nothing.
    """
    created = []
    folder = os.path.abspath(path)
    while not os.path.lexists(folder):
        created.insert(0, folder)
        folder = os.path.dirname(folder)
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        remove_empty_folders(created)
        reason = error.strerror or str(error)
        raise UsageError(f"argument --out-dir: cannot write to {path!r} "
                         f"({reason}); choose another folder") from None
    return created


def remove_empty_folders(folders):
    """Remove folders, innermost first, up to the first one that is not empty."""
    for folder in reversed(folders):
        if not os.path.isdir(folder):
            continue
        try:
            os.rmdir(folder)
        except OSError:
            return


def pick_device(name):
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def settings_of(args):
    keys = ("epochs", "lr", "optimizer", "activation", "hidden", "points", "noise",
            "grid_points", "scale_input", "scheduler", "step_size", "gamma",
            "patience", "seed")
    return {key: getattr(args, key) for key in keys}


def versions():
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "matplotlib": matplotlib.__version__,
    }


# -- Runs ------------------------------------------------------------------


def fit_once(args, device, x, y, grid, initial_state=None, log=None, **overrides):
    """Train one model on x, y and predict on grid; return (model, result, prediction).

    overrides replaces any of lr, optimizer, activation, scheduler and
    scale_input from args. With initial_state the model starts from those
    weights instead of the ones drawn from args.seed.
    """
    setting = {key: getattr(args, key)
               for key in ("lr", "optimizer", "activation", "scheduler", "scale_input")}
    setting.update(overrides)
    model = make_model(args.seed, args.hidden, setting["activation"])
    if initial_state is not None:
        model.load_state_dict(initial_state)
    model.to(device)
    if setting["scale_input"]:
        x, grid = scale_input(x), scale_input(grid)
    optimizer = make_optimizer(setting["optimizer"], model.parameters(),
                               setting["lr"], device)
    scheduler = make_scheduler(setting["scheduler"], optimizer, args.step_size,
                               args.gamma, args.patience)
    result = train(model, x.to(device), y.to(device), optimizer, args.epochs,
                   scheduler, args.log_every, log)
    prediction = predict(model, grid.to(device)).cpu()
    if result.diverged_at is None and not torch.isfinite(prediction).all():
        # The last step made the weights NaN or inf after its loss was taken.
        result.diverged_at = result.epochs_run
    return model, result, prediction


def divergence_message(event, hint):
    return (f"fit_sine.py: error: {event}: the loss or the weights became NaN or "
            f"infinite; {hint}. No files were written.")


def run_single(args, device, say, log):
    x, y = make_data(args.points, args.noise, args.seed)
    grid = make_grid(args.grid_points)
    model, result, prediction = fit_once(args, device, x, y, grid, log=log)
    if result.diverged_at is not None:
        say(divergence_message(f"training diverged at epoch {result.diverged_at}",
                               f"try a smaller --lr than {args.lr:g}"), error=True)
        return EXIT_DIVERGED

    mse = mse_against_sine(grid, prediction).item()
    final_loss = result.losses[-1]
    metrics = {
        "settings": settings_of(args),
        "seed": args.seed,
        "device": str(device),
        "epochs_run": result.epochs_run,
        "interrupted": result.interrupted,
        "final_loss": final_loss,
        "mse_vs_sin": mse,
        "noise_floor": args.noise**2,
        "train_seconds": result.seconds,
        "loss_history": result.losses,
        "grid": grid.squeeze(1).tolist(),
        "prediction": prediction.tolist(),
        "versions": versions(),
    }
    title = (f"BalancedMLP after {epochs_text(result.epochs_run)}: "
             f"loss {final_loss:.4f}, MSE vs sin(x) {mse:.4f}")
    state = {name: tensor.cpu() for name, tensor in model.state_dict().items()}
    paths = write_files(args.out_dir, {
        "fit.png": figure_writer(plot_fit(x, y, grid, prediction, title)),
        "loss.png": figure_writer(plot_loss(result.losses, args.noise)),
        "metrics.json": json_writer(metrics),
        "model.pt": lambda file: torch.save(state, file),
    })

    status = "interrupted after" if result.interrupted else "trained"
    say(f"{status} {epochs_text(result.epochs_run)} in {result.seconds:.2f} s: "
        f"final loss {final_loss:.4f}, MSE vs sin(x) {mse:.4f}; "
        f"wrote {', '.join(paths)}")
    if args.show:
        show_figures(paths[:2], say)
    return EXIT_INTERRUPTED if result.interrupted else EXIT_OK


def epochs_text(count):
    return f"{count} epoch" if count == 1 else f"{count} epochs"


def variant_overrides(name, value):
    if name == "input":
        return {"scale_input": value == "scaled"}
    return {name: value}


def run_compare(args, device, say, log):
    name = args.compare
    x, y = make_data(args.points, args.noise, args.seed)
    grid = make_grid(args.grid_points)
    # Every variant starts from these weights; only the compared setting differs.
    initial_state = make_model(args.seed, args.hidden).state_dict()
    rows = []
    for value in args.compare_values:
        label = f"{name}={value}" if name == "lr" else str(value)
        say(f"training {label}")
        model, result, prediction = fit_once(
            args, device, x, y, grid, initial_state, log,
            **variant_overrides(name, value))
        if result.interrupted:
            say("interrupted; no comparison files were written.", error=True)
            return EXIT_INTERRUPTED
        diverged = result.diverged_at is not None
        row = {
            "variant": label,
            "value": value,
            "epochs_run": result.epochs_run,
            "diverged_at": result.diverged_at,
            "final_loss": None if diverged else result.losses[-1],
            "mse_vs_sin": None if diverged else mse_against_sine(grid, prediction).item(),
            "train_seconds": result.seconds,
            # A diverged variant's curve stops at the last finite loss.
            "loss_history": result.finite_losses,
            "prediction": None if diverged else prediction.tolist(),
        }
        if name == "activation" and value == "none" and not diverged:
            x_in = scale_input(x) if args.scale_input else x
            row["collapsed_line"] = dict(zip(("slope", "intercept"),
                                             collapsed_line(model.cpu())))
            row["least_squares_line"] = dict(zip(("slope", "intercept"),
                                                 least_squares_line(x_in, y)))
        rows.append(row)

    print_compare_table(rows, say)
    if all(row["diverged_at"] is not None for row in rows):
        first = min(row["diverged_at"] for row in rows)
        hint = ("try smaller values in --compare-values" if name == "lr"
                else f"try a smaller --lr than {args.lr:g}")
        say(divergence_message(f"every variant diverged, the first at epoch {first}",
                               hint), error=True)
        return EXIT_DIVERGED
    settings = settings_of(args)
    # The variants replace the compared setting's own flag.
    del settings["scale_input" if name == "input" else name]
    report = {"compare": name, "settings": settings, "device": str(device),
              "variants": rows, "versions": versions()}
    paths = write_files(args.out_dir, {
        f"compare_{name}.png": figure_writer(plot_comparison(name, x, y, grid, rows)),
        f"compare_{name}.json": json_writer(report),
    })
    say(f"wrote {', '.join(paths)}")
    if args.show:
        show_figures(paths[:1], say)
    return EXIT_OK


def print_compare_table(rows, say):
    say(f"{'variant':<22} {'final loss':>12} {'MSE vs sin':>12} {'seconds':>8}")
    for row in rows:
        if row["diverged_at"] is not None:
            result = f"{'diverged at epoch ' + str(row['diverged_at']):>25}"
        else:
            result = f"{row['final_loss']:>12.5f} {row['mse_vs_sin']:>12.5f}"
        say(f"{row['variant']:<22} {result} {row['train_seconds']:>8.3f}")
        if "collapsed_line" in row:
            line, fit = row["collapsed_line"], row["least_squares_line"]
            say(f"  network collapses to y = {line['slope']:.5f} x "
                f"{line['intercept']:+.5f}; least squares: "
                f"y = {fit['slope']:.5f} x {fit['intercept']:+.5f}")


def summarize_seeds(seeds, losses, mses):
    """Return one record per seed and the median, min and max over the finite ones.

    losses is (epochs, seeds) and mses has one MSE against sin(x) per seed.
    """
    runs = []
    for index, seed in enumerate(seeds):
        bad_epochs = (~torch.isfinite(losses[:, index])).nonzero()
        diverged_at = None
        if len(bad_epochs):
            diverged_at = int(bad_epochs[0]) + 1
        elif not math.isfinite(mses[index]):
            # The last step made the weights NaN or inf after its loss was taken.
            diverged_at = len(losses)
        diverged = diverged_at is not None
        runs.append({
            "seed": seed,
            "diverged_at": diverged_at,
            "final_loss": None if diverged else losses[-1, index].item(),
            "mse_vs_sin": None if diverged else mses[index].item(),
        })
    finite = [run for run in runs if run["final_loss"] is not None]
    summary = {}
    for key in ("final_loss", "mse_vs_sin"):
        values = [run[key] for run in finite]
        summary[key] = {
            # statistics.median averages the middle two of an even count,
            # where torch.median would return the lower one.
            "median": statistics.median(values) if values else None,
            "min": min(values, default=None),
            "max": max(values, default=None),
        }
    return runs, summary


def run_seeds(args, device, say, log):
    seeds = list(range(args.seed, args.seed + args.seeds))
    data = [make_data(args.points, args.noise, seed) for seed in seeds]
    x = data[0][0]
    ys = torch.stack([y for _, y in data])
    grid = make_grid(args.grid_points)
    x_in, grid_in = x, grid
    if args.scale_input:
        x_in, grid_in = scale_input(x), scale_input(grid)
    # Each seed's initial weights are drawn exactly as a single run draws them.
    models = [make_model(seed, args.hidden, args.activation) for seed in seeds]
    model = StackedMLP(models).to(device)
    optimizer = make_optimizer(args.optimizer, model.parameters(), args.lr, device)
    scheduler = make_scheduler(args.scheduler, optimizer, args.step_size,
                               args.gamma, args.patience)
    result = train_batched(model, x_in.to(device), ys.to(device), optimizer,
                           args.epochs, scheduler, args.log_every, log)
    if result.interrupted:
        say("interrupted; no seed files were written.", error=True)
        return EXIT_INTERRUPTED

    predictions = predict(model, grid_in.to(device)).cpu()  # (seeds, grid points)
    losses = torch.tensor(result.losses)  # (epochs, seeds)
    runs, summary = summarize_seeds(seeds, losses, mse_against_sine(grid, predictions))
    diverged = [run for run in runs if run["final_loss"] is None]
    if len(diverged) == len(runs):
        first = min(run["diverged_at"] for run in runs)
        say(divergence_message(f"every seed diverged, the first at epoch {first}",
                               f"try a smaller --lr than {args.lr:g}"), error=True)
        return EXIT_DIVERGED

    finite = torch.tensor([run["final_loss"] is not None for run in runs])
    report = {"seeds": seeds, "settings": settings_of(args), "device": str(device),
              "train_seconds": result.seconds, "runs": runs, "summary": summary,
              "versions": versions()}
    figure = plot_seeds(x, data[0][1], grid, predictions[finite], losses, seeds)
    paths = write_files(args.out_dir, {
        "seeds.png": figure_writer(figure),
        "seeds.json": json_writer(report),
    })

    plural = "s" if len(seeds) > 1 else ""
    say(f"trained {len(seeds)} seed{plural} in one batched pass in "
        f"{result.seconds:.2f} s")
    for key, label in (("final_loss", "final loss"), ("mse_vs_sin", "MSE vs sin(x)")):
        stats = summary[key]
        say(f"  {label:<14} median {stats['median']:.5f}  "
            f"min {stats['min']:.5f}  max {stats['max']:.5f}")
    if diverged:
        listed = ", ".join(f"{run['seed']} (epoch {run['diverged_at']})"
                           for run in diverged)
        say(f"  diverged, left out of the summary: seeds {listed}")
    say(f"wrote {', '.join(paths)}")
    if args.show:
        show_figures(paths[:1], say)
    return EXIT_OK


def main(argv=None):
    """Run the script with command-line arguments argv; return the exit code."""

    def say(message, error=False):
        stream = sys.stderr if error else sys.stdout
        try:
            print(message, file=stream, flush=True)
        except OSError:
            # The reader has gone, as with `| head`, or the stream is full:
            # finish the run without printing, and keep Python's exit-time
            # flush from failing too.
            os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())

    # Ctrl-C outside training raises KeyboardInterrupt, handled below; this
    # undoes the quiet exit that the script sets while it imports.
    with contextlib.suppress(ValueError):  # only the main thread may set it
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        args = parse_args(argv)
        created = prepare_out_dir(args.out_dir)
    except UsageError as error:
        say(f"fit_sine.py: error: {error}", error=True)
        return EXIT_USAGE

    device = pick_device(args.device)
    log = None if args.quiet else say
    say(f"device: {device}")
    if device.type == "cpu" and args.seeds is None:
        # Each op of a single model works on a few thousand numbers, so a
        # second thread costs more in hand-off than it saves. Batched seeds
        # have N times larger tensors and keep torch's default.
        torch.set_num_threads(1)
    if args.compare is not None:
        run = run_compare
    elif args.seeds is not None:
        run = run_seeds
    else:
        run = run_single
    try:
        code = run(args, device, say, log)
    except OutputError as error:
        say(f"fit_sine.py: error: {error}; fix that or choose another --out-dir. "
            f"The earlier outputs there are unchanged.", error=True)
        code = EXIT_WRITE_FAILED
    except KeyboardInterrupt:
        say("interrupted", error=True)
        code = EXIT_INTERRUPTED
    if code != EXIT_OK:
        # Leave no empty folder behind from a run that wrote nothing.
        remove_empty_folders(created)
    return code


if __name__ == "__main__":
    # The objects made by importing torch and matplotlib live until exit.
    # Freezing them keeps each full garbage collection from scanning them
    # again: it cut a default run from about 4.4 s to 3.7 s on the 2-core
    # machine of BENCHMARKS.md.
    gc.freeze()
    sys.exit(main())
