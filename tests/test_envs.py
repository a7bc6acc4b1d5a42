"""Tests of s3ta.envs: ids, the TimeStep convention, built-in tasks, Atari protocol, gym wrapper."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

import s3ta
from s3ta.envs import ATARI_GAMES, BUILTIN_TASKS, list_envs, make
from s3ta.envs.atari import game_from_id
from s3ta.envs.grid import render

BUILTINS = sorted(BUILTIN_TASKS)


# --- make / ids ---------------------------------------------------------------------------------


def test_atari_games_match_score_table():
    csv = Path(s3ta.__file__).parent / "data" / "atari_human_random.csv"
    rows = [line for line in csv.read_text().splitlines() if line and not line.startswith("#")]
    games = [line.split(",")[0] for line in rows[1:]]
    assert len(ATARI_GAMES) == 57
    assert tuple(games) == ATARI_GAMES
    assert list_envs() == [*BUILTIN_TASKS, *ATARI_GAMES]


@pytest.mark.parametrize(
    "env_id, game",
    [
        ("breakout", "breakout"),
        ("ALE/Breakout-v5", "breakout"),
        ("BreakoutNoFrameskip-v4", "breakout"),
        ("ALE/MsPacman-v5", "ms_pacman"),
        ("MontezumaRevengeNoFrameskip-v4", "montezuma_revenge"),
        ("UpNDownDeterministic-v4", "up_n_down"),
        ("SpaceInvaders-v4", "space_invaders"),
        ("CartPole-v1", None),
    ],
)
def test_atari_ids_map_to_rom_names(env_id, game):
    assert game_from_id(env_id) == game


@pytest.mark.parametrize(
    "env_id, suggestion",
    [
        ("brekout", "breakout"),
        ("ALE/Brekout-v5", "breakout"),
        ("find_targt", "find-target"),
        ("spaceinvaders", "space_invaders"),
    ],
)
def test_unknown_id_names_close_matches(env_id, suggestion):
    with pytest.raises(ValueError, match=suggestion):
        make(env_id, 1)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="protocol"):
        make("catch", 1, protocol="dqn")
    for num_envs in (0, -1, 1.5):
        with pytest.raises(ValueError, match="num_envs"):
            make("catch", num_envs)
    with pytest.raises(ValueError, match="multiple of 8"):
        make("catch", 1, size=60)
    env = make("catch", 2, seed=0)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(2, np.int64))
    env.reset()
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3, np.int64))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        env.step(np.array([0, 3]))
    with pytest.raises(ValueError, match="integers"):
        env.step(np.zeros(2))


# --- built-in tasks -------------------------------------------------------------------------------


def reference_render(env, kind_ids, rows, cols):
    """Slow per-env, per-object reference for the vectorised renderer."""
    cell = env.cell
    img = np.zeros((len(kind_ids), 3, env.size, env.size), np.uint8)
    for b in range(len(kind_ids)):
        for kind, row, col in zip(kind_ids[b], rows[b], cols[b], strict=True):
            patch = img[b, :, row * cell : (row + 1) * cell, col * cell : (col + 1) * cell]
            patch[:, env._sprites[kind]] = env._colours[kind][:, None]
    return img


def run_random(env, steps, seed=0):
    rng = np.random.default_rng(seed)
    timesteps = [env.reset()]
    for _ in range(steps):
        timesteps.append(env.step(rng.integers(0, env.num_actions, env.num_envs)))
    return timesteps


@pytest.mark.parametrize("task", BUILTINS)
def test_builtin_interface(task):
    env = make(task, 5, seed=0)
    assert env.observation_shape == (3, 64, 64) and env.frames_per_step == 1
    assert env.num_actions == len(env.action_names) == {"catch": 3, "find-target": 4}[task]
    ts = env.reset()
    assert ts.obs.shape == (5, 3, 64, 64) and ts.obs.dtype == np.uint8
    assert ts.done.all() and np.isnan(ts.episode_return).all() and (ts.episode_length == 0).all()
    assert ts.reward.dtype == np.float32 and ts.episode_length.dtype == np.int64
    small = make(task, 2, seed=0, size=32, grid=4)
    assert small.reset().obs.shape == (2, 3, 32, 32)
    for size in (48, 64, 128):  # every kind of object looks different at any allowed size
        env = make(task, 1, size=size)
        looks = {(m.tobytes(), tuple(c)) for m, c in zip(env._sprites, env._colours, strict=True)}
        assert len(looks) == len(env.KINDS)
    with pytest.raises(ValueError, match="6 pixels"):
        make(task, 1, size=32)


@pytest.mark.parametrize("task", BUILTINS)
def test_renderer_matches_loop_reference(task):
    env = make(task, 6, seed=1)
    for _ in run_random(env, 20):
        kind_ids, rows, cols = env._objects()
        fast = render(kind_ids, rows, cols, env._sprites, env._colours, env.grid)
        np.testing.assert_array_equal(fast, reference_render(env, kind_ids, rows, cols))


@pytest.mark.parametrize(
    "task, size, grid", [(t, *g) for t in BUILTINS for g in ((64, 8), (48, 8), (32, 4))]
)
def test_boxes_match_pixels(task, size, grid):
    env = make(task, 4, seed=2, size=size, grid=grid)
    colour_of = {tuple(c) for c in env._colours.tolist()}
    for ts in run_random(env, 40):
        for b in range(env.num_envs):
            img = ts.obs[b].transpose(1, 2, 0)  # [H, W, RGB]
            boxes, labels = ts.info["boxes"][b], ts.info["box_labels"][b]
            assert boxes.dtype == np.float32 and boxes.shape == (len(labels), 4)
            inside = np.zeros(img.shape[:2], bool)
            for x0, y0, x1, y1 in boxes.astype(int):
                assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size
                region = img[y0:y1, x0:x1].any(axis=-1)
                # tight: the object's pixels touch all four edges of its box
                assert (
                    region[0].any()
                    and region[-1].any()
                    and region[:, 0].any()
                    and region[:, -1].any()
                )
                inside[y0:y1, x0:x1] = True
            assert not img[~inside].any(), "object pixels outside every box"
            assert {tuple(c) for c in img[inside].reshape(-1, 3).tolist()} <= colour_of | {
                (0, 0, 0)
            }


def test_box_colours_are_the_objects():
    from s3ta.envs.catch import BALL, PADDLE
    from s3ta.envs.find_target import CURSOR, TARGET

    for task, unique in (
        ("catch", {"ball": BALL, "paddle": PADDLE}),
        ("find-target", {"cursor": CURSOR}),
    ):
        env = make(task, 4, seed=3)
        for ts in run_random(env, 30):
            for b in range(env.num_envs):
                img = ts.obs[b].transpose(1, 2, 0)
                for label, kind in unique.items():
                    x0, y0, x1, y1 = ts.info["boxes"][b][
                        ts.info["box_labels"][b].index(label)
                    ].astype(int)
                    is_colour = (img == kind.colour).all(axis=-1)
                    assert is_colour[y0:y1, x0:x1].any()
                    is_colour[y0:y1, x0:x1] = False
                    assert not is_colour.any(), f"{label} colour outside its box"
    env = make("find-target", 4, seed=4)
    for ts in run_random(env, 10):
        for b in range(4):
            x0, y0, x1, y1 = ts.info["boxes"][b][ts.info["box_labels"][b].index("target")].astype(
                int
            )
            assert (
                (ts.obs[b, :, y0:y1, x0:x1].transpose(1, 2, 0) == TARGET.colour).all(-1)
            ).sum() > 4


@pytest.mark.parametrize("task", BUILTINS)
def test_builtin_determinism(task):
    first = run_random(make(task, 4, seed=7), 30)
    again = run_random(make(task, 4, seed=7), 30)
    other = run_random(make(task, 4, seed=8), 30)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.obs, b.obs)
        np.testing.assert_array_equal(a.reward, b.reward)
        np.testing.assert_array_equal(a.done, b.done)
    assert any((a.obs != c.obs).any() for a, c in zip(first, other, strict=True))
    env = make(task, 4, seed=7)
    run_random(env, 5)
    np.testing.assert_array_equal(env.reset(seed=7).obs, first[0].obs)  # reset(seed) reseeds


def test_catch_timestep_convention_and_returns():
    env = make("catch", 64, seed=0)
    ts = env.reset()
    for t in range(1, 8):
        ts = env.step(env.optimal_actions())
        assert ts.done.all() == (t == 7)
    # done: reward is the old episode's last, obs the new episode's first (ball on the top row)
    assert (
        (ts.reward == 1.0).all()
        and (ts.episode_return == 1.0).all()
        and (ts.episode_length == 7).all()
    )
    ball = np.array(
        [
            boxes[labels.index("ball")]
            for boxes, labels in zip(ts.info["boxes"], ts.info["box_labels"], strict=True)
        ]
    )
    assert (ball[:, 1] < env.cell).all()
    ts = env.step(env.optimal_actions())
    assert (
        not ts.done.any() and np.isnan(ts.episode_return).all() and (ts.episode_length == 0).all()
    )
    returns = [ts.episode_return[ts.done] for ts in run_random(make("catch", 64, seed=1), 70)[1:]]
    random_return = np.concatenate(returns).mean()
    assert random_return < -0.3  # about -0.76


def test_find_target_returns():
    env = make("find-target", 64, seed=0)
    env.reset()
    returns, lengths = [], []
    for _ in range(40):
        ts = env.step(env.optimal_actions())
        returns.append(ts.episode_return[ts.done])
        lengths.append(ts.episode_length[ts.done])
    assert (np.concatenate(returns) == 1.0).all() and np.concatenate(lengths).max() <= 14
    random = [
        ts.episode_return[ts.done] for ts in run_random(make("find-target", 64, seed=1), 90)[1:]
    ]
    assert np.concatenate(random).mean() < 0.5  # about 0.22
    num_lost = 0
    for ts in run_random(make("find-target", 64, seed=2, max_steps=2), 6)[1:]:
        lost = ts.done & (ts.episode_return == 0)
        num_lost += lost.sum()
        assert (ts.episode_length[lost] == 2).all() and (ts.info["truncated"] == lost).all()
    assert num_lost > 0


@pytest.mark.parametrize("task", BUILTINS)
def test_builtin_episode_bookkeeping(task):
    env = make(task, 8, seed=5)
    running_return, running_length = np.zeros(8), np.zeros(8, int)
    for ts in run_random(env, 50)[1:]:
        running_return += ts.reward
        running_length += 1
        np.testing.assert_array_equal(ts.episode_return[ts.done], running_return[ts.done])
        np.testing.assert_array_equal(ts.episode_length[ts.done], running_length[ts.done])
        assert (
            np.isnan(ts.episode_return[~ts.done]).all() and (ts.episode_length[~ts.done] == 0).all()
        )
        running_return[ts.done], running_length[ts.done] = 0, 0


# --- Atari ----------------------------------------------------------------------------------------


def test_atari_paper_protocol():
    env = make("ALE/Breakout-v5", 2, seed=0)
    try:
        assert env.game == "breakout" and env.protocol == "paper"
        assert env.observation_shape == (3, 210, 160) and env.frames_per_step == 4
        assert (
            env.num_actions == 18
            and len(env.action_names) == 18
            and env.action_names[:2] == ("NOOP", "FIRE")
        )
        assert env.max_episode_frames == 108_000  # no-ops, sticky actions, the cap: tests/test_atari_protocol.py
        ts = env.reset()
        assert (
            ts.obs.shape == (2, 3, 210, 160)
            and ts.obs.dtype == np.uint8
            and ts.obs.flags.c_contiguous
        )
        assert ts.done.all() and np.isnan(ts.episode_return).all()
        ts = env.step(np.array([1, 3]))
        assert ts.obs.shape == (2, 3, 210, 160) and not ts.done.any()
        assert set(ts.info) >= {"lives", "frame_number", "episode_frame_number", "truncated"}
    finally:
        env.close()


def test_atari_rewards_are_raw():
    env = make("space_invaders", 4, seed=0)  # aliens are worth 5 to 30 points
    try:
        rewards = np.concatenate([ts.reward for ts in run_random(env, 200)])
    finally:
        env.close()
    assert rewards.max() > 1 and (rewards % 5 == 0).all()  # unclipped points


def test_atari_frame_cap_and_bookkeeping():
    # machado has no no-ops, so a 400-frame cap ends every episode after exactly 100 agent steps
    env = make("pong", 2, seed=0, protocol="machado", max_num_frames_per_episode=400)
    try:
        timesteps = run_random(env, 101)
    finally:
        env.close()
    assert not any(ts.done.any() for ts in timesteps[1:100])
    end = timesteps[100]
    assert end.done.all() and end.info["truncated"].all() and (end.episode_length == 100).all()
    np.testing.assert_array_equal(
        end.episode_return, np.sum([ts.reward for ts in timesteps[1:101]], axis=0)
    )
    assert (end.info["episode_frame_number"] == 0).all()  # obs is the new episode's first
    np.testing.assert_array_equal(
        end.obs, timesteps[0].obs
    )  # without no-ops pong always starts alike
    assert not timesteps[101].done.any() and np.isnan(timesteps[101].episode_return).all()


def test_atari_determinism():
    envs = [make("breakout", 2, seed=3) for _ in range(2)]
    first, again = (run_random(env, 20) for env in envs)
    for env in envs:
        env.close()
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.obs, b.obs)
        np.testing.assert_array_equal(a.reward, b.reward)


# --- Gymnasium wrapper ----------------------------------------------------------------------------

TINY_ENV_MODULE = '''
"""A tiny image env for s3ta tests; registers TinyImage-v0 when imported."""
import gymnasium
import numpy as np


class TinyImage(gymnasium.Env):
    """Obs is a 12x10 RGB image filled with the step count; episodes end after 3 steps."""

    def __init__(self, layout="HWC", action_space="discrete"):
        shape = {"HWC": (12, 10, 3), "CHW": (3, 12, 10), "HW": (12, 10)}[layout]
        self.observation_space = gymnasium.spaces.Box(0, 255, shape, np.uint8)
        self.action_space = (gymnasium.spaces.Discrete(2) if action_space == "discrete"
                             else gymnasium.spaces.Box(-1, 1, (1,)))
        self._t = 0

    def _obs(self):
        return np.full(self.observation_space.shape, self._t, np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self._obs(), {}

    def step(self, action):
        self._t += 1
        return self._obs(), float(action) + 10 * self._t, self._t == 3, False, {}


gymnasium.register("TinyImage-v0", entry_point=TinyImage)
'''


@pytest.fixture
def tiny_module(tmp_path, monkeypatch):
    (tmp_path / "s3ta_tiny_image_env.py").write_text(textwrap.dedent(TINY_ENV_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "s3ta_tiny_image_env:TinyImage-v0"


@pytest.mark.parametrize("layout", ["HWC", "CHW", "HW"])
def test_gym_wrapper_on_tiny_image_env(tiny_module, layout):
    env = make(tiny_module, 3, seed=0, layout=layout)
    channels = 1 if layout == "HW" else 3
    assert (
        env.observation_shape == (channels, 12, 10)
        and env.num_actions == 2
        and env.frames_per_step == 1
    )
    ts = env.reset()
    assert ts.obs.shape == (3, channels, 12, 10) and ts.done.all() and (ts.obs == 0).all()
    for t in (1, 2):
        ts = env.step(np.array([0, 1, 1]))
        assert not ts.done.any() and (ts.obs == t).all()
    ts = env.step(np.array([1, 0, 1]))
    assert ts.done.all() and (ts.obs == 0).all()  # the new episode's first obs
    np.testing.assert_array_equal(ts.reward, [31, 30, 31])
    np.testing.assert_array_equal(ts.episode_return, [10 + 20 + 31, 11 + 21 + 30, 11 + 21 + 31])
    assert (ts.episode_length == 3).all() and not ts.info["truncated"].any()
    env.close()


def test_gym_wrapper_rejects_unsuitable_envs(tiny_module):
    with pytest.raises(ValueError, match="not an image"):
        make("CartPole-v1", 2)
    with pytest.raises(ValueError, match="Discrete"):
        make(tiny_module, 1, action_space="box")


def test_atari_accepts_any_seed_a_seed_sequence_can_give():
    env = make("breakout", 2, seed=0)
    assert env.reset(seed=3_900_000_000).obs.shape == (2, 3, 210, 160)
    env.close()
