"""Run the benchmarks in --quick mode as real processes so that they keep working.

The checks cover exit codes, row labels and that each ratio is a number. They
assert no timings, because a shared machine's timings vary too much.
"""

import importlib.util
import os
import re
import subprocess
import sys

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.layout_engine import ConstrainedLayoutEngine

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS_DIR = os.path.join(REPO_ROOT, "benchmarks")
BENCHMARKS_MD = os.path.join(REPO_ROOT, "BENCHMARKS.md")
HAVE_SKLEARN = importlib.util.find_spec("sklearn") is not None
# A quick run took about 15 s on a 2-core machine. The limit only stops a
# hung benchmark.
TIMEOUT_S = 300

sys.path.insert(0, BENCHMARKS_DIR)
import bench_common  # noqa: E402
import bench_levers  # noqa: E402


def run_benchmark(script, *args, python_code=None):
    """Run benchmarks/script with args from the repo root; return CompletedProcess.

    With python_code, the interpreter runs that code instead, and the code
    gets the script's path and args in sys.argv.
    """
    path = os.path.join(BENCHMARKS_DIR, script)
    command = [sys.executable, path, *args]
    if python_code is not None:
        command = [sys.executable, "-c", python_code, path, *args]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=TIMEOUT_S, check=False)


def read_benchmarks_md():
    try:
        with open(BENCHMARKS_MD, encoding="utf-8") as file:
            return file.read()
    except FileNotFoundError:
        return None


def assert_number_row(output, label, unit=""):
    """Assert that a line starts with label followed by a number and unit."""
    pattern = rf"^{re.escape(label)}\s+-?\d+\.\d+{re.escape(unit)}(\s|$)"
    assert re.search(pattern, output, re.MULTILINE), (
        f"no row {label!r} with a number{' in ' + unit if unit else ''} in:\n{output}"
    )


@pytest.fixture(scope="module")
def bench_train_run():
    return run_benchmark("bench_train.py", "--quick")


@pytest.fixture(scope="module")
def bench_seeds_run():
    return run_benchmark("bench_seeds.py", "--quick")


def test_bench_train_quick_exits_zero(bench_train_run):
    assert bench_train_run.returncode == 0, bench_train_run.stderr


@pytest.mark.parametrize("label, unit", [
    ("a  fit_sine.train, 1 thread", " s"),
    ("a/b", ""),
    ("d  fit_sine.py process", " s"),
    ("d  import floor process", " s"),
    ("d  process / floor", ""),
    ("d  beyond floor", " s"),
    ("e  fit_sine.py peak RSS", " MiB"),
    ("e  import floor peak RSS", " MiB"),
    ("e  beyond floor", " MiB"),
    ("a  final MSE, fit_sine.train", ""),
    ("b  final MSE, tutorial loop", ""),
])
def test_bench_train_quick_rows(bench_train_run, label, unit):
    assert_number_row(bench_train_run.stdout, label, unit)


def test_bench_train_quick_tutorial_row(bench_train_run):
    assert re.search(r"^b  tutorial loop, \d+ thread\(s\)\s+\d+\.\d+ s",
                     bench_train_run.stdout, re.MULTILINE), bench_train_run.stdout


@pytest.mark.skipif(not HAVE_SKLEARN, reason="scikit-learn is not installed")
@pytest.mark.parametrize("label, unit", [
    ("c  scikit-learn MLPRegressor", " s"),
    ("a/c", ""),
    ("c  final MSE, MLPRegressor (2 x loss_curve_)", ""),
])
def test_bench_train_quick_sklearn_rows(bench_train_run, label, unit):
    assert_number_row(bench_train_run.stdout, label, unit)


@pytest.mark.skipif(HAVE_SKLEARN, reason="scikit-learn is installed")
def test_bench_train_quick_reports_sklearn_skipped(bench_train_run):
    assert "scikit-learn is not installed" in bench_train_run.stdout


@pytest.mark.skipif(not HAVE_SKLEARN,
                    reason="bench_train_run already runs without scikit-learn")
def test_bench_train_quick_without_sklearn():
    # A None entry in sys.modules makes "import sklearn" raise ImportError.
    hide_sklearn = (
        "import os, runpy, sys\n"
        "sys.modules['sklearn'] = None\n"
        "sys.argv = sys.argv[1:]\n"
        "# As `python script.py` does, put the script's folder first on sys.path.\n"
        "sys.path.insert(0, os.path.dirname(sys.argv[0]))\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
    )
    completed = run_benchmark("bench_train.py", "--quick", python_code=hide_sklearn)
    assert completed.returncode == 0, completed.stderr
    assert "scikit-learn is not installed: skipping c" in completed.stdout
    skipped_row = re.search(r"^a/c\s+skipped", completed.stdout, re.MULTILINE)
    assert skipped_row, completed.stdout
    assert_number_row(completed.stdout, "a/b")


def test_bench_seeds_quick_exits_zero(bench_seeds_run):
    assert bench_seeds_run.returncode == 0, bench_seeds_run.stderr


@pytest.mark.parametrize("label, unit", [
    ("sequential: 4 x train, 1 thread", " s"),
    ("batched: train_batched, default threads", " s"),
    ("batched: train_batched, 1 thread", " s"),
    ("batched / sequential", ""),
    ("batched 1 thread / sequential", ""),
    ("batched 1 thread / batched default threads", ""),
    ("median final MSE, sequential", ""),
    ("median final MSE, batched, 1 thread", ""),
])
def test_bench_seeds_quick_rows(bench_seeds_run, label, unit):
    assert_number_row(bench_seeds_run.stdout, label, unit)


def test_bench_seeds_quick_seed_count():
    completed = run_benchmark("bench_seeds.py", "--quick", "--seeds", "2")
    assert completed.returncode == 0, completed.stderr
    assert_number_row(completed.stdout, "sequential: 2 x train, 1 thread", " s")


@pytest.mark.parametrize("script", ["bench_train.py", "bench_seeds.py"])
def test_quick_rejects_markdown(script):
    before = read_benchmarks_md()
    completed = run_benchmark(script, "--quick", "--markdown")
    assert completed.returncode == 2
    assert "--markdown cannot be combined with --quick" in completed.stderr
    assert read_benchmarks_md() == before


def test_replace_section_appends_new_section():
    text = "# Benchmarks\n"
    updated = bench_common.replace_section(text, "one", "body one")
    assert updated == "# Benchmarks\n\n<!-- one -->\nbody one\n<!-- /one -->\n"


def test_replace_section_keeps_other_sections():
    text = bench_common.replace_section("# Benchmarks\n", "one", "old one")
    text = bench_common.replace_section(text, "two", "old two")
    text = bench_common.replace_section(text, "one", "new one")
    assert "<!-- one -->\nnew one\n<!-- /one -->\n" in text
    assert "old one" not in text
    assert "<!-- two -->\nold two\n<!-- /two -->\n" in text
    assert text.index("<!-- one -->") < text.index("<!-- two -->")


def test_replace_section_rejects_partial_markers():
    with pytest.raises(ValueError, match="only one of the markers"):
        bench_common.replace_section("<!-- one -->\nno end marker\n", "one", "body")


def test_write_markdown_section_creates_file(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    bench_common.write_markdown_section("one", "body one", path=str(path))
    bench_common.write_markdown_section("two", "body two", path=str(path))
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Benchmarks\n")
    assert "<!-- one -->\nbody one\n<!-- /one -->\n" in text
    assert "<!-- two -->\nbody two\n<!-- /two -->\n" in text


# -- bench_levers.py -------------------------------------------------------

RATIO = r"\d+\.\d+"
SECONDS_DIFFERENCE = r"[+-]\d+\.\d+ s"


def assert_lever_row(output, lever, variant, unit, comparison=""):
    """Assert a line with lever, variant, a number in unit, then comparison.

    comparison is a regular expression for the last cell; "" skips it.
    """
    pattern = (rf"^{re.escape(lever)}\s+{re.escape(variant)}\s+"
               rf"-?\d+\.\d+{re.escape(unit)}(\s|$)")
    if comparison:
        pattern += rf".*\s{comparison}$"
    assert re.search(pattern, output, re.MULTILINE), (
        f"no row {lever!r}, {variant!r} with a number in {unit or 'no unit'!r} "
        f"and a last cell matching {comparison!r} in:\n{output}"
    )


@pytest.fixture(scope="module")
def bench_levers_run():
    return run_benchmark("bench_levers.py", "--quick")


def test_bench_levers_quick_exits_zero(bench_levers_run):
    assert bench_levers_run.returncode == 0, bench_levers_run.stderr


@pytest.mark.parametrize("lever, variant, unit, comparison", [
    ("training loop", "1 tutorial loop, default threads", " s", RATIO),
    ("training loop", "2 tutorial loop, 1 thread", " s", RATIO),
    ("training loop", "3 loss on device, 1 thread", " s", RATIO),
    ("training loop", "4 fused Adam, 1 thread", " s", RATIO),
    ("training loop", "4b fit_sine.train, 1 thread", " s", RATIO),
    ("training loop", "5 foreach Adam, 1 thread", " s", RATIO),
    ("training loop", "6 fused Adam, 2 threads", " s", RATIO),
    ("prediction", "no_grad (fit_sine.predict)", " µs", "baseline"),
    ("prediction", "inference_mode", " µs", r"[+-]\d+\.\d+ µs"),
    ("garbage collector", "gc.freeze() before main", " s", "baseline"),
    ("garbage collector", "no gc.freeze()", " s", SECONDS_DIFFERENCE),
    ("figures", "a project settings", " s", "baseline"),
    ("figures", "b layout=constrained", " s", SECONDS_DIFFERENCE),
    ("figures", "c mathtext log labels", " s", SECONDS_DIFFERENCE),
    ("imports", "figure + backend_agg", " s", "baseline"),
    ("imports", "pyplot", " s", SECONDS_DIFFERENCE),
    ("pyplot import", "-X importtime, after figure + backend_agg", " s", ""),
])
def test_bench_levers_quick_timing_rows(bench_levers_run, lever, variant, unit,
                                        comparison):
    assert_lever_row(bench_levers_run.stdout, lever, variant, unit, comparison)


@pytest.mark.parametrize("variant", [
    "1 tutorial loop, default threads",
    "2 tutorial loop, 1 thread",
    "3 loss on device, 1 thread",
    "4 fused Adam, 1 thread",
    "4b fit_sine.train, 1 thread",
    "5 foreach Adam, 1 thread",
    "6 fused Adam, 2 threads",
])
def test_bench_levers_quick_final_mse_rows(bench_levers_run, variant):
    quality = bench_levers_run.stdout.partition("quality (final training MSE):")[2]
    assert quality, bench_levers_run.stdout
    assert_lever_row(quality, "training loop", variant, "", r"[+-]\d\.\de[+-]\d+")


def test_bench_levers_quick_rejects_markdown():
    before = read_benchmarks_md()
    completed = run_benchmark("bench_levers.py", "--quick", "--markdown")
    assert completed.returncode == 2
    assert "--markdown cannot be combined with --quick" in completed.stderr
    assert read_benchmarks_md() == before


# The figure variants must change what they claim to change, or the figure rows
# of bench_levers would compare the project's settings with themselves.


def loss_plot_labels(fit_sine):
    """Draw fit_sine.plot_loss's figure; return its y tick label texts."""
    figure = fit_sine.plot_loss([1.0, 0.2, 0.05], 0.1)
    figure.canvas.draw()
    labels = figure.axes[0].get_yticklabels()
    return [label.get_text() for label in labels if label.get_text()]


def test_bench_levers_mathtext_patch_labels(fit_sine, monkeypatch):
    project_labels = loss_plot_labels(fit_sine)
    monkeypatch.setattr(fit_sine, "set_log_scale",
                        bench_levers.with_mathtext_labels(fit_sine.set_log_scale))
    patched_labels = loss_plot_labels(fit_sine)
    assert project_labels
    assert not any("$" in label for label in project_labels), project_labels
    assert patched_labels
    assert all(label.startswith("$") for label in patched_labels), patched_labels


def test_bench_levers_constrained_patch_layout(fit_sine):
    project_figure = fit_sine.new_figure()
    patched_figure = bench_levers.with_constrained_layout(fit_sine.new_figure)()
    assert project_figure.get_layout_engine() is None
    assert isinstance(patched_figure.get_layout_engine(), ConstrainedLayoutEngine)
    assert isinstance(patched_figure.canvas, FigureCanvasAgg)
    project_size = project_figure.get_size_inches().tolist()
    assert patched_figure.get_size_inches().tolist() == project_size


def test_bench_levers_constrained_patch_moves_axes(fit_sine):
    project_figure = fit_sine.new_figure()
    patched_figure = bench_levers.with_constrained_layout(fit_sine.new_figure)()
    positions = []
    for figure in (project_figure, patched_figure):
        axes = figure.add_subplot()
        axes.set_title("title")
        figure.canvas.draw()
        positions.append(axes.get_position().bounds)
    assert positions[0] != positions[1]
