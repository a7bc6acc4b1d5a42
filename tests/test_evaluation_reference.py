"""Reference scores: the packaged 57-game human/random table and HNS formula, the paper's results,
and the built-in tasks' random and optimal returns checked against the environments themselves."""

import numpy as np
import pytest

from s3ta import envs
from s3ta.evaluation import reference
from s3ta.evaluation.reference import hns


def test_table_has_the_57_games_of_the_env_module():
    table = reference.atari_human_random()
    assert len(table) == 57
    assert set(table) == set(envs.ATARI_GAMES)
    assert all(human > random for random, human in table.values())


@pytest.mark.parametrize("game, random, human", [
    ("pong", -20.7, 14.6), ("breakout", 1.7, 30.5), ("alien", 227.8, 7127.7),
    ("montezuma_revenge", 0.0, 4753.3), ("skiing", -17098.1, -4336.9), ("zaxxon", 32.5, 9173.3),
])
def test_table_values(game, random, human):
    assert reference.atari_human_random()[game] == (random, human)


def test_hns_formula():
    assert hns("pong", -20.7) == pytest.approx(0.0)
    assert hns("pong", 14.6) == pytest.approx(1.0)
    assert hns("pong", 21.0) == pytest.approx((21.0 + 20.7) / (14.6 + 20.7))
    assert hns("breakout", 30.5 + 28.8) == pytest.approx(2.0)
    np.testing.assert_allclose(hns("pong", np.array([-20.7, 14.6])), [0.0, 1.0])
    with pytest.raises(ValueError, match="57 Atari games"):
        hns("catch", 1.0)


def test_reference_lookup_by_any_atari_spelling():
    for env_id in ("ms_pacman", "ALE/MsPacman-v5", "MsPacmanNoFrameskip-v4"):
        ref = reference.reference_for(env_id)
        assert ref.suite == "atari" and (ref.low, ref.high) == reference.atari_human_random()["ms_pacman"]
        assert reference.game_name(env_id) == "ms_pacman"
    assert reference.reference_for("catch").suite == "builtin"
    assert reference.reference_for("CartPole-v1") is None
    assert reference.game_name("find-target") == "find-target"


def test_packaged_csvs_keep_their_sources():
    assert any("DQN Zoo" in line for line in reference.source_notes("atari_human_random.csv"))
    assert any("Mott et al. 2019" in line for line in reference.source_notes("paper_results.csv"))
    assert any("vwxyzjn/cleanba" in line for line in reference.source_notes("peer_curves.csv"))


def test_paper_results():
    results = {(r.table, r.model): r for r in reference.paper_results()}
    assert len(results) == 6
    s3ta = results[("atari57", "s3ta")]
    assert (s3ta.median_hns_percent, s3ta.mean_hns_percent) == (407.1, 1649.0)
    assert results[("ablation7", "l2-keys")].median_hns_percent == 274.5


def test_peer_curves():
    curves = {c.game: c for c in reference.peer_curves()}
    # all seven games, spelled as game_name() spells the ALE ids
    assert sorted(curves) == sorted(reference.game_name(env_id) for env_id in (
        "ALE/Breakout-v5", "ALE/Pong-v5", "ALE/SpaceInvaders-v5", "ALE/Seaquest-v5", "ALE/MsPacman-v5",
        "ALE/Qbert-v5", "ALE/BeamRider-v5"))
    for curve in curves.values():
        assert curve.peer == "cleanba_impala" and "±15%" in curve.label
        assert curve.frames == (10_000_000, 20_000_000, 40_000_000, 200_000_000)
    assert curves["breakout"].returns == (40.0, 170.0, 300.0, 482.0)
    assert curves["space_invaders"].at(200_000_000) == 28766.0 and curves["pong"].at(20_000_000) == 15.0
    assert curves["qbert"].at(30_000_000) is None


def test_find_target_random_return_is_the_hitting_probability():
    # Exact value: a clipped 4-way random walk on the 8 x 8 grid, target absorbing, 30 steps,
    # averaged over all (start, target) pairs of distinct cells.
    grid, steps = 8, 30
    cells = grid * grid
    move = np.zeros((cells, cells))
    for cell in range(cells):
        row, col = divmod(cell, grid)
        for d_row, d_col in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            r, c = min(max(row + d_row, 0), grid - 1), min(max(col + d_col, 0), grid - 1)
            move[cell, r * grid + c] += 0.25
    total = 0.0
    for target in range(cells):
        absorbing = move.copy()
        absorbing[target] = 0.0
        absorbing[target, target] = 1.0
        hit = np.linalg.matrix_power(absorbing, steps)[:, target]
        total += hit.sum() - 1.0  # the start == target pair is not a task
    exact = total / (cells * (cells - 1))
    assert reference.BUILTIN_REFERENCES["find-target"].low == pytest.approx(exact, abs=1e-6)


@pytest.mark.parametrize("task", ["catch", "find-target"])
def test_builtin_references_match_the_environments(task):
    ref = reference.BUILTIN_REFERENCES[task]
    num_envs, episodes = 64, 3000
    rng = np.random.default_rng(0)
    for policy, expected in (("random", ref.low), ("optimal", ref.high)):
        env = envs.make(task, num_envs, seed=1)
        env.reset()
        returns = []
        while len(returns) < episodes:
            if policy == "random":
                actions = rng.integers(0, env.num_actions, num_envs)
            else:
                actions = env.optimal_actions()
            step = env.step(actions)
            returns.extend(step.episode_return[step.done])
        returns = np.array(returns)
        tolerance = 4 * returns.std() / np.sqrt(returns.size) + 1e-12
        assert abs(returns.mean() - expected) <= tolerance, (policy, returns.mean(), expected)
