"""End-to-end and unit tests for the tutorial's single run."""

import json
import math
import os
import platform
import queue
import re
import signal
import stat
import subprocess
import sys
import threading
import time

import matplotlib
import pytest
import torch

from conftest import SCRIPT, SUBPROCESS_TIMEOUT_S

OUTPUT_FILES = ("fit.png", "loss.png", "metrics.json", "model.pt")
DEFAULT_EPOCHS = 690
EXPECTED_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# Measured with the default config (Adam, lr 0.01, 690 epochs, ReLU, hidden
# 64) on the CPU with one thread and torch 2.13.0, over seeds 0-9:
# - mse_vs_sin ranged from 0.024 to 0.198 (seed 0: 0.033).
# - The final loss was 0.055 to 0.41 times the first epoch's (seed 0: 0.074).
# - The least-squares line had an MSE of 0.459 to 0.463 against sin(x).
# The thresholds below clear the worst of those seeds, so the check on the
# default seed 0 does not rely on seed 0 being a lucky draw.
MAX_MSE_VS_SIN = 0.25
MAX_FINAL_TO_FIRST_LOSS = 0.5
MIN_LINEAR_MSE_VS_SIN = 0.4


# -- Default run end to end --------------------------------------------------


def test_default_run_exits_zero(default_run):
    assert default_run.code == 0, default_run.stderr


def test_default_run_writes_no_stderr(default_run):
    assert default_run.stderr == ""


@pytest.mark.parametrize("name", ["fit.png", "loss.png"])
def test_default_run_png_is_drawn(default_run, check_png_drawn, name):
    check_png_drawn(default_run.out_dir / name)


def test_default_run_metrics_keys(default_run):
    expected = {
        "settings", "seed", "device", "epochs_run", "final_loss", "mse_vs_sin",
        "noise_floor", "train_seconds", "loss_history", "interrupted", "versions",
        "grid", "prediction",
    }
    missing = expected - set(default_run.metrics)
    assert not missing, f"metrics.json lacks {sorted(missing)}"


@pytest.mark.parametrize(
    "key, value",
    [
        ("epochs", 690),
        ("lr", 0.01),
        ("optimizer", "adam"),
        ("activation", "relu"),
        ("hidden", 64),
        ("points", 100),
        ("noise", 0.3),
        ("grid_points", 300),
        ("seed", 0),
        ("scale_input", False),
        ("scheduler", "none"),
    ],
)
def test_default_run_settings_are_tutorial(default_run, key, value):
    assert default_run.metrics["settings"][key] == value


@pytest.mark.parametrize(
    "key, value",
    [
        ("seed", 0),
        ("device", EXPECTED_DEVICE),
        ("epochs_run", DEFAULT_EPOCHS),
        ("interrupted", False),
    ],
)
def test_default_run_metrics_values(default_run, key, value):
    assert default_run.metrics[key] == value


def test_default_run_noise_floor_is_variance(default_run):
    assert default_run.metrics["noise_floor"] == pytest.approx(0.3**2, rel=1e-12)


def test_default_run_train_seconds_is_number(default_run):
    seconds = default_run.metrics["train_seconds"]
    assert isinstance(seconds, float)
    assert math.isfinite(seconds)


@pytest.mark.parametrize(
    "key, expected",
    [
        ("python", platform.python_version()),
        ("torch", torch.__version__),
        ("matplotlib", matplotlib.__version__),
    ],
)
def test_default_run_versions(default_run, key, expected):
    assert default_run.metrics["versions"][key] == expected


def test_default_run_loss_history_length(default_run):
    assert len(default_run.metrics["loss_history"]) == DEFAULT_EPOCHS


def test_default_run_loss_history_finite_floats(default_run):
    history = default_run.metrics["loss_history"]
    bad = [value for value in history
           if not isinstance(value, float) or not math.isfinite(value)]
    assert bad == []


def test_default_run_final_loss_is_last(default_run):
    metrics = default_run.metrics
    assert metrics["final_loss"] == metrics["loss_history"][-1]


def test_default_run_grid_is_linspace(default_run):
    grid = torch.tensor(default_run.metrics["grid"], dtype=torch.float32)
    expected = torch.linspace(-10.0, 10.0, 300)
    assert torch.equal(grid, expected)


def test_default_run_mse_matches_prediction(default_run):
    metrics = default_run.metrics
    grid = torch.tensor(metrics["grid"], dtype=torch.float64)
    prediction = torch.tensor(metrics["prediction"], dtype=torch.float64)
    mse = torch.mean((prediction - torch.sin(grid)) ** 2).item()
    assert mse == pytest.approx(metrics["mse_vs_sin"], rel=1e-5)


def test_model_pt_reproduces_prediction(fit_sine, default_run):
    state = torch.load(default_run.out_dir / "model.pt", weights_only=True)
    model = fit_sine.BalancedMLP()
    model.load_state_dict(state)
    grid = torch.tensor(default_run.metrics["grid"]).unsqueeze(1)
    prediction = fit_sine.predict(model, grid)
    expected = torch.tensor(default_run.metrics["prediction"])
    torch.testing.assert_close(prediction, expected, rtol=1e-5, atol=1e-6)


def test_default_run_leaves_only_outputs(default_run):
    # write_atomic writes ".<name>.<random>.tmp" next to each output first.
    assert sorted(os.listdir(default_run.out_dir)) == sorted(OUTPUT_FILES)


@pytest.mark.parametrize("name", OUTPUT_FILES)
def test_default_run_file_mode_under_umask(default_run, name):
    # The run used umask 022, under which open() creates files as 0644.
    mode = stat.S_IMODE(os.stat(default_run.out_dir / name).st_mode)
    assert mode == 0o644, f"{name} has mode {oct(mode)}"


# -- Learning ------------------------------------------------------------------


def test_default_run_loss_drops(default_run):
    history = default_run.metrics["loss_history"]
    assert history[-1] < MAX_FINAL_TO_FIRST_LOSS * history[0]


def test_default_run_fits_sine(default_run):
    assert default_run.metrics["mse_vs_sin"] < MAX_MSE_VS_SIN


def test_default_run_beats_linear_fit(fit_sine, default_run):
    x, y = fit_sine.make_data(seed=0)
    slope, intercept = fit_sine.least_squares_line(x, y)
    grid = fit_sine.make_grid()
    line = (slope * grid + intercept).squeeze(1)
    linear_mse = fit_sine.mse_against_sine(grid, line).item()

    assert linear_mse > MIN_LINEAR_MSE_VS_SIN
    # Every seed 0-9 had an MSE under 0.43 of the line's, seed 0 under 0.08.
    assert default_run.metrics["mse_vs_sin"] < linear_mse / 2


# -- Data, model and prediction units -----------------------------------------


@pytest.mark.parametrize("index", [0, 1])
def test_make_data_shape_and_dtype(fit_sine, index):
    tensor = fit_sine.make_data(points=100, noise=0.3, seed=0)[index]
    assert tensor.shape == (100, 1)
    assert tensor.dtype == torch.float32


def test_make_data_x_is_linspace(fit_sine):
    x, _ = fit_sine.make_data(points=100, noise=0.3, seed=0)
    assert torch.equal(x.squeeze(1), torch.linspace(-10.0, 10.0, 100))


def test_make_data_noise_has_scale(fit_sine):
    # Seed 0 gives 0.309. For 100 draws of 0.3 * N(0, 1), the sample std has
    # a standard error of about 0.021, so the bounds are 4.7 of those away.
    x, y = fit_sine.make_data(points=100, noise=0.3, seed=0)
    residual_std = (y - torch.sin(x)).std().item()
    assert 0.2 < residual_std < 0.4


def test_make_data_zero_noise_is_sine(fit_sine):
    x, y = fit_sine.make_data(points=100, noise=0.0, seed=0)
    assert torch.equal(y, torch.sin(x))


def test_make_grid_shape_and_range(fit_sine):
    grid = fit_sine.make_grid(300)
    assert grid.shape == (300, 1)
    assert torch.equal(grid.squeeze(1), torch.linspace(-10.0, 10.0, 300))


def test_scale_input_maps_to_unit(fit_sine):
    scaled = fit_sine.scale_input(torch.tensor([-10.0, 0.0, 5.0, 10.0]))
    assert torch.equal(scaled, torch.tensor([-1.0, 0.0, 0.5, 1.0]))


def test_balanced_mlp_parameter_count(fit_sine):
    model = fit_sine.BalancedMLP()
    assert sum(p.numel() for p in model.parameters()) == 4353


def test_balanced_mlp_layer_order(fit_sine):
    layers = list(fit_sine.BalancedMLP().net)
    described = [
        (type(layer).__name__, getattr(layer, "in_features", None),
         getattr(layer, "out_features", None))
        for layer in layers
    ]
    assert described == [
        ("Linear", 1, 64),
        ("ReLU", None, None),
        ("Linear", 64, 64),
        ("ReLU", None, None),
        ("Linear", 64, 1),
    ]


def test_model_output_matches_target_shape(fit_sine):
    # MSELoss broadcasts a (100,) prediction against a (100, 1) target with a
    # UserWarning, which pytest.ini turns into an error.
    x, y = fit_sine.make_data(seed=0)
    model = fit_sine.make_model(0)
    assert model(x).shape == y.shape


@pytest.fixture
def prediction(fit_sine):
    model = fit_sine.make_model(0)
    return fit_sine.predict(model, fit_sine.make_grid(300))


def test_predict_output_shape(prediction):
    assert prediction.shape == (300,)


def test_predict_output_has_no_grad(prediction):
    assert not prediction.requires_grad


def test_predict_output_is_finite(prediction):
    assert bool(torch.isfinite(prediction).all())


# -- Reproducibility -----------------------------------------------------------


def run_history(run_main, out_dir, seed):
    code, _, stderr = run_main(
        ["--out-dir", out_dir, "--quiet", "--device", "cpu", "--epochs", 40,
         "--seed", seed]
    )
    assert code == 0, stderr
    return json.loads((out_dir / "metrics.json").read_text())["loss_history"]


def test_same_seed_identical_history(run_main, tmp_path):
    first = run_history(run_main, tmp_path / "first", seed=0)
    second = run_history(run_main, tmp_path / "second", seed=0)
    assert first == second


def test_other_seed_different_history(run_main, tmp_path):
    seed_0 = run_history(run_main, tmp_path / "seed0", seed=0)
    seed_1 = run_history(run_main, tmp_path / "seed1", seed=1)
    assert seed_0 != seed_1


# -- Console output ------------------------------------------------------------

PROGRESS_LINE = re.compile(
    r"^epoch +(?P<done>\d+)/(?P<total>\d+)  loss (?P<loss>\d+\.\d{6})  "
    r"elapsed +\d+\.\d{2} s$"
)


@pytest.fixture
def verbose_run(run_main, tmp_path):
    out_dir = tmp_path / "out"
    code, stdout, stderr = run_main(
        ["--out-dir", out_dir, "--device", "cpu", "--epochs", 50, "--log-every", 10]
    )
    return code, stdout.splitlines(), stderr, out_dir


def test_console_prints_device_once(verbose_run):
    _, lines, _, _ = verbose_run
    assert lines.count("device: cpu") == 1


def test_console_progress_every_log_every(verbose_run):
    _, lines, _, _ = verbose_run
    epochs = [int(match["done"]) for match in map(PROGRESS_LINE.match, lines)
              if match]
    assert epochs == [10, 20, 30, 40, 50]


def test_console_progress_names_total(verbose_run):
    _, lines, _, _ = verbose_run
    totals = {match["total"] for match in map(PROGRESS_LINE.match, lines) if match}
    assert totals == {"50"}


def test_console_no_unexpected_lines(verbose_run):
    _, lines, _, _ = verbose_run
    # device, five progress lines, then the summary.
    assert len(lines) == 7, lines


@pytest.mark.parametrize("name", OUTPUT_FILES)
def test_console_summary_names_file(verbose_run, name):
    _, lines, _, out_dir = verbose_run
    assert str(out_dir / name) in lines[-1]


def test_console_summary_reports_epochs(verbose_run):
    _, lines, _, _ = verbose_run
    assert lines[-1].startswith("trained 50 epochs in ")


def test_console_quiet_drops_progress(run_main, tmp_path):
    code, stdout, _ = run_main(
        ["--out-dir", tmp_path / "out", "--quiet", "--device", "cpu",
         "--epochs", 50, "--log-every", 10]
    )
    assert code == 0
    assert [line for line in stdout.splitlines() if line.startswith("epoch")] == []
    assert len(stdout.splitlines()) == 2


# -- Atomic writes -------------------------------------------------------------


def test_write_atomic_failure_keeps_old_file(fit_sine, tmp_path):
    path = tmp_path / "metrics.json"
    path.write_bytes(b"old")

    def fail_halfway(file):
        file.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        fit_sine.write_atomic(str(path), fail_halfway)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_write_atomic_replaces_file(fit_sine, tmp_path):
    path = tmp_path / "metrics.json"
    path.write_bytes(b"old")
    fit_sine.write_atomic(str(path), lambda file: file.write(b"new"))
    assert path.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["metrics.json"]


# -- Divergence ----------------------------------------------------------------

DIVERGING_ARGS = ["--optimizer", "sgd", "--lr", 10, "--device", "cpu", "--quiet"]


def test_train_sgd_lr_10_diverges(fit_sine):
    # Precondition for the tests below: on seed 0 the loss goes from 0.79 to
    # 3.4e7 and then inf at epoch 3.
    x, y = fit_sine.make_data(seed=0)
    model = fit_sine.make_model(0)
    optimizer = fit_sine.make_optimizer("sgd", model.parameters(), 10.0,
                                        torch.device("cpu"))
    result = fit_sine.train(model, x, y, optimizer, 100)
    assert result.diverged_at is not None
    assert result.diverged_at <= 10


@pytest.fixture
def diverged_run(run_main, tmp_path):
    out_dir = tmp_path / "out"
    code, stdout, stderr = run_main(["--out-dir", out_dir, *DIVERGING_ARGS])
    return code, stdout, stderr, out_dir


def test_diverged_run_exits_three(diverged_run):
    code, _, stderr, _ = diverged_run
    assert code == 3, stderr


def test_diverged_run_one_stderr_line(diverged_run):
    _, _, stderr, _ = diverged_run
    assert len(stderr.splitlines()) == 1, stderr


def test_diverged_run_names_epoch(diverged_run):
    _, _, stderr, _ = diverged_run
    assert re.search(r"at epoch \d+", stderr), stderr


def test_diverged_run_suggests_smaller_lr(diverged_run):
    _, _, stderr, _ = diverged_run
    assert "smaller --lr" in stderr


def test_diverged_run_writes_nothing(diverged_run):
    _, _, _, out_dir = diverged_run
    # prepare_out_dir creates the folder before training, so it exists empty.
    assert not out_dir.exists() or os.listdir(out_dir) == []


def test_diverged_run_keeps_earlier_outputs(run_main, tmp_path):
    out_dir = tmp_path / "out"
    code, _, stderr = run_main(
        ["--out-dir", out_dir, "--quiet", "--device", "cpu", "--epochs", 20]
    )
    assert code == 0, stderr
    before = {name: (out_dir / name).read_bytes() for name in os.listdir(out_dir)}

    code, _, stderr = run_main(["--out-dir", out_dir, *DIVERGING_ARGS])
    after = {name: (out_dir / name).read_bytes() for name in os.listdir(out_dir)}

    assert code == 3, stderr
    assert sorted(before) == sorted(OUTPUT_FILES)
    assert after == before


# -- Real processes: Ctrl-C and --show ------------------------------------------


def read_lines(stream, lines):
    for line in stream:
        lines.put(line)
    lines.put(None)


def test_sigint_saves_partial_run(tmp_path):
    out_dir = tmp_path / "out"
    epochs = 200_000
    # Without PYTHONUNBUFFERED, stdout to a pipe is block-buffered (8 KiB in
    # Python 3.11). All 100 progress lines at --log-every 2000 fit in about
    # 5 KiB, so if the script did not flush them, none would arrive before
    # the run ended with exit code 0.
    env = {key: value for key, value in os.environ.items()
           if key != "PYTHONUNBUFFERED"}
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--out-dir", str(out_dir), "--device", "cpu",
         "--epochs", str(epochs), "--log-every", "2000"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = queue.Queue()
        reader = threading.Thread(target=read_lines, args=(proc.stdout, lines),
                                  daemon=True)
        reader.start()
        deadline = time.monotonic() + SUBPROCESS_TIMEOUT_S
        seen = []
        while not any(line.startswith("epoch") for line in seen):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no progress line before the deadline: {seen}"
            line = lines.get(timeout=remaining)
            assert line is not None, f"stdout closed before a progress line: {seen}"
            seen.append(line)

        # The first progress line is printed inside training, where the
        # script's SIGINT handler is installed.
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=SUBPROCESS_TIMEOUT_S)
        reader.join(timeout=SUBPROCESS_TIMEOUT_S)
        stderr = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()

    assert code == 130, stderr
    assert "Traceback" not in stderr
    assert sorted(os.listdir(out_dir)) == sorted(OUTPUT_FILES)

    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["interrupted"] is True
    assert metrics["epochs_run"] < epochs
    assert metrics["epochs_run"] == len(metrics["loss_history"])
    assert metrics["epochs_run"] >= 2000


def test_show_without_display_succeeds(run_script, tmp_path):
    env = {key: value for key, value in os.environ.items()
           if key not in ("MPLBACKEND", "DISPLAY", "WAYLAND_DISPLAY")}
    out_dir = tmp_path / "out"
    result = run_script(
        ["--out-dir", out_dir, "--quiet", "--device", "cpu", "--epochs", 20,
         "--show"],
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "figures are saved" in result.stdout
    assert "Traceback" not in result.stderr
    assert sorted(os.listdir(out_dir)) == sorted(OUTPUT_FILES)
