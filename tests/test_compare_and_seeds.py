"""Tests for --compare (the tutorial's comparisons) and --seeds (batched seeds)."""

import json
import math
import statistics

import pytest
import torch

from conftest import call_main

CPU = torch.device("cpu")
COMPARE_EPOCHS = 30

# Default variant counts of --compare.
VARIANT_COUNTS = {"lr": 2, "optimizer": 3, "activation": 4, "scheduler": 3, "input": 2}


@pytest.fixture(scope="module")
def compare_runs(fit_sine, tmp_path_factory):
    """Run every --compare NAME once for 30 epochs; map NAME to its outputs."""
    runs = {}
    for name in VARIANT_COUNTS:
        out_dir = tmp_path_factory.mktemp(f"compare_{name}")
        code, stdout, stderr = call_main(
            fit_sine,
            ["--compare", name, "--epochs", COMPARE_EPOCHS, "--quiet",
             "--device", "cpu", "--out-dir", out_dir],
        )
        report_path = out_dir / f"compare_{name}.json"
        report = json.loads(report_path.read_text()) if report_path.exists() else None
        runs[name] = {"code": code, "stderr": stderr, "out_dir": out_dir,
                      "report": report}
    return runs


# -- --compare end to end -------------------------------------------------------


@pytest.mark.parametrize("name", list(VARIANT_COUNTS))
def test_compare_exits_zero(compare_runs, name):
    assert compare_runs[name]["code"] == 0, compare_runs[name]["stderr"]


@pytest.mark.parametrize("name", list(VARIANT_COUNTS))
def test_compare_png_is_drawn(compare_runs, check_png_drawn, name):
    check_png_drawn(compare_runs[name]["out_dir"] / f"compare_{name}.png")


@pytest.mark.parametrize("name, count", list(VARIANT_COUNTS.items()))
def test_compare_one_row_per_variant(compare_runs, name, count):
    assert len(compare_runs[name]["report"]["variants"]) == count


@pytest.mark.parametrize("name", list(VARIANT_COUNTS))
def test_compare_rows_trained_all_epochs(compare_runs, name):
    for row in compare_runs[name]["report"]["variants"]:
        assert row["diverged_at"] is None, row["variant"]
        assert row["epochs_run"] == COMPARE_EPOCHS, row["variant"]
        assert len(row["loss_history"]) == COMPARE_EPOCHS, row["variant"]
        assert math.isfinite(row["final_loss"]), row["variant"]
        assert math.isfinite(row["mse_vs_sin"]), row["variant"]


@pytest.mark.parametrize("name", ["lr", "optimizer", "scheduler"])
def test_compare_first_loss_identical(compare_runs, name):
    # The first loss comes from the forward pass before any optimizer step, so
    # variants that differ only in the optimizer, lr or scheduler must agree
    # exactly when they start from the same weights.
    first_losses = {row["loss_history"][0]
                    for row in compare_runs[name]["report"]["variants"]}
    assert len(first_losses) == 1, first_losses


# The scheduler variants are left out: within 30 epochs StepLR (step 200) and
# ReduceLROnPlateau (patience 20, loss still falling) never change the rate.
@pytest.mark.parametrize("name", ["lr", "optimizer"])
def test_compare_variants_differ_later(compare_runs, name):
    final_losses = [row["final_loss"]
                    for row in compare_runs[name]["report"]["variants"]]
    assert len(set(final_losses)) == len(final_losses), final_losses


def test_compare_values_override_list(run_main, tmp_path):
    code, _, stderr = run_main(
        ["--compare", "lr", "--compare-values", "0.1,0.01,0.001", "--epochs",
         COMPARE_EPOCHS, "--quiet", "--device", "cpu", "--out-dir", tmp_path]
    )
    report = json.loads((tmp_path / "compare_lr.json").read_text())

    assert code == 0, stderr
    assert [row["value"] for row in report["variants"]] == [0.1, 0.01, 0.001]


def test_make_model_same_seed_same_weights(fit_sine):
    first = fit_sine.make_model(0).state_dict()
    second = fit_sine.make_model(0).state_dict()
    assert list(first) == list(second)
    for key in first:
        assert torch.equal(first[key], second[key]), key


def test_make_model_other_seed_other_weights(fit_sine):
    first = fit_sine.make_model(0).state_dict()
    second = fit_sine.make_model(1).state_dict()
    assert not torch.equal(first["net.0.weight"], second["net.0.weight"])


# -- A network without activations is a line ------------------------------------


def test_collapsed_line_matches_network(fit_sine):
    torch.manual_seed(3)
    model = fit_sine.BalancedMLP(hidden=16, activation="none")
    slope, intercept = fit_sine.collapsed_line(model)
    x = torch.linspace(-10.0, 10.0, 11).unsqueeze(1)
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(slope * x + intercept, expected, rtol=1e-5, atol=1e-5)


def test_least_squares_line_exact_points(fit_sine):
    x = torch.linspace(-10.0, 10.0, 21).unsqueeze(1)
    slope, intercept = fit_sine.least_squares_line(x, 2.5 * x - 0.75)
    assert slope == pytest.approx(2.5, abs=1e-6)
    assert intercept == pytest.approx(-0.75, abs=1e-6)


def test_compare_activation_none_is_least_squares(run_main, tmp_path):
    # After the default 690 epochs, the network without activations matched
    # the least-squares line to about 3e-9 in slope and intercept (seed 0,
    # CPU, torch 2.13.0). 1e-4 leaves room for other CPUs' rounding.
    code, _, stderr = run_main(
        ["--compare", "activation", "--compare-values", "none", "--quiet",
         "--device", "cpu", "--out-dir", tmp_path]
    )
    row = json.loads((tmp_path / "compare_activation.json").read_text())["variants"][0]

    assert code == 0, stderr
    assert row["epochs_run"] == 690
    for key in ("slope", "intercept"):
        assert row["collapsed_line"][key] == pytest.approx(
            row["least_squares_line"][key], abs=1e-4), key


# -- A diverging variant is reported, not fatal ----------------------------------


@pytest.fixture
def diverging_compare(run_main, tmp_path):
    # With plain SGD at lr 10 the loss on seed 0 is inf at epoch 3, which
    # test_train_sgd_lr_10_diverges checks directly.
    code, stdout, stderr = run_main(
        ["--compare", "lr", "--compare-values", "10,0.01", "--optimizer", "sgd",
         "--epochs", 60, "--quiet", "--device", "cpu", "--out-dir", tmp_path]
    )
    report = json.loads((tmp_path / "compare_lr.json").read_text())
    rows = {row["value"]: row for row in report["variants"]}
    return code, stderr, tmp_path, rows


def test_compare_diverged_exits_zero(diverging_compare):
    code, stderr, _, _ = diverging_compare
    assert code == 0, stderr


def test_compare_diverged_row_reported(diverging_compare):
    _, _, _, rows = diverging_compare
    row = rows[10.0]
    assert type(row["diverged_at"]) is int
    assert 1 <= row["diverged_at"] <= 60
    assert row["final_loss"] is None
    assert row["mse_vs_sin"] is None
    assert row["prediction"] is None


def test_compare_diverged_history_stops_before(diverging_compare):
    _, _, _, rows = diverging_compare
    row = rows[10.0]
    assert len(row["loss_history"]) == row["diverged_at"] - 1
    assert all(math.isfinite(value) for value in row["loss_history"])


def test_compare_diverged_other_row_trains(diverging_compare):
    _, _, _, rows = diverging_compare
    row = rows[0.01]
    assert row["diverged_at"] is None
    assert len(row["loss_history"]) == 60
    assert math.isfinite(row["final_loss"])


def test_compare_diverged_png_is_drawn(diverging_compare, check_png_drawn):
    _, _, out_dir, _ = diverging_compare
    check_png_drawn(out_dir / "compare_lr.png")


# -- --seeds end to end ----------------------------------------------------------


@pytest.fixture
def seeds_run(run_main, tmp_path):
    code, stdout, stderr = run_main(
        ["--seeds", 3, "--epochs", 60, "--quiet", "--device", "cpu",
         "--out-dir", tmp_path]
    )
    report = json.loads((tmp_path / "seeds.json").read_text())
    return code, stderr, tmp_path, report


def test_seeds_exits_zero(seeds_run):
    code, stderr, _, _ = seeds_run
    assert code == 0, stderr


def test_seeds_png_is_drawn(seeds_run, check_png_drawn):
    _, _, out_dir, _ = seeds_run
    check_png_drawn(out_dir / "seeds.png")


def test_seeds_report_lists_seeds(seeds_run):
    _, _, _, report = seeds_run
    assert report["seeds"] == [0, 1, 2]
    assert [run["seed"] for run in report["runs"]] == [0, 1, 2]
    assert [run["diverged_at"] for run in report["runs"]] == [None, None, None]


@pytest.mark.parametrize("key", ["final_loss", "mse_vs_sin"])
def test_seeds_summary_matches_runs(seeds_run, key):
    _, _, _, report = seeds_run
    values = [run[key] for run in report["runs"]]
    summary = report["summary"][key]
    # Three values, so the median is the middle one under any convention.
    assert summary["median"] == pytest.approx(statistics.median(values), rel=1e-12)
    assert summary["min"] == pytest.approx(min(values), rel=1e-12)
    assert summary["max"] == pytest.approx(max(values), rel=1e-12)


def test_seeds_one_member_matches_single(run_main, tmp_path):
    args = ["--seed", 1, "--epochs", 50, "--quiet", "--device", "cpu"]
    code, _, stderr = run_main([*args, "--seeds", 1, "--out-dir", tmp_path / "seeds"])
    assert code == 0, stderr
    code, _, stderr = run_main([*args, "--out-dir", tmp_path / "single"])
    assert code == 0, stderr

    member = json.loads((tmp_path / "seeds" / "seeds.json").read_text())["runs"][0]
    single = json.loads((tmp_path / "single" / "metrics.json").read_text())
    assert member["final_loss"] == pytest.approx(single["final_loss"], rel=1e-4)
    assert member["mse_vs_sin"] == pytest.approx(single["mse_vs_sin"], rel=1e-4)


def test_seeds_divergence_spares_other_members(fit_sine, run_main, tmp_path):
    # With plain SGD at lr 0.1, seed 4 diverges at epoch 7 while seeds 0-3
    # train through all 100 epochs when run alone.
    code, _, stderr = run_main(
        ["--seeds", 5, "--optimizer", "sgd", "--lr", 0.1, "--epochs", 100,
         "--quiet", "--device", "cpu", "--out-dir", tmp_path]
    )
    runs = json.loads((tmp_path / "seeds.json").read_text())["runs"]
    assert code == 0, stderr
    assert [run["diverged_at"] for run in runs[:4]] == [None] * 4
    assert type(runs[4]["diverged_at"]) is int
    assert runs[4]["final_loss"] is None

    x, y = fit_sine.make_data(seed=0)
    model = fit_sine.make_model(0)
    optimizer = fit_sine.make_optimizer("sgd", model.parameters(), 0.1, CPU)
    single = fit_sine.train(model, x, y, optimizer, 100)
    assert single.diverged_at is None
    assert runs[0]["final_loss"] == pytest.approx(single.losses[-1], rel=1e-3)


# -- Batched training follows single runs ------------------------------------------


def train_single(fit_sine, seed, epochs):
    """Train seed's model alone as the script does; return (losses, mse_vs_sin)."""
    x, y = fit_sine.make_data(seed=seed)
    model = fit_sine.make_model(seed)
    optimizer = fit_sine.make_optimizer("adam", model.parameters(), 0.01, CPU)
    result = fit_sine.train(model, x, y, optimizer, epochs)
    grid = fit_sine.make_grid()
    mse = fit_sine.mse_against_sine(grid, fit_sine.predict(model, grid)).item()
    return torch.tensor(result.losses), mse


def train_together(fit_sine, seeds, epochs):
    """Train seeds with train_batched as run_seeds does; return (losses, mses)."""
    data = [fit_sine.make_data(seed=seed) for seed in seeds]
    x = data[0][0]
    ys = torch.stack([y for _, y in data])
    model = fit_sine.StackedMLP([fit_sine.make_model(seed) for seed in seeds])
    optimizer = fit_sine.make_optimizer("adam", model.parameters(), 0.01, CPU)
    result = fit_sine.train_batched(model, x, ys, optimizer, epochs)
    grid = fit_sine.make_grid()
    predictions = fit_sine.predict(model, grid)
    return torch.tensor(result.losses), fit_sine.mse_against_sine(grid, predictions)


def max_relative_difference(actual, expected):
    return ((actual - expected).abs() / expected.abs()).max().item()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_make_data_independent_of_rng(fit_sine, seed):
    # A single run draws its data first, while run_seeds draws seed 2's data
    # after seeds 0 and 1. make_data uses its own generator, so neither the
    # global RNG nor earlier draws may change the result.
    torch.manual_seed(12345)
    single_x, single_y = fit_sine.make_data(seed=seed)
    batch = []
    for other in [0, 1, 2]:
        batch.append(fit_sine.make_data(seed=other))
        fit_sine.make_model(other)
    assert torch.equal(batch[seed][0], single_x)
    assert torch.equal(batch[seed][1], single_y)


def test_make_data_same_x_every_seed(fit_sine):
    # run_seeds trains every member on the x of the first seed.
    first_x, _ = fit_sine.make_data(seed=0)
    other_x, _ = fit_sine.make_data(seed=7)
    assert torch.equal(first_x, other_x)


@pytest.mark.parametrize("activation", ["relu", "tanh", "none"])
def test_stacked_mlp_matches_each_model(fit_sine, activation):
    models = [fit_sine.make_model(seed, hidden=16, activation=activation)
              for seed in [0, 1, 2]]
    stacked = fit_sine.StackedMLP(models)
    x = torch.linspace(-10.0, 10.0, 7).unsqueeze(1)
    with torch.no_grad():
        together = stacked(x)
        expected = torch.stack([model(x) for model in models])
    assert together.shape == (3, 7, 1)
    torch.testing.assert_close(together, expected, rtol=1e-5, atol=1e-6)


def test_predict_stacked_mlp_shape(fit_sine):
    stacked = fit_sine.StackedMLP([fit_sine.make_model(seed) for seed in [0, 1]])
    prediction = fit_sine.predict(stacked, fit_sine.make_grid(300))
    assert prediction.shape == (2, 300)
    assert not prediction.requires_grad


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_train_batched_matches_single_50(fit_sine, seed):
    # Measured: at most 2.2e-7 relative over 50 epochs for seeds 0-2.
    together, _ = train_together(fit_sine, [0, 1, 2], 50)
    single, _ = train_single(fit_sine, seed, 50)
    assert together.shape == (50, 3)
    assert max_relative_difference(together[:, seed], single) < 1e-4


def test_train_batched_gradient_per_member(fit_sine):
    # Measured: 2.1e-7 relative over 20 epochs.
    pair, _ = train_together(fit_sine, [0, 1], 20)
    alone, _ = train_together(fit_sine, [0], 20)
    assert max_relative_difference(pair[:, 0], alone[:, 0]) < 1e-5


def test_train_batched_matches_single_690(fit_sine):
    # Over 690 epochs the ReLU fit amplifies rounding. Scaling seed 0's
    # initial weights by 1 + k * 1e-7 (k = 1..8) left the loss equal to 5
    # digits through epoch 200 but moved the final loss from 0.0586 to as
    # much as 0.0695. Batched and single runs differ by rounding alone (2e-7
    # relative after 50 epochs), so after 690 epochs only the outcome is
    # compared.
    # Measured on the CPU with torch 2.13.0, the batched / single mse_vs_sin
    # ratio per seed was 0.95-1.01 with seeds 0-2 trained together, and 0.79
    # to 1.28 over groups of 5 and 10 seeds. The ratio of the medians was 0.79
    # to 1.22.
    seeds = [0, 1, 2]
    _, batched_mses = train_together(fit_sine, seeds, 690)
    single_mses = torch.tensor([train_single(fit_sine, seed, 690)[1] for seed in seeds])

    ratios = batched_mses / single_mses
    assert bool(((ratios > 0.5) & (ratios < 2.0)).all()), ratios
    median_ratio = (batched_mses.median() / single_mses.median()).item()
    assert 2 / 3 < median_ratio < 1.5
    # The same bound as for single runs in test_single_run.py: seeds 0-9
    # reached 0.024 to 0.198 alone and at most 0.197 batched.
    assert bool((batched_mses < 0.25).all()), batched_mses
