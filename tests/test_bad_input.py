"""Invalid command lines: exit code 2, one line on stderr, and no files."""

import os

import pytest
import torch

# (command-line arguments, flag that the error line must name)
BAD_ARGUMENTS = [
    ("--epochs 0", "--epochs"),
    ("--epochs -5", "--epochs"),
    ("--epochs abc", "--epochs"),
    ("--points 1", "--points"),
    ("--lr 0", "--lr"),
    ("--lr -1", "--lr"),
    ("--lr nan", "--lr"),
    ("--lr inf", "--lr"),
    ("--noise -0.1", "--noise"),
    ("--noise nan", "--noise"),
    ("--optimizer rmsprop", "--optimizer"),
    ("--activation gelu", "--activation"),
    ("--device tpu", "--device"),
    pytest.param(
        "--device cuda", "--device",
        marks=pytest.mark.skipif(torch.cuda.is_available(),
                                 reason="CUDA is available, so --device cuda is valid"),
    ),
    ("--hidden 0", "--hidden"),
    ("--grid-points 1", "--grid-points"),
    ("--log-every 0", "--log-every"),
    ("--seed -1", "--seed"),
    ("--bogus", "--bogus"),
    ("--compare bogus", "--compare"),
    ("--compare lr --compare-values 0.1,abc", "--compare-values"),
    ("--compare lr --compare-values 0,0.1", "--compare-values"),
    ("--compare lr --compare-values 0.1,,0.01", "--compare-values"),
    ("--compare optimizer --compare-values adam,rmsprop", "--compare-values"),
    ("--compare-values 0.1", "--compare-values"),
    ("--seeds 0", "--seeds"),
    ("--seeds 1001", "--seeds"),
    ("--seeds 2 --compare lr", "--seeds"),
    ("--seeds 2 --scheduler plateau", "--scheduler"),
    ("--seed 4294967295 --seeds 2", "--seeds"),
    ("--gamma 0", "--gamma"),
    ("--gamma 1.5", "--gamma"),
    ("--compare lr --compare-values 0.01,1e-2", "--compare-values"),
    ("--compare activation --compare-values relu,relu", "--compare-values"),
    ("--points 1000000 --hidden 4096", "--hidden"),
    ("--seeds 1000 --hidden 2048", "--seeds"),
]

# A few cases again through a real process, where argparse could still print
# usage or a traceback. Each costs 2-4 s of imports.
SUBPROCESS_CASES = [
    ("--epochs abc", "--epochs"),
    ("--lr nan", "--lr"),
    ("--optimizer rmsprop", "--optimizer"),
    ("--bogus", "--bogus"),
    ("--compare-values 0.1", "--compare-values"),
    ("--seeds 2 --scheduler plateau", "--scheduler"),
]


@pytest.mark.parametrize("arguments, flag", BAD_ARGUMENTS)
def test_main_rejects_bad_argument(run_main, tmp_path, arguments, flag):
    out_dir = tmp_path / "out"
    code, stdout, stderr = run_main([*arguments.split(), "--out-dir", out_dir])

    assert code == 2
    assert len(stderr.splitlines()) == 1, stderr
    assert flag in stderr
    assert "Traceback" not in stderr
    assert stdout == ""
    assert not out_dir.exists()


@pytest.mark.parametrize("arguments, flag", SUBPROCESS_CASES)
def test_script_rejects_bad_argument(run_script, tmp_path, arguments, flag):
    out_dir = tmp_path / "out"
    result = run_script([*arguments.split(), "--out-dir", out_dir])

    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert flag in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not out_dir.exists()
    assert os.listdir(tmp_path) == []


def test_main_rejects_out_dir_file(run_main, tmp_path):
    regular_file = tmp_path / "taken"
    regular_file.write_bytes(b"keep me")
    code, stdout, stderr = run_main(["--out-dir", regular_file, "--epochs", "5"])

    assert code == 2
    assert len(stderr.splitlines()) == 1, stderr
    assert "--out-dir" in stderr
    assert "Traceback" not in stderr
    assert stdout == ""
    assert regular_file.read_bytes() == b"keep me"


def test_script_rejects_out_dir_file(run_script, tmp_path):
    regular_file = tmp_path / "taken"
    regular_file.write_bytes(b"keep me")
    result = run_script(["--out-dir", regular_file, "--epochs", "5"])

    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "--out-dir" in result.stderr
    assert "Traceback" not in result.stderr
    assert regular_file.read_bytes() == b"keep me"


@pytest.mark.skipif(os.geteuid() == 0,
                    reason="root can write into a read-only folder")
def test_main_rejects_read_only_out_dir(run_main, tmp_path):
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(0o555)
    out_dir = parent / "out"
    try:
        code, stdout, stderr = run_main(["--out-dir", out_dir, "--epochs", "5"])
    finally:
        parent.chmod(0o755)

    assert code == 2
    assert len(stderr.splitlines()) == 1, stderr
    assert "--out-dir" in stderr
    assert "Traceback" not in stderr
    assert stdout == ""
    assert not out_dir.exists()
