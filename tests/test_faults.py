"""Runs that go wrong after the arguments were accepted: divergence, a failed
write, an output folder that cannot be made, and flags argparse would guess."""

import json
import os

import pytest


def listing(folder):
    """Return {name: bytes} of every file in folder."""
    return {name: (folder / name).read_bytes() for name in os.listdir(folder)}


def test_last_step_divergence_exits_3(run_main, tmp_path):
    # With one epoch the loss is taken before the only step, so only the
    # prediction shows that the weights blew up.
    out_dir = tmp_path / "out"
    code, _, stderr = run_main(["--optimizer", "sgd", "--lr", "1e30", "--epochs", "1",
                                "--out-dir", out_dir, "--quiet"])

    assert code == 3
    assert "diverged at epoch 1" in stderr
    assert "--lr" in stderr
    assert not out_dir.exists()


def test_diverged_run_removes_new_folders(run_main, tmp_path):
    out_dir = tmp_path / "new" / "nested"
    code, _, _ = run_main(["--optimizer", "sgd", "--lr", "10", "--out-dir", out_dir,
                           "--quiet"])

    assert code == 3
    assert not (tmp_path / "new").exists()


def test_diverged_run_keeps_existing_folder(run_main, tmp_path):
    code, _, _ = run_main(["--optimizer", "sgd", "--lr", "10", "--out-dir", tmp_path,
                           "--quiet"])

    assert code == 3
    assert tmp_path.is_dir()


def test_compare_all_variants_diverged_exits_3(run_main, tmp_path):
    out_dir = tmp_path / "out"
    code, stdout, stderr = run_main(["--compare", "lr", "--compare-values", "10,20",
                                     "--optimizer", "sgd", "--out-dir", out_dir,
                                     "--quiet"])

    assert code == 3
    assert "every variant diverged" in stderr
    assert "--compare-values" in stderr
    assert "diverged at epoch" in stdout
    assert not out_dir.exists()


def test_seeds_all_diverged_exits_3(run_main, tmp_path):
    out_dir = tmp_path / "out"
    code, _, stderr = run_main(["--seeds", "3", "--optimizer", "sgd", "--lr", "10",
                                "--out-dir", out_dir, "--quiet"])

    assert code == 3
    assert "every seed diverged" in stderr
    assert not out_dir.exists()


def test_seeds_last_step_divergence_exits_3(run_main, tmp_path):
    code, _, _ = run_main(["--seeds", "2", "--optimizer", "sgd", "--lr", "1e30",
                           "--epochs", "1", "--out-dir", tmp_path, "--quiet"])

    assert code == 3
    assert listing(tmp_path) == {}


def test_failed_write_keeps_earlier_outputs(run_main, tmp_path):
    code, _, _ = run_main(["--epochs", "5", "--out-dir", tmp_path, "--quiet"])
    assert code == 0
    before = listing(tmp_path)
    # A folder where a figure should go makes the write fail.
    (tmp_path / "loss.png").unlink()
    (tmp_path / "loss.png").mkdir()
    before.pop("loss.png")

    code, _, stderr = run_main(["--epochs", "7", "--out-dir", tmp_path, "--quiet"])

    assert code == 1
    assert len(stderr.splitlines()) == 1, stderr
    assert "loss.png" in stderr
    assert "Traceback" not in stderr
    assert listing_files(tmp_path) == before


def listing_files(folder):
    """Return {name: bytes} of the regular files in folder."""
    return {name: (folder / name).read_bytes() for name in os.listdir(folder)
            if (folder / name).is_file()}


def test_out_dir_failure_leaves_no_parents(run_main, tmp_path):
    out_dir = tmp_path / "made" / ("x" * 300)
    code, _, stderr = run_main(["--out-dir", out_dir])

    assert code == 2
    assert "--out-dir" in stderr
    assert not (tmp_path / "made").exists()


def test_metrics_json_is_strict_json(default_run):
    text = (default_run.out_dir / "metrics.json").read_text()

    assert "NaN" not in text
    assert "Infinity" not in text
    assert json.loads(text)["final_loss"] > 0


@pytest.mark.parametrize("arguments, flag", [
    ("--ep 5", "--ep"),
    ("--sched step", "--sched"),
    ("--lr -1e-3", "--lr"),
])
def test_abbreviation_and_negative_rejected(run_main, tmp_path, arguments, flag):
    code, _, stderr = run_main([*arguments.split(), "--out-dir", tmp_path / "out"])

    assert code == 2
    assert len(stderr.splitlines()) == 1, stderr
    assert flag in stderr
    assert not (tmp_path / "out").exists()


def test_help_shows_seed_default(fit_sine):
    text = fit_sine.build_parser().format_help()
    seed_help = text[text.index("  --seed N"):text.index("  --device")]

    assert "(default: 0)" in seed_help


def test_one_epoch_summary_is_singular(run_main, tmp_path):
    code, stdout, _ = run_main(["--epochs", "1", "--out-dir", tmp_path, "--quiet"])

    assert code == 0
    assert "trained 1 epoch in" in stdout
