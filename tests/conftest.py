"""Shared fixtures: the script as a module, real runs of it, and PNG checks."""

import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import matplotlib.image
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "fit_sine.py"

# A subprocess spends 2-4 s importing torch and matplotlib before it trains.
SUBPROCESS_TIMEOUT_S = 120

# Thresholds for "the PNG shows a plot", measured on the script's figures with
# matplotlib 3.11.2. The RGB std is 0.0 for a blank canvas, 0.09 for an axes
# box with labels but no data, and 0.12 to 0.16 for fit.png, loss.png,
# compare_*.png and seeds.png. Colored pixels (channel spread above 0.2) come
# only from plotted data: none in the empty axes box, and a fraction of
# 0.005 to 0.04 in the script's figures.
MIN_PIXEL_STD = 0.05
MIN_COLORED_FRACTION = 0.001


def load_fit_sine():
    """Import fit_sine.py from the repository root as the module fit_sine."""
    if "fit_sine" in sys.modules:
        return sys.modules["fit_sine"]
    spec = importlib.util.spec_from_file_location("fit_sine", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["fit_sine"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def fit_sine():
    return load_fit_sine()


def call_main(module, argv, umask=None):
    """Run module.main(argv) in this process; return (exit code, stdout, stderr)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    previous_umask = os.umask(umask) if umask is not None else None
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = module.main([str(arg) for arg in argv])
    finally:
        if previous_umask is not None:
            os.umask(previous_umask)
    return code, stdout.getvalue(), stderr.getvalue()


@pytest.fixture
def run_main(fit_sine):
    """Return a function that runs fit_sine.main(argv) and captures its output."""

    def run(argv, umask=None):
        return call_main(fit_sine, argv, umask)

    return run


@pytest.fixture
def run_script(tmp_path):
    """Return a function that runs `python fit_sine.py argv` as a subprocess.

    The working directory is a temporary folder, so a run that ignored
    --out-dir could not write into the repository's outputs/.
    """

    def run(argv, env=None):
        return subprocess.run(
            [sys.executable, str(SCRIPT), *map(str, argv)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_TIMEOUT_S,
        )

    return run


@pytest.fixture(scope="session")
def default_run(fit_sine, tmp_path_factory):
    """Run the tutorial's defaults once, under umask 022, for the whole session.

    Returns a namespace with code, stdout, stderr, out_dir and metrics (the
    parsed metrics.json, or None when the run wrote none).
    """
    out_dir = tmp_path_factory.mktemp("default") / "out"
    code, stdout, stderr = call_main(
        fit_sine, ["--out-dir", out_dir, "--quiet"], umask=0o022
    )
    metrics_path = out_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else None
    return types.SimpleNamespace(
        code=code, stdout=stdout, stderr=stderr, out_dir=out_dir, metrics=metrics
    )


def _check_png_drawn(path):
    image = matplotlib.image.imread(path)
    assert image.ndim == 3, f"{path} decoded to shape {image.shape}, not an RGB(A) image"

    rgb = image[..., :3]
    pixel_std = float(rgb.std())
    assert pixel_std > MIN_PIXEL_STD, f"{path} looks blank: RGB std {pixel_std:.4f}"

    channel_spread = rgb.max(axis=2) - rgb.min(axis=2)
    colored_fraction = float((channel_spread > 0.2).mean())
    assert colored_fraction > MIN_COLORED_FRACTION, (
        f"{path} has axes but no plotted data: "
        f"colored fraction {colored_fraction:.5f}"
    )


@pytest.fixture(scope="session")
def check_png_drawn():
    """Return a function that decodes a PNG and asserts that it shows a plot."""
    return _check_png_drawn
