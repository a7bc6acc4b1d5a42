"""`s3ta report` over fixture run directories: the per-game, aggregate and probability-of-improvement
numbers equal the ones computed by hand from the episodes, the published peer's return stands beside
a run at its budget, the paper comparison puts each of our agents beside its model and states both
frame budgets, the plots exist and are embedded in the HTML, and resumed training logs are read once."""

import argparse
import csv
import json
import math
import statistics

import numpy as np
import pytest

from fixtures.evaluation_runs import write_metrics, write_run
from s3ta.evaluation import cli
from s3ta.evaluation.metrics import Interval
from s3ta.evaluation.plots import curve_bin_edges, improvement_pairs
from s3ta.evaluation.report import build_report, describe_trained_on, find_runs, peer_points, read_training_episodes
from s3ta.evaluation.runlog import Stretch, trained_on

PONG_HNS = 0.7 / 35.3  # (-20 + 20.7) / (14.6 + 20.7)


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    # pong, s3ta-small: run scores -20, -20.7 (random) and 14.6 (human) -> HNS 0.7/35.3, 0, 1
    write_run(root, "pong", "s3ta-small", 0, [-21.0, -19.0])
    write_run(root, "pong", "s3ta-small", 1, [-20.7, -20.7])
    write_run(root, "pong", "s3ta-small", 2, [14.6])
    # breakout, s3ta-small: run scores 1.7 (random) and 59.3 (twice human over random) -> HNS 0, 2
    write_run(root, "breakout", "s3ta-small", 0, [1.7, 1.7])
    write_run(root, "breakout", "s3ta-small", 1, [59.3])
    # catch, s3ta-small: run scores 1 (optimal) and -0.75 (random) -> 1, 0
    write_run(root, "catch", "s3ta-small", 0, [1.0, 1.0])
    write_run(root, "catch", "s3ta-small", 1, [-1.0, -0.5])
    # one lstm seed on pong, and a run that has not been evaluated
    write_run(root, "pong", "lstm", 0, [-20.7])
    write_run(root, "find-target", "lstm", 0, None)
    return root


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_find_runs(runs):
    found = find_runs([runs, runs / "pong"])  # overlapping roots are read once
    assert len(found) == 9
    assert sum(r.returns is None for r in found) == 1
    pong = [r for r in found if r.game == "pong" and r.agent == "s3ta-small"]
    assert [r.score for r in pong] == pytest.approx([-20.0, -20.7, 14.6])
    assert [r.normalized for r in pong] == pytest.approx([PONG_HNS, 0.0, 1.0])


def test_report_numbers_are_the_hand_computed_ones(runs, tmp_path):
    out = tmp_path / "report"
    files = build_report([runs], out, reps=2000)

    games = {(g["game"], g["agent"]): g for g in read_csv(files["games_csv"])}
    pong = games[("pong", "s3ta-small")]
    scores = [-20.0, -20.7, 14.6]
    half = 4.302653 * statistics.stdev(scores) / math.sqrt(3)  # t(0.975, 2 df)
    assert float(pong["raw_mean"]) == pytest.approx(-8.7)
    assert float(pong["raw_ci_low"]) == pytest.approx(-8.7 - half, abs=1e-4)
    assert float(pong["raw_ci_high"]) == pytest.approx(-8.7 + half, abs=1e-4)
    assert float(pong["normalized_mean"]) == pytest.approx((PONG_HNS + 1.0) / 3)
    assert pong["seeds"] == "3" and pong["reference"] == "human"
    lstm = games[("pong", "lstm")]
    assert float(lstm["raw_mean"]) == pytest.approx(-20.7) and lstm["raw_ci_low"] == "nan"  # one seed: no interval
    assert float(games[("catch", "s3ta-small")]["normalized_mean"]) == pytest.approx(0.5)

    aggregates = {(a["suite"], a["agent"]): a for a in read_csv(files["aggregates_csv"])}
    atari = aggregates[("atari", "s3ta-small")]
    # per-game means: breakout (0 + 2) / 2 = 1, pong (PONG_HNS + 0 + 1) / 3
    pong_mean = (PONG_HNS + 1.0) / 3
    assert float(atari["mean"]) == pytest.approx((1.0 + pong_mean) / 2)
    assert float(atari["median"]) == pytest.approx((1.0 + pong_mean) / 2)
    # five runs 0 0 PONG_HNS 1 2: floor(5/4) = 1 dropped at each end
    assert float(atari["iqm"]) == pytest.approx((0.0 + PONG_HNS + 1.0) / 3)
    # min(x, 1): 0 1 PONG_HNS 0 1
    assert float(atari["optimality_gap"]) == pytest.approx(1 - (2.0 + PONG_HNS) / 5)
    assert atari["games"] == "breakout pong" and atari["runs"] == "5"
    for metric in ("median", "iqm", "mean", "optimality_gap"):
        assert float(atari[f"{metric}_ci_low"]) <= float(atari[metric]) <= float(atari[f"{metric}_ci_high"])
    builtin = aggregates[("builtin", "s3ta-small")]
    assert float(builtin["mean"]) == pytest.approx(0.5) and builtin["games"] == "catch"
    assert ("builtin", "lstm") not in aggregates  # its only built-in run is not evaluated

    runs_table = read_csv(files["runs_csv"])
    assert len(runs_table) == 8
    assert {r["run_dir"] for r in runs_table} >= {"../runs/pong/s3ta-small/seed0"}

    # the only common game of the two Atari agents is pong: s3ta-small's runs -20, -20.7, 14.6 against
    # lstm's -20.7 win, tie and win -> (1 + 1/2 + 1) / 3; resampling s3ta-small's three runs gives
    # 1/2 (all three the tie) with probability 1/27 > 2.5%, and 1 with probability 8/27.
    improvement = {(i["suite"], i["x"], i["y"]): i for i in read_csv(files["improvement_csv"])}
    assert set(improvement) == {("atari", "s3ta-small", "lstm"), ("atari", "lstm", "s3ta-small")}  # builtin: 1 agent
    ahead = improvement[("atari", "s3ta-small", "lstm")]
    assert ahead["games"] == "pong" and (ahead["x_runs_per_game"], ahead["y_runs_per_game"]) == ("3", "1")
    assert float(ahead["probability_of_improvement"]) == pytest.approx(5 / 6)
    assert (float(ahead["ci_low"]), float(ahead["ci_high"])) == (0.5, 1.0)
    behind = improvement[("atari", "lstm", "s3ta-small")]
    assert float(behind["probability_of_improvement"]) == pytest.approx(1 / 6)
    assert (float(behind["ci_low"]), float(behind["ci_high"])) == (0.0, 0.5)


def test_report_documents(runs, tmp_path):
    out = tmp_path / "report"
    files = build_report([runs], out, reps=2000, title="fixture report")
    markdown = files["markdown"].read_text()
    assert markdown.startswith("# fixture report")
    for text in ("## Scores per game", "Atari games, human-normalised score (HNS)", "Probability of improvement",
                 "| s3ta-small | lstm | 1 | 3 / 1 | 0.8333 | [0.5, 1] |  |", "tie counting 1/2",
                 "Built-in tasks, optimal-normalised",
                 "## Comparison with the paper", "not reported", "2e9 steps per game", "1,000 frames per run",
                 "407.1%", "not run", "Not evaluated yet", "../runs/find-target/lstm/seed0", "stratified bootstrap"):
        assert text in markdown, text
    # the s3ta rows of the paper table carry our s3ta-small aggregate, mean (1 + pong mean) / 2
    s3ta_row = next(line for line in markdown.splitlines() if line.startswith("| atari57 (57 games) | s3ta |"))
    assert "s3ta-small" in s3ta_row and f"{100 * (1 + (PONG_HNS + 1) / 3) / 2:.1f}%" in s3ta_row

    images = [line.split("](")[1].rstrip(")") for line in markdown.splitlines() if line.startswith("![")]
    assert sorted(images) == ["plots/aggregates-atari.png", "plots/aggregates-builtin.png", "plots/curve-breakout.png",
                              "plots/curve-catch.png", "plots/curve-find-target.png", "plots/curve-pong.png",
                              "plots/improvement-atari.png"]  # builtin has one agent: no pair to draw
    for image in images:
        assert (out / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = files["html"].read_text()
    assert page.count('src="data:image/png;base64,') == len(images)
    assert "<table>" in page and "<code>" in page and 'src="plots/' not in page


def test_the_improvement_figure_draws_each_pair_once_with_the_agent_ahead_first():
    def row(x, y, value, low, high):
        return {"x": x, "y": y, "probability": Interval(value, low, high)}

    rows = [row("a", "b", 0.3, 0.1, 0.6), row("b", "a", 0.7, 0.4, 0.9),  # b ahead of a
            row("a", "c", 0.9, 0.8, 1.0), row("c", "a", 0.1, 0.0, 0.2),  # a well ahead of c
            row("b", "c", math.nan, math.nan, math.nan), row("c", "b", math.nan, math.nan, math.nan)]  # no game in common
    assert [(r["x"], r["y"], r["probability"].value) for r in improvement_pairs(rows)] == [("a", "c", 0.9),
                                                                                          ("b", "a", 0.7)]


BUDGET = 20_000_000


def test_peer_return_at_the_runs_budget(tmp_path):
    root = tmp_path / "runs"
    curve = [(5_000_000, 2.0), (15_000_000, 9.0), (BUDGET, 12.0)]
    write_run(root, "ALE/Breakout-v5", "s3ta-small", 0, [10.0, 14.0], total_frames=BUDGET, curve=curve)
    write_run(root, "breakout", "lstm-small", 0, [8.0], total_frames=30_000_000)  # no peer point at 30M
    write_run(root, "catch", "lstm-small", 0, [1.0], total_frames=BUDGET)  # not an Atari game: no peer
    files = build_report([root], tmp_path / "report", reps=200)

    games = {(g["game"], g["agent"]): g for g in read_csv(files["games_csv"])}
    assert float(games[("breakout", "s3ta-small @ 2e+07")]["peer_at_budget"]) == 170.0  # Cleanba at 20M frames
    assert games[("breakout", "lstm-small @ 3e+07")]["peer_at_budget"] == ""
    assert games[("catch", "lstm-small @ 2e+07")]["peer_at_budget"] == ""
    markdown = files["markdown"].read_text()
    table = markdown.split("## Scores per game")[1].split("##")[0]
    header = next(line for line in table.splitlines() if line.startswith("| game |"))
    assert header.endswith("| random / reference | peer at budget |")
    row = next(line for line in table.splitlines() if line.startswith("| breakout | s3ta-small"))
    assert row.endswith("| 1.7 / 30.5 (human) | 170 |")
    assert next(line for line in table.splitlines() if line.startswith("| breakout | lstm-small")).endswith("|  |")
    assert "read off a published plot" in table and "returns of training episodes" in table
    # the breakout plot runs to 30M frames: it shows the peer's 10M and 20M points, not its 40M one
    caption = next(line for line in markdown.splitlines() if line.startswith("*breakout:"))
    assert "Cleanba IMPALA, deep ResNet (read off its plot, ±15%), at 1e+07, 2e+07 frames" in caption


def test_peer_points_stop_at_the_plots_range():
    frames, returns = peer_points("qbert", 20_000_000)["Cleanba IMPALA, deep ResNet (read off its plot, ±15%)"]
    assert frames.tolist() == [10_000_000, 20_000_000] and returns.tolist() == [1000.0, 4000.0]
    assert peer_points("qbert", 9_999_999) == {} and peer_points("catch", 1e9) == {}


def test_comparison_agents_stand_beside_their_paper_models(tmp_path):
    root = tmp_path / "runs"
    # one seed each on breakout (random 1.7, human 30.5): HNS 0, 0.5, 1 and 2 in this order
    for agent, score in (("lstm-small", 1.7), ("fixed-query-small", 16.1), ("l2-keys-small", 30.5),
                         ("s3ta-small", 59.3)):
        write_run(root, "breakout", agent, 0, [score])
    markdown = build_report([root], tmp_path / "report", reps=200)["markdown"].read_text()

    def paper_row(table, model):
        return next(line for line in markdown.splitlines() if line.startswith(f"| {table} | {model} |"))

    assert "| lstm-small | 1 | 0.0% [0.0%, 0.0%]" in paper_row("atari57 (57 games)", "lstm")
    assert "| fixed-query-small | 1 | 50.0% [50.0%, 50.0%]" in paper_row("ablation7 (7 games)", "fixed-query")
    assert "| l2-keys-small | 1 | 100.0% [100.0%, 100.0%]" in paper_row("ablation7 (7 games)", "l2-keys")
    assert "| s3ta-small | 1 | 200.0% [200.0%, 200.0%]" in paper_row("ablation7 (7 games)", "s3ta")
    assert paper_row("atari57 (57 games)", "feedforward").endswith("| not run |  |  |  |  |")
    # four agents with one run on one game: 12 ordered pairs, each interval without width, and said so
    note = "1 run per game: the interval reflects no seed variation"
    assert sum(note in line for line in markdown.splitlines()) == 12
    assert "| s3ta-small | lstm-small | 1 | 1 / 1 | 1 | [1, 1] |" in markdown
    assert "| lstm-small | l2-keys-small | 1 | 1 / 1 | 0 | [0, 0] |" in markdown


def test_report_without_atari_games_says_so(tmp_path):
    write_run(tmp_path / "runs", "catch", "lstm", 0, [1.0])
    files = build_report([tmp_path / "runs"], tmp_path / "report", reps=200)
    markdown = files["markdown"].read_text()
    assert "Human-normalised aggregates are computed over Atari games only" in markdown
    assert "| atari57 (57 games) | s3ta | 407.1% | 1649.0% | not reported | not run |" in markdown


def test_resumed_training_log_is_read_once(tmp_path):
    # an attempt logged up to 30 frames, was resumed from its checkpoint at 10 and logged 20, 30, 40
    write_metrics(tmp_path, [(10, 1.0), (20, 2.0), (20, 2.5), (30, 3.0)])
    write_metrics(tmp_path, [(20, -2.0), (30, -3.0), (40, -4.0)])
    (tmp_path / "metrics.jsonl").open("a").write('{"kind": "episode", "fra')  # cut short by a crash
    frames, returns = read_training_episodes(tmp_path)
    assert frames.tolist() == [10, 20, 30, 40]
    assert returns.tolist() == [1.0, -2.0, -3.0, -4.0]


def write_attempts(run_dir, *attempts):
    """attempts.json as train() leaves it: (first frame, device, arithmetic used) per attempt."""
    (run_dir / "attempts.json").write_text(json.dumps(
        [{"started": "2026-12-07T00:00:00+00:00", "frames": f, "host": "vm", "device": d, "precision": p}
         for f, d, p in attempts]))


def test_trained_on_follows_the_attempts_that_a_run_kept(tmp_path):
    # bf16 from 0, resumed in bf16 at 5M; a fp32 attempt from 9M, then a resume from an older checkpoint
    # (7M) on a machine without bf16: what the 9M attempt trained was replaced
    write_attempts(tmp_path, (0, "cpu", "bf16"), (5_000_000, "cpu", "bf16"), (9_000_000, "cpu", "fp32"),
                   (7_000_000, "cpu", "fp32"), (12_000_000, "cuda:0 (NVIDIA H100)", "bf16"))
    assert trained_on(tmp_path) == [Stretch(0, 7_000_000, "cpu", "bf16"), Stretch(7_000_000, 12_000_000, "cpu", "fp32"),
                                    Stretch(12_000_000, None, "cuda:0 (NVIDIA H100)", "bf16")]
    assert describe_trained_on(tmp_path, 20_000_000) == \
        "cpu bf16 0–7M, cpu fp32 7M–12M, cuda:0 (NVIDIA H100) bf16 12M–20M"
    write_attempts(tmp_path, (0, "cpu", "fp32"), (9_300_480, "cpu", "fp32"))
    assert describe_trained_on(tmp_path, 20_000_000) == "cpu fp32"
    (tmp_path / "attempts.json").unlink()
    assert trained_on(tmp_path) == [] and describe_trained_on(tmp_path, None) == "n/a"


def test_report_says_where_each_run_trained(runs, tmp_path):
    write_attempts(runs / "pong" / "s3ta-small" / "seed0", (0, "cpu", "bf16"), (500, "cpu", "fp32"))
    files = build_report([runs], tmp_path / "report", reps=200)
    rows = {r["run_dir"]: r for r in read_csv(files["runs_csv"])}
    assert rows["../runs/pong/s3ta-small/seed0"]["trained_on"] == "cpu bf16 0–0.0005M, cpu fp32 0.0005M–0.001M"
    assert rows["../runs/pong/s3ta-small/seed1"]["trained_on"] == "n/a"
    assert "| cpu bf16 0–0.0005M, cpu fp32 0.0005M–0.001M |" in files["markdown"].read_text()


@pytest.mark.parametrize("last_frame, width, count", [(39_991_040, 1_000_000, 40), (40_000_000, 1_000_000, 41),
                                                      (9_000_000, 500_000, 19), (64, 2, 33)])
def test_learning_curve_bins_have_a_round_width_and_hold_the_last_episode(last_frame, width, count):
    edges = curve_bin_edges(last_frame, 40)
    assert edges[0] == 0 and np.allclose(np.diff(edges), width) and len(edges) - 1 == count
    assert edges[-2] <= last_frame <= edges[-1]


def test_report_command(runs, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="s3ta")
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["report", str(runs), "--out", str(tmp_path / "r"), "--bootstrap-reps", "500"])
    assert args.func(args) == 0
    assert "report.html" in capsys.readouterr().out
    args = parser.parse_args(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "r2")])
    assert args.func(args) == 2
    assert "not a directory" in capsys.readouterr().err
    summary = json.loads((runs / "pong" / "lstm" / "seed0" / "eval" / "summary.json").read_text())
    assert summary["normalized"]["suite"] == "atari"
