"""The Atari evaluation protocols (spec section 4) measured by behaviour, not by reading the settings
back: no-op starts, sticky actions, the frame cap (108k frames by default) and no episode end at a
lost life, as the emulator plays them. A short frame cap (``max_num_frames_per_episode``) makes
episodes last two steps, so one short run sees over a hundred episode starts.
"""

import numpy as np

from s3ta.envs import make

NOOP, RIGHT = 0, 3  # full action set


def test_paper_protocol_starts_every_episode_after_1_to_30_noop_frames():
    # ale-py's own noop_max=30 draws 0..29: one episode in 30 would start without randomisation
    env = make("pong", 4, seed=0, max_num_frames_per_episode=8)  # 2 agent steps per episode
    try:
        starts = [env.reset().info["episode_frame_number"]]
        for _ in range(80):
            ts = env.step(np.full(4, NOOP))
            starts.append(ts.info["episode_frame_number"][ts.done])
    finally:
        env.close()
    noops = np.concatenate(starts)  # an episode's first frame number counts its no-op frames
    assert len(noops) == 4 * 41
    assert noops.min() == 1 and noops.max() == 30, np.bincount(noops)
    assert len(set(noops.tolist())) >= 25  # roughly uniform: 5.5 expected per value


def test_machado_protocol_repeats_the_previous_action_a_quarter_of_the_time():
    # Each episode starts alike (no no-ops) with NOOP as the previous action; its first step pushes
    # RIGHT. The paddle ends where 4 frames of RIGHT put it unless the first frame repeated NOOP
    # (p = 0.25; then 3 frames, or fewer if the second frame repeated too, and so on).
    def first_step_outcomes(protocol: str, episodes_per_env: int) -> np.ndarray:
        env = make("breakout", 2, seed=0, protocol=protocol, max_num_frames_per_episode=8)
        try:
            env.reset()
            outcomes = []
            for _ in range(episodes_per_env):
                ts = env.step(np.full(2, RIGHT))
                assert not ts.done.any()
                outcomes.append(ts.obs[:, 0, 189:194].reshape(2, -1))  # the paddle's rows, red channel
                assert env.step(np.full(2, NOOP)).done.all()  # the cap starts the next episode
        finally:
            env.close()
        return np.concatenate(outcomes)

    outcomes = first_step_outcomes("machado", 60)  # 120 episode starts
    _, counts = np.unique(outcomes, axis=0, return_counts=True)
    counts = np.sort(counts)[::-1]
    repeated = 1 - counts[0] / len(outcomes)  # not the full 4 frames of RIGHT
    assert 0.12 < repeated < 0.38, counts  # 3 standard errors either side of 0.25
    assert len(counts) >= 3  # the first two frames repeated in ~6% of starts

    deterministic = first_step_outcomes("paper", 5)  # no-ops do not move breakout's paddle
    assert len(np.unique(deterministic, axis=0)) == 1


def test_frame_cap_counts_the_frames_after_the_noops():
    # 400 frames = 100 agent steps whatever the no-op count, which differs between envs
    env = make("pong", 4, seed=1, max_num_frames_per_episode=400)
    try:
        timesteps = [env.reset()] + [env.step(np.full(4, NOOP)) for _ in range(100)]
    finally:
        env.close()
    noops = timesteps[0].info["episode_frame_number"]
    assert len(set(noops.tolist())) > 1 and noops.min() >= 1
    assert not any(ts.done.any() for ts in timesteps[1:100])
    np.testing.assert_array_equal(timesteps[99].info["episode_frame_number"], noops + 99 * 4)
    end = timesteps[100]
    assert end.done.all() and end.info["truncated"].all() and (end.episode_length == 100).all()


def test_losing_a_life_does_not_end_the_episode():
    env = make("breakout", 1, seed=0)
    try:
        lives, ts = [env.reset().info["lives"][0]], None
        for _ in range(400):  # FIRE launches the ball and never moves the paddle: ~25 steps per life
            ts = env.step(np.array([1]))
            if ts.done[0]:
                break
            lives.append(ts.info["lives"][0])
    finally:
        env.close()
    assert ts.done[0] and not ts.info["truncated"][0]  # game over
    assert lives[0] == 5 and sorted(set(lives), reverse=True) == [5, 4, 3, 2, 1]  # four lives lost on the way
