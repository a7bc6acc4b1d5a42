"""Reference scores that turn raw returns into normalised ones, the paper's published results and
other implementations' published learning curves.

Owns reading the packaged tables ``s3ta/data/atari_human_random.csv`` (random and human scores of
the 57 Atari games), ``s3ta/data/paper_results.csv`` (Mott et al. 2019 aggregates) and
``s3ta/data/peer_curves.csv`` (peers' returns at a few frame counts), and the random / optimal
returns of the built-in tasks.
"""

from __future__ import annotations

import csv
import functools
import io
import re
from importlib import resources
from typing import NamedTuple

from s3ta.evaluation.metrics import normalized_score


class Reference(NamedTuple):
    """The two scores a task's raw scores are normalised between: ``low`` maps to 0, ``high`` to 1."""

    suite: str  # "atari" (human-normalised) or "builtin" (optimal-normalised)
    low: float  # random-policy score
    high: float  # human score (Atari) or optimal return (built-in tasks)
    high_name: str  # "human" or "optimal"
    source: str


class PaperResult(NamedTuple):
    table: str  # "atari57" or "ablation7"
    model: str  # feedforward, lstm, s3ta, fixed-query, l2-keys
    median_hns_percent: float
    mean_hns_percent: float


class PeerCurve(NamedTuple):
    """Another implementation's published learning curve on one Atari game, at a few frame counts."""

    game: str  # ROM name, as game_name() spells it ("ms_pacman")
    peer: str  # the CSV's peer id ("cleanba_impala")
    label: str  # how plots and tables name the peer, with the precision of the numbers
    frames: tuple[int, ...]  # environment frames, increasing
    returns: tuple[float, ...]  # mean training-episode return at each of ``frames``

    def at(self, frames: int) -> float | None:
        """The return at exactly ``frames``, None where the curve has no point there."""
        return dict(zip(self.frames, self.returns)).get(int(frames))


# How each peer of peer_curves.csv is named: what it is, and how its numbers were obtained.
PEER_LABELS = {"cleanba_impala": "Cleanba IMPALA, deep ResNet (read off its plot, ±15%)"}
_PEER_COLUMN = re.compile(r"return_at_(\d+)M_frames")  # return_at_20M_frames -> 20e6 frames


# Built-in tasks (default options): uniformly random policy and optimal policy, exact values.
# catch: the ball's column is uniform and independent of the paddle, so a random paddle ends
#   under it with probability 1/8: return 1/8 - 7/8 = -0.75. find-target: probability that the
#   clipped 4-way random walk from a uniform start reaches a uniform distinct target within 30
#   steps (absorbing Markov chain on the 8 x 8 grid, averaged over the 64 x 63 pairs).
# Both tasks can always be solved, so the optimal return is 1. tests/test_evaluation_reference.py
# checks these against the environments' own random and ``optimal_actions`` policies.
BUILTIN_REFERENCES = {
    "catch": Reference("builtin", -0.75, 1.0, "optimal", "exact: uniformly random paddle catches 1/8"),
    "find-target": Reference("builtin", 0.211449, 1.0, "optimal", "exact: random walk hits target within 30 steps"),
}

_ATARI_SOURCE = "s3ta/data/atari_human_random.csv (DQN Zoo atari_data.py)"


def _read_csv(name: str) -> tuple[list[str], list[dict[str, str]]]:
    """(comment lines, rows) of a packaged CSV whose leading ``#`` lines state its source."""
    text = resources.files("s3ta").joinpath("data", name).read_text()
    comments = [line[1:].strip() for line in text.splitlines() if line.startswith("#")]
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    return comments, list(csv.DictReader(io.StringIO(body)))


@functools.cache
def atari_human_random() -> dict[str, tuple[float, float]]:
    """{game: (random, human)} for the 57 games, game by ROM name ("ms_pacman")."""
    _, rows = _read_csv("atari_human_random.csv")
    return {row["game"]: (float(row["random"]), float(row["human"])) for row in rows}


@functools.cache
def paper_results() -> tuple[PaperResult, ...]:
    _, rows = _read_csv("paper_results.csv")
    return tuple(PaperResult(r["table"], r["model"], float(r["median_hns_percent"]), float(r["mean_hns_percent"]))
                 for r in rows)


@functools.cache
def peer_curves() -> tuple[PeerCurve, ...]:
    """The rows of ``peer_curves.csv``: one curve per (game, peer), its points at the frame counts
    named by the ``return_at_<millions>M_frames`` columns (an empty cell is no point)."""
    _, rows = _read_csv("peer_curves.csv")
    curves = []
    for row in rows:
        game = row["game"]
        if game not in atari_human_random():
            raise ValueError(f"peer_curves.csv: {game!r} is not the ROM name of one of the 57 Atari games")
        points = sorted((int(match[1]) * 1_000_000, float(value)) for column, value in row.items()
                        if (match := _PEER_COLUMN.fullmatch(column)) and value.strip())
        if not points:
            raise ValueError(f"peer_curves.csv: the {game} row of {row['peer']} has no return_at_...M_frames value")
        curves.append(PeerCurve(game, row["peer"], PEER_LABELS.get(row["peer"], row["peer"]),
                                tuple(f for f, _ in points), tuple(r for _, r in points)))
    return tuple(curves)


def source_notes(name: str) -> list[str]:
    """The source comments at the top of a packaged CSV (``atari_human_random.csv``, ...)."""
    return _read_csv(name)[0]


def game_name(env_id: str) -> str:
    """The name an env id is reported under: the Atari ROM name for any spelling of an Atari id
    ("ALE/MsPacman-v5" -> "ms_pacman"), else the id itself."""
    from s3ta.envs.atari import snake_name  # the one parser of ALE ids

    name = snake_name(env_id)
    return name if name in atari_human_random() else env_id


def reference_for(env_id: str) -> Reference | None:
    """Normalisation references of ``env_id``: human/random for the 57 Atari games, optimal/random
    for the built-in tasks, None for anything else (reported as raw scores only)."""
    game = game_name(env_id)
    if game in atari_human_random():
        random, human = atari_human_random()[game]
        return Reference("atari", random, human, "human", _ATARI_SOURCE)
    return BUILTIN_REFERENCES.get(env_id)


def hns(game: str, score):
    """Human-normalised score of a raw Atari ``score`` (scalar or array): (score - random) / (human - random)."""
    table = atari_human_random()
    if game not in table:
        raise ValueError(f"{game!r} is not one of the 57 Atari games of the human/random table")
    random, human = table[game]
    return normalized_score(score, random, human)
