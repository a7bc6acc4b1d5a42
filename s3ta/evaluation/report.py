"""``s3ta report``: read evaluated run directories and write a report of their scores.

Owns finding runs (a directory with ``config.json``; evaluated when it also has
``eval/episodes.csv`` and ``eval/summary.json``), the tables (per run, per game with a published
peer's return at the same budget, aggregates and probabilities of improvement with
stratified-bootstrap intervals, the comparison with the paper) and their rendering as Markdown
and as HTML with the plots embedded. Every number is derived from the saved per-episode CSVs,
by the procedure the report itself states.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import os
import re
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from s3ta.evaluation import metrics
from s3ta.evaluation.evaluate import EPISODES_CSV, EVAL_DIR, SUMMARY_JSON, read_episode_returns
from s3ta.evaluation.reference import Reference, game_name, paper_results, peer_curves, reference_for
from s3ta.evaluation.runlog import read_metrics, read_training_episodes  # noqa: F401 - re-exported for scripts
from s3ta.evaluation.runlog import trained_on

SUITES = {
    "atari": ("Atari games, human-normalised score (HNS)",
              "0% = random play, 100% = the human reference score (s3ta/data/atari_human_random.csv)."),
    "builtin": ("Built-in tasks, optimal-normalised score",
                "0% = uniformly random policy, 100% = optimal return (exact values in s3ta/evaluation/reference.py)."),
}
PAPER_BUDGETS = {"atari57": "not reported", "ablation7": "2e9 steps per game"}
PAPER_GAMES = {"atari57": 57, "ablation7": 7}
# Our agent presets that implement each model of the paper's tables. The -small comparison agents
# share s3ta-small's torso and core: lstm-small drops the attention (the vision output projected
# into the core), the paper's LSTM baseline idea at equal torso rather than its ResNet; the other two
# are the paper's top-down ablations at s3ta-small's size.
PAPER_MODELS = {"s3ta": ("s3ta", "s3ta-small"), "feedforward": ("feedforward",), "lstm": ("lstm", "lstm-small"),
                "fixed-query": ("fixed-query", "fixed-query-small"), "l2-keys": ("l2-keys", "l2-keys-small")}
PEER_SOURCE = "s3ta/data/peer_curves.csv"


class Run(NamedTuple):
    run_dir: Path
    config: dict[str, Any]  # the run's config.json (TrainConfig.to_dict())
    env: str  # the env evaluated (the trained one unless `s3ta eval --env` changed it)
    summary: dict[str, Any] | None  # eval/summary.json, None if the run has no evaluation
    returns: np.ndarray | None  # raw returns of eval/episodes.csv [episodes]

    @property
    def game(self) -> str:
        return game_name(self.env)

    @property
    def agent(self) -> str:
        return self.config["agent"]

    @property
    def seed(self) -> int:
        return int(self.config["seed"])

    @property
    def total_frames(self) -> int:
        return int(self.config["total_frames"])

    @property
    def reference(self) -> Reference | None:
        return reference_for(self.env)

    @property
    def score(self) -> float:
        """The run's raw score: the mean return of its evaluation episodes."""
        return float(np.mean(self.returns))

    @property
    def normalized(self) -> float:
        ref = self.reference
        return math.nan if ref is None else float(metrics.normalized_score(self.score, ref.low, ref.high))


def find_runs(roots: list[str | Path]) -> list[Run]:
    """Every run directory at or below ``roots`` (a directory holding ``config.json``), sorted."""
    found: dict[Path, Run] = {}
    for root in map(Path, roots):
        if not root.is_dir():
            raise FileNotFoundError(f"{root} is not a directory")
        for config_path in sorted(root.rglob("config.json")):
            run_dir = config_path.parent
            if EVAL_DIR in run_dir.relative_to(root).parts or run_dir.resolve() in found:
                continue
            config = json.loads(config_path.read_text())
            if not {"env", "agent", "seed", "total_frames"} <= set(config):
                continue  # some other config.json
            summary, returns = None, None
            if (run_dir / EVAL_DIR / SUMMARY_JSON).exists() and (run_dir / EVAL_DIR / EPISODES_CSV).exists():
                summary = json.loads((run_dir / EVAL_DIR / SUMMARY_JSON).read_text())
                returns = read_episode_returns(run_dir / EVAL_DIR)
            found[run_dir.resolve()] = Run(run_dir, config, (summary or {}).get("env", config["env"]), summary, returns)
    return sorted(found.values(), key=lambda r: (r.game, r.agent, r.total_frames, r.seed, str(r.run_dir)))


MAX_CURVE_BINS = 25


def seed_curves(runs: list[Run], budget: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(bin centres [E], per-run binned mean training returns [S, E]) of runs sharing a frame
    budget, or None if none logged an episode. Bins have equal widths over [0, budget]; there are
    at most MAX_CURVE_BINS of them and no more than the fewest distinct logging points of a run."""
    logs = [read_training_episodes(r.run_dir) for r in runs]
    logs = [(f, y) for f, y in logs if f.size]
    if not logs:
        return None
    bins = max(2, min(MAX_CURVE_BINS, min(np.unique(f).size for f, _ in logs)))
    edges = np.linspace(0.0, float(max(budget, max(f.max() for f, _ in logs))), bins + 1)
    curves = np.stack([metrics.binned_mean(f, y, edges) for f, y in logs])  # [S, E]
    return 0.5 * (edges[:-1] + edges[1:]), curves


# --- tables ------------------------------------------------------------------------------------

def _variants(runs: list[Run]) -> dict[tuple[str, int], str]:
    """Display names of (agent, frame budget): the agent alone when every run has one budget."""
    keys = sorted({(r.agent, r.total_frames) for r in runs})
    budgets = {k[1] for k in keys}
    return {k: k[0] if len(budgets) == 1 else f"{k[0]} @ {_frames(k[1])}" for k in keys}


def _frames(n: float) -> str:
    return f"{n:.3g}" if n >= 1e6 else f"{int(n):,}"


def _millions(n: float) -> str:
    return f"{n / 1e6:.3g}M" if n else "0"


def _num(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.4g}"


def _pct(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:.1f}%"


def _ci(interval: metrics.Interval, fmt) -> str:
    return "n/a" if math.isnan(interval.low) else f"[{fmt(interval.low)}, {fmt(interval.high)}]"


def per_run_rows(runs: list[Run], base: Path | None = None) -> list[dict[str, Any]]:
    rows = []
    for r in runs:
        if r.returns is None:
            continue
        s = r.summary
        rows.append({
            "run_dir": str(r.run_dir if base is None else _relative(r.run_dir, base)),
            "game": r.game, "agent": r.agent, "seed": r.seed, "frame_budget": r.total_frames,
            "frames_trained": s.get("checkpoint_frames"), "protocol": s.get("protocol"), "policy": s.get("policy"),
            "episodes": int(r.returns.size), "raw_score": r.score, "normalized_score": r.normalized,
            "preset": r.config.get("preset") or "", "trained_on": describe_trained_on(r.run_dir, s.get("checkpoint_frames")),
        })
    return rows


def describe_trained_on(run_dir: Path, frames_trained: int | None) -> str:
    """Where and in which arithmetic a run trained, e.g. "cpu bf16 0–9.3M, cpu fp32 9.3M–20M" ("cpu
    fp32" for one stretch); "n/a" for a run without attempts.json (it predates the file)."""
    stretches = trained_on(run_dir)
    if not stretches:
        return "n/a"
    if len(stretches) == 1:
        return f"{stretches[0].device} {stretches[0].precision}"
    parts = []
    for stretch in stretches:
        end = stretch.end if stretch.end is not None else frames_trained
        span = f"{_millions(stretch.start)}–{_millions(end) if end is not None else ''}"
        parts.append(f"{stretch.device} {stretch.precision} {span}")
    return ", ".join(parts)


def _relative(path: Path, base: Path) -> Path:
    """``path`` as seen from the report directory ``base`` (so links work where the report is read)."""
    return Path(os.path.relpath(path.resolve(), base.resolve()))


def per_game_rows(runs: list[Run]) -> list[dict[str, Any]]:
    """One row per (game, agent, budget): mean over seeds of the runs' scores, with t-intervals."""
    groups: dict[tuple[str, str, int], list[Run]] = defaultdict(list)
    for r in runs:
        if r.returns is not None:
            groups[(r.game, r.agent, r.total_frames)].append(r)
    names = _variants(runs)
    rows = []
    for (game, agent, budget), group in sorted(groups.items()):
        raw = metrics.mean_ci([r.score for r in group])
        ref = group[0].reference
        norm = metrics.mean_ci([r.normalized for r in group]) if ref else metrics.Interval(math.nan, math.nan, math.nan)
        rows.append({"game": game, "agent": names[(agent, budget)], "frame_budget": budget,
                     "seeds": len(group), "episodes_per_seed": sorted({int(r.returns.size) for r in group}),
                     "raw": raw, "normalized": norm, "reference": ref, "peers": peers_at(game, budget)})
    return rows


def peers_at(game: str, frames: int) -> list[tuple[str, float]]:
    """(peer label, return) of each published peer curve of ``game`` with a point at exactly ``frames``."""
    return [(c.label, value) for c in peer_curves() if c.game == game and (value := c.at(frames)) is not None]


def peer_points(game: str, last_frame: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{peer label: (frames [P], returns [P])}: the points of ``game``'s peer curves at frames up to
    ``last_frame`` (the end of the plot's x range); peers with no such point are left out."""
    points = {}
    for c in peer_curves():
        frames, returns = np.asarray(c.frames, np.float64), np.asarray(c.returns, np.float64)  # [P]
        shown = frames <= last_frame
        if c.game == game and shown.any():
            points[c.label] = (frames[shown], returns[shown])
    return points


def _normalized_by_suite(runs: list[Run]) -> dict[str, dict[tuple[str, int], dict[str, list[float]]]]:
    """suite -> (agent, budget) -> game -> the normalised scores of its evaluated runs."""
    by_suite: dict[str, dict[tuple[str, int], dict[str, list[float]]]] = {}
    for r in runs:
        if r.returns is not None and r.reference is not None:
            games = by_suite.setdefault(r.reference.suite, {}).setdefault((r.agent, r.total_frames), {})
            games.setdefault(r.game, []).append(r.normalized)
    return by_suite


def aggregate_rows(runs: list[Run], *, reps: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """Per suite, per agent: median, IQM, mean and optimality gap of the runs' normalised scores."""
    names = _variants(runs)
    by_suite = _normalized_by_suite(runs)
    out: dict[str, list[dict[str, Any]]] = {}
    for suite in SUITES:
        rows = []
        for key, games in sorted(by_suite.get(suite, {}).items()):
            scores = metrics.score_matrix([games[g] for g in sorted(games)])  # [N, M]
            rows.append({"agent": names[key], "frame_budget": key[1], "games": sorted(games),
                         "runs": int((~np.isnan(scores)).sum()),
                         **metrics.aggregate_intervals(scores, reps=reps, seed=seed)})
        if rows:
            out[suite] = rows
    return out


def improvement_rows(runs: list[Run], *, reps: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """Per suite with at least two agents, per ordered pair (X, Y) of agents: P(X > Y) over the games
    both ran, with its stratified-bootstrap interval (``metrics.probability_of_improvement_ci``).

    Each unordered pair is bootstrapped once: P(Y > X) = 1 - P(X > Y) holds in every resample, so the
    reversed row's interval is the mirror of the forward one's percentiles."""
    names = _variants(runs)
    out: dict[str, list[dict[str, Any]]] = {}
    for suite, by_agent in _normalized_by_suite(runs).items():
        if suite not in SUITES or len(by_agent) < 2:
            continue
        rows = {}
        keys = sorted(by_agent)
        for i, x_key in enumerate(keys):
            for y_key in keys[i + 1:]:
                x_games, y_games = by_agent[x_key], by_agent[y_key]
                common = sorted(set(x_games) & set(y_games))
                p = metrics.Interval(math.nan, math.nan, math.nan)
                if common:
                    x = metrics.score_matrix([x_games[g] for g in common])  # [N, M]
                    y = metrics.score_matrix([y_games[g] for g in common])  # [K, M]
                    p = metrics.probability_of_improvement_ci(x, y, reps=reps, seed=seed)
                x_runs, y_runs = [len(x_games[g]) for g in common], [len(y_games[g]) for g in common]
                rows[x_key, y_key] = {"x": names[x_key], "y": names[y_key], "games": common,
                                      "x_runs": x_runs, "y_runs": y_runs, "probability": p}
                rows[y_key, x_key] = {"x": names[y_key], "y": names[x_key], "games": common,
                                      "x_runs": y_runs, "y_runs": x_runs,
                                      "probability": metrics.Interval(1 - p.value, 1 - p.high, 1 - p.low)}
        out[suite] = [rows[pair] for pair in sorted(rows)]
    return out


def paper_comparison_rows(aggregates: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Each published result beside ours for the same model (Atari HNS only)."""
    ours: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in aggregates.get("atari", []):
        agent = row["agent"].split(" @ ")[0]
        for model, presets in PAPER_MODELS.items():
            if agent in presets:
                ours[model].append(row)
    rows = []
    for p in paper_results():
        mine = ours.get(p.model) or [None]
        for row in mine:
            rows.append({"paper": p, "ours": row})
    return rows


# --- the document ----------------------------------------------------------------------------------

class Table(NamedTuple):
    header: list[str]
    rows: list[list[str]]


class Image(NamedTuple):
    path: Path  # relative to the report's directory
    caption: str


Block = tuple[str, Any]  # ("h1" | "h2" | "h3" | "p" | "ul", text or items) or ("table", Table) or ("image", Image)


def build_report(roots: list[str | Path], out: str | Path, *, reps: int = 50_000, seed: int = 0,
                 title: str = "s3ta evaluation report", replace: bool = True) -> dict[str, Path]:
    """Write ``report.md``, ``report.html``, ``plots/*.png`` and CSV tables into ``out``.

    ``out`` is checked once the runs are found and before any number is computed: it must be a
    writable directory, and a report already there is kept (``OutputExistsError``) unless
    ``replace``. The report is written into a staging directory beside ``out`` and moved in when
    complete: a replaced report goes as a whole (no plot of the old one stays), and a failed write
    (a full disk) leaves the old one as it was.
    """
    from s3ta.outputs import writable_dir

    out = Path(out)
    runs = find_runs(roots)
    if not runs:
        raise ValueError(f"no run directories (with config.json) under {', '.join(map(str, roots))}")
    earlier = earlier_report_files(out, replace)
    writable_dir(out)
    staging = out.resolve().parent / f".{out.resolve().name}.partial"
    shutil.rmtree(staging, ignore_errors=True)  # from a report that was killed
    (staging / "plots").mkdir(parents=True)
    try:
        written = _write_report(runs, roots, out, staging, reps=reps, seed=seed, title=title)
        for path in earlier:
            path.unlink()
        for path in sorted(staging.rglob("*")):
            target = out / path.relative_to(staging)
            if path.is_dir():
                target.mkdir(exist_ok=True)
            else:
                path.replace(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {name: out / path.relative_to(staging) for name, path in written.items()}


def _write_report(runs: list[Run], roots: list[str | Path], out: Path, staging: Path, *, reps: int, seed: int,
                  title: str) -> dict[str, Path]:
    """The report's files, written into ``staging``; links to runs are relative to ``out``."""
    from s3ta.evaluation import plots

    evaluated = [r for r in runs if r.returns is not None]
    games = per_game_rows(runs)
    aggregates = aggregate_rows(runs, reps=reps, seed=seed)
    improvements = improvement_rows(runs, reps=reps, seed=seed)
    budgets = sorted({r.total_frames for r in runs})
    blocks: list[Block] = [("h1", title)]
    blocks.append(("p", f"{len(runs)} run directories under {', '.join(f'`{r}`' for r in roots)}; "
                        f"{len(evaluated)} evaluated. Frame budgets: "
                        f"{', '.join(_frames(b) + ' frames' for b in budgets)} per run "
                        "(environment frames = agent steps x action repeat)."))
    missing = [r for r in runs if r.returns is None]
    if missing:
        listed = ", ".join(f"`{_relative(r.run_dir, out)}`" for r in missing)
        blocks.append(("p", f"Not evaluated yet (curves only): {listed}."))
    blocks += _method_blocks(reps, seed)

    blocks.append(("h2", "Scores per game"))
    peer_names = ", ".join(sorted({c.label for c in peer_curves()}))
    blocks.append(("p", "Peer at budget: the return a published implementation reached on the game at the run's "
                        f"frame budget, from {PEER_SOURCE} (its header names the source): {peer_names}. Empty where "
                        "that file has no point at this budget. These are mean returns of training episodes read "
                        "off a published plot by eye, not evaluation scores: a guide to what the budget can reach, "
                        "not a matched comparison."))
    blocks.append(("table", _game_table(games)))

    blocks.append(("h2", "Aggregate scores"))
    if not aggregates:
        blocks.append(("p", "No evaluated run has reference scores, so no aggregate is computed."))
    for suite, rows in aggregates.items():
        name, meaning = SUITES[suite]
        blocks.append(("h3", name))
        games_run = "; ".join(f"{r['agent']}: {', '.join(r['games'])}" for r in rows)
        blocks.append(("p", f"{meaning} Aggregates are over this suite's games only; each agent's row uses the "
                            f"games it ran: {games_run}."))
        blocks.append(("table", _aggregate_table(rows)))
        path = plots.aggregate_intervals(rows, staging / "plots" / f"aggregates-{suite}.png", name)
        caption = f"{name}: point estimates and 95% stratified-bootstrap intervals."
        blocks.append(("image", Image(path.relative_to(staging), caption)))
        if suite in improvements:
            blocks += _improvement_blocks(improvements[suite])
            pairs = plots.improvement_pairs(improvements[suite])
            if pairs:
                path = plots.improvement_intervals(pairs, staging / "plots" / f"improvement-{suite}.png", name)
                caption = f"{name}: probability of improvement of each pair of agents, 95% intervals."
                blocks.append(("image", Image(path.relative_to(staging), caption)))
    if "atari" not in aggregates:
        blocks.append(("p", "Human-normalised aggregates are computed over Atari games only; these runs have none."))

    blocks.append(("h2", "Comparison with the paper"))
    blocks += _paper_blocks(aggregates)

    blocks.append(("h2", "Learning curves"))
    blocks.append(("p", "Raw return of training episodes (metrics.jsonl) against environment frames: each run's "
                   "episodes are averaged in equal frame bins; the line is the mean over seeds, the band spans "
                   "the lowest to the highest seed. Training episodes are played by the learning (sampled) policy."))
    names = _variants(runs)
    for game in sorted({r.game for r in runs}):
        game_runs = [r for r in runs if r.game == game]
        series, drawn_budgets = {}, []
        for key in sorted({(r.agent, r.total_frames) for r in game_runs}):
            found = seed_curves([r for r in game_runs if (r.agent, r.total_frames) == key], key[1])
            if found is not None:
                series[names[key]] = found
                drawn_budgets.append(key[1])
        if not series:
            blocks.append(("p", f"{game}: no training episodes logged."))
            continue
        peers = peer_points(game, max(drawn_budgets))  # the largest budget drawn ends the x range
        path = plots.learning_curves(series, staging / "plots" / f"curve-{_slug(game)}.png", game,
                                     game_runs[0].reference, peers)
        caption = f"{game}: return of training episodes, mean over seeds with a min-max band."
        for label, (frames, _) in peers.items():
            caption += (f" Markers: {label}, at {', '.join(_frames(f) for f in frames)} frames ({PEER_SOURCE}, "
                        "training-episode returns).")
        blocks.append(("image", Image(path.relative_to(staging), caption)))

    blocks.append(("h2", "Runs"))
    blocks.append(("p", "Each run's score is the mean of the `return` column of `RUN/eval/episodes.csv`. Preset: the "
                        "version the run started from (`config.json`). Trained on: the device and arithmetic of each "
                        "stretch of frames (`attempts.json`; bf16 asked for on a CPU without bf16 instructions trains "
                        "in fp32)."))
    run_rows = per_run_rows(runs, out)
    blocks.append(("table", Table(
        ["run", "game", "agent", "seed", "frames trained", "protocol", "policy", "episodes", "raw score", "normalised",
         "preset", "trained on"],
        [[f"`{r['run_dir']}`", r["game"], r["agent"], str(r["seed"]), _frames(r["frames_trained"] or 0),
          str(r["protocol"]), str(r["policy"]), str(r["episodes"]), _num(r["raw_score"]), _pct(r["normalized_score"]),
          f"`{r['preset']}`" if r["preset"] else "", r["trained_on"]]
         for r in run_rows])))

    files = {"markdown": staging / "report.md", "html": staging / "report.html", "runs_csv": staging / "runs.csv",
             "games_csv": staging / "games.csv", "aggregates_csv": staging / "aggregates.csv",
             "improvement_csv": staging / "improvement.csv"}
    files["markdown"].write_text(render_markdown(blocks))
    files["html"].write_text(render_html(blocks, staging, title))
    _write_csv(files["runs_csv"], run_rows)
    _write_csv(files["games_csv"], [_flatten_game(g) for g in games])
    _write_csv(files["aggregates_csv"],
               [_flatten_aggregate(suite, a) for suite, rows in aggregates.items() for a in rows])
    _write_csv(files["improvement_csv"],
               [_flatten_improvement(suite, i) for suite, rows in improvements.items() for i in rows])
    return files


REPORT_FILES = ("report.md", "report.html", "runs.csv", "games.csv", "aggregates.csv", "improvement.csv")
REPORT_PLOTS = ("aggregates-*.png", "improvement-*.png", "curve-*.png")  # in OUT/plots


def earlier_report_files(out: Path, replace: bool) -> list[Path]:
    """The files of a report already in ``out``; ``OutputExistsError`` if there are any and not ``replace``."""
    from s3ta.outputs import refuse_to_replace

    plots = sorted(p for pattern in REPORT_PLOTS for p in (out / "plots").glob(pattern)) if out.is_dir() else []
    files = refuse_to_replace(out, REPORT_FILES, "a report", replace)
    if plots and not replace:
        refuse_to_replace(out, [str(plots[0].relative_to(out))], "a report", False)
    return files + plots


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _method_blocks(reps: int, seed: int) -> list[Block]:
    return [("h2", "How the numbers are computed"), ("ul", [
        "Run score: the mean raw (undiscounted, unclipped) return of the run's evaluation episodes, "
        "`RUN/eval/episodes.csv`; the evaluation settings (protocol, sampled or greedy actions, episodes) are in "
        "`RUN/eval/summary.json` and in the Runs table.",
        "Normalised score of a run: (score - random) / (reference - random), the reference being the human score for "
        "Atari games and the optimal return for the built-in tasks; other envs are reported raw only.",
        "Per game: the mean over seeds of the run scores, with a 95% Student-t interval over seeds "
        "(mean +- t(0.975, seeds - 1) x sd / sqrt(seeds); n/a with one seed).",
        "Aggregates (Agarwal et al. 2021), over the normalised scores of all runs of a suite: median and mean of the "
        "per-game means; IQM = the mean of the middle 50% of all run scores (floor(n/4) dropped at each end); "
        "optimality gap = 1 - mean(min(score, 1)) (lower is better).",
        f"Aggregate intervals: 95% percentile intervals of {reps:,} stratified bootstrap resamples (each game's runs "
        f"resampled with replacement, independently per game; games kept), generator seed {seed}.",
        "Probability of improvement P(X > Y) (Agarwal et al. 2021), for two agents over the games both ran: per game, "
        "the fraction of (X run, Y run) pairs in which X's score is higher, a tie counting 1/2 (the Mann-Whitney U "
        "statistic over N x K pairs); then the mean over games. It depends only on the order of scores within a game. "
        f"Its 95% interval: {reps:,} stratified bootstrap resamples in which X's and Y's runs are resampled "
        f"independently within each game, generator seed {seed}. With one run per game for both agents a resample "
        "is the sample itself, so the interval has no width: it then reflects no seed variation.",
    ])]


def _game_table(rows: list[dict[str, Any]]) -> Table:
    body = []
    for g in rows:
        ref: Reference | None = g["reference"]
        norm = g["normalized"]
        body.append([g["game"], g["agent"], _frames(g["frame_budget"]), str(g["seeds"]),
                     "/".join(map(str, g["episodes_per_seed"])), _num(g["raw"].value), _ci(g["raw"], _num),
                     _pct(norm.value) if ref else "", _ci(norm, _pct) if ref else "",
                     f"{_num(ref.low)} / {_num(ref.high)} ({ref.high_name})" if ref else "none",
                     _peer_cell(g["peers"])])
    return Table(["game", "agent", "frame budget", "seeds", "episodes/seed", "raw mean", "raw 95% CI",
                  "normalised mean", "normalised 95% CI", "random / reference", "peer at budget"], body)


def _peer_cell(peers: list[tuple[str, float]]) -> str:
    """The peer's return; each named when there are several."""
    if len(peers) == 1:
        return _num(peers[0][1])
    return "; ".join(f"{_num(value)} ({label})" for label, value in peers)


def _improvement_blocks(rows: list[dict[str, Any]]) -> list[Block]:
    body = []
    for r in rows:
        p = r["probability"]
        runs = f"{_run_counts(r['x_runs'])} / {_run_counts(r['y_runs'])}" if r["games"] else ""
        single = sum(x == y == 1 for x, y in zip(r["x_runs"], r["y_runs"]))  # games with one run of each
        if not r["games"]:
            note = "no game in common"
        elif single == len(r["games"]):
            note = "1 run per game: the interval reflects no seed variation"
        elif single:
            note = f"1 run of each on {single} of {len(r['games'])} games: those add no seed variation"
        else:
            note = ""
        body.append([r["x"], r["y"], str(len(r["games"])), runs, _num(p.value), _ci(p, _num), note])
    return [
        ("p", "Probability of improvement: the probability that a run of agent X scores higher than a run of agent "
              "Y on the same game, averaged over the games both ran (0.5: neither is ahead; above 0.5: X is). "
              "Each ordered pair has a row; P(Y > X) = 1 - P(X > Y)."),
        ("table", Table(["X", "Y", "games", "runs per game (X / Y)", "P(X > Y)", "95% CI", "note"], body)),
    ]


def _run_counts(counts: list[int]) -> str:
    """The runs per game as "3", or "1-3" when the games differ."""
    low, high = min(counts), max(counts)
    return str(low) if low == high else f"{low}-{high}"


def _aggregate_table(rows: list[dict[str, Any]]) -> Table:
    body = [[r["agent"], str(len(r["games"])), str(r["runs"])]
            + [f"{_pct(r[m].value)} {_ci(r[m], _pct)}" for m in metrics.AGGREGATES] for r in rows]
    return Table(["agent", "games", "runs", "median [95% CI]", "IQM [95% CI]", "mean [95% CI]",
                  "optimality gap [95% CI]"], body)


def _paper_blocks(aggregates: dict[str, list[dict[str, Any]]]) -> list[Block]:
    rows = []
    for entry in paper_comparison_rows(aggregates):
        p, ours = entry["paper"], entry["ours"]
        paper_cells = [f"{p.table} ({PAPER_GAMES[p.table]} games)", p.model, f"{p.median_hns_percent:.1f}%",
                       f"{p.mean_hns_percent:.1f}%", PAPER_BUDGETS[p.table]]
        if ours is None:
            rows.append(paper_cells + ["not run", "", "", "", ""])
        else:
            rows.append(paper_cells + [
                ours["agent"], str(len(ours["games"])), f"{_pct(ours['median'].value)} {_ci(ours['median'], _pct)}",
                f"{_pct(ours['mean'].value)} {_ci(ours['mean'], _pct)}",
                f"{_frames(ours['frame_budget'])} frames per run",
            ])
    return [
        ("p", "Published human-normalised scores (Mott et al. 2019; s3ta/data/paper_results.csv) beside ours for the "
              "same model. The paper's Table 1 reports one agent per game over all 57 games and does not state its "
              "frame budget; its top-down ablation covers 7 games at 2e9 steps each. Ours are aggregates over the "
              "Atari games we ran, at our budget, so they are comparable only where the games and budgets match."),
        ("table", Table(["paper table", "model", "paper median", "paper mean", "paper budget",
                         "our agent", "our games", "our median [95% CI]", "our mean [95% CI]", "our budget"], rows)),
    ]


def _flatten_game(g: dict[str, Any]) -> dict[str, Any]:
    ref = g["reference"]
    return {"game": g["game"], "agent": g["agent"], "frame_budget": g["frame_budget"], "seeds": g["seeds"],
            "raw_mean": g["raw"].value, "raw_ci_low": g["raw"].low, "raw_ci_high": g["raw"].high,
            "normalized_mean": g["normalized"].value, "normalized_ci_low": g["normalized"].low,
            "normalized_ci_high": g["normalized"].high, "reference": ref.high_name if ref else "",
            "peer_at_budget": "; ".join(str(value) for _, value in g["peers"])}


def _flatten_aggregate(suite: str, a: dict[str, Any]) -> dict[str, Any]:
    row = {"suite": suite, "agent": a["agent"], "frame_budget": a["frame_budget"], "games": " ".join(a["games"]),
           "runs": a["runs"]}
    for m in metrics.AGGREGATES:
        row.update({m: a[m].value, f"{m}_ci_low": a[m].low, f"{m}_ci_high": a[m].high})
    return row


def _flatten_improvement(suite: str, i: dict[str, Any]) -> dict[str, Any]:
    p = i["probability"]
    return {"suite": suite, "x": i["x"], "y": i["y"], "games": " ".join(i["games"]),
            "x_runs_per_game": " ".join(map(str, i["x_runs"])), "y_runs_per_game": " ".join(map(str, i["y_runs"])),
            "probability_of_improvement": p.value, "ci_low": p.low, "ci_high": p.high}


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as f:
        if rows:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


# --- rendering ------------------------------------------------------------------------------------

def render_markdown(blocks: list[Block]) -> str:
    parts = []
    for kind, content in blocks:
        if kind in ("h1", "h2", "h3"):
            parts.append("#" * int(kind[1]) + " " + content)
        elif kind == "p":
            parts.append(content)
        elif kind == "ul":
            parts.append("\n".join(f"- {item}" for item in content))
        elif kind == "table":
            lines = ["| " + " | ".join(map(_md_cell, content.header)) + " |",
                     "|" + "|".join("---" for _ in content.header) + "|"]
            lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in content.rows]
            parts.append("\n".join(lines))
        elif kind == "image":
            parts.append(f"![{content.caption}]({content.path.as_posix()})\n\n*{content.caption}*")
    return "\n\n".join(parts) + "\n"


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def _inline_html(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(str(text), quote=False))


def render_html(blocks: list[Block], base: Path, title: str) -> str:
    """One self-contained HTML file: the images are embedded as base64 PNG."""
    body = []
    for kind, content in blocks:
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{_inline_html(content)}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{_inline_html(content)}</p>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in content) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{_inline_html(h)}</th>" for h in content.header)
            rows = "".join("<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row) + "</tr>"
                           for row in content.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "image":
            data = base64.b64encode((base / content.path).read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(content.caption)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{_inline_html(content.caption)}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.4}"
             "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
             "th,td{border:1px solid #ccc;padding:0.3em 0.6em;text-align:left}th{background:#f3f3f3}"
             "img{max-width:100%}figcaption{font-style:italic;color:#555}code{background:#f3f3f3;padding:0 0.2em}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
