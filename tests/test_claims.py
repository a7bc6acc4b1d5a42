"""The measures of the paper's five interpretability claims (issue 38, ``s3ta.analysis.claims``), each on
synthetic arrays whose answer is known: a case where the claim is true and one where it is false. No
Atari agent is trained; one test records 30 steps of an untrained agent to run the command end to end."""

import argparse
import json
import math

import numpy as np
import pytest

from s3ta.analysis import claims
from s3ta.analysis.geometry import box_mask, pixel_mass

FAST = {"block": 10, "draws": 200, "seed": 0}


# --- intervals ---------------------------------------------------------------------------------
def test_block_bootstrap_interval_covers_the_mean_of_independent_steps_with_the_normal_width():
    values = np.random.default_rng(1).normal(3.0, 2.0, 2000)
    estimate = claims.ratio_of_sums(values, np.ones_like(values), block=1, draws=1000, seed=0)
    assert estimate.value == pytest.approx(values.mean())
    assert estimate.low < 3.0 < estimate.high
    assert estimate.high - estimate.low == pytest.approx(2 * 1.96 * 2.0 / math.sqrt(2000), rel=0.15)


def test_block_indices_are_runs_of_consecutive_steps():
    idx = claims.block_indices(100, 10, 5, seed=0)
    assert idx.shape == (5, 100)
    runs = idx.reshape(5, 10, 10)
    assert (np.diff(runs, axis=-1) == 1).all()
    assert idx.min() >= 0 and idx.max() < 100


def test_basic_interval_corrects_the_bias_of_a_sampled_entropy():
    cells = np.random.default_rng(0).integers(0, 64, 400)  # 6 bits; 400 draws see fewer, a resample fewer still
    statistic = lambda idx: claims.cell_entropy(cells[idx], 64)  # noqa: E731
    percentile = claims.bootstrap(statistic, 400, block=1, draws=300)
    basic = claims.bootstrap(statistic, 400, block=1, draws=300, basic=True)
    assert percentile.high < 6.0  # the plain interval misses the truth
    assert basic.low < 6.0 < basic.high and abs(basic.value - 6.0) < abs(percentile.value - 6.0)


def test_cell_shares_equal_pixel_mass_summed_over_the_mask():
    rng = np.random.default_rng(0)
    attention = rng.dirichlet(np.ones(140), 3).reshape(3, 14, 10)
    mask = rng.random((210, 160)) < 0.2
    fast = (attention * claims.cell_shares(mask, 14, 10)).sum((-1, -2))
    slow = (pixel_mass(attention, 210, 160) * mask).sum((-1, -2))
    np.testing.assert_allclose(fast, slow, rtol=1e-5)


def test_modal_colour_equals_the_most_common_row_of_unique():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 3, (3, 20, 30)).astype(np.uint8) * 100
    frame[:, :12] = np.array([7, 200, 13], np.uint8)[:, None, None]
    colours, counts = np.unique(frame.reshape(3, -1).T, axis=0, return_counts=True)
    np.testing.assert_array_equal(claims.modal_colour(frame), colours[counts.argmax()])


# --- claim 1: what and where ---------------------------------------------------------------
def _logits(seed=0, steps=200, heads=2):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(steps, heads, 6, 5)), rng.normal(size=(steps, heads, 6, 5))


def test_content_share_is_one_for_content_only_and_zero_for_position_only_heads():
    content, spatial = _logits()
    content[:, 1] = 0.0  # head 1 queries by position only
    spatial[:, 0] = 5.0  # head 0's spatial logits are flat (a constant does not move the softmax)
    shares = claims.content_share(content, spatial, **FAST)
    np.testing.assert_allclose(shares.value, [1.0, 0.0], atol=1e-12)


def test_content_share_splits_the_variance_of_parts_that_move_together_evenly():
    content, _ = _logits()
    shares = claims.content_share(content, content.copy(), **FAST)  # l = 2c: each part carries half of Var(l)
    np.testing.assert_allclose(shares.value, 0.5, atol=1e-12)


def test_content_share_ignores_a_constant_offset_of_the_content_logits():
    content, spatial = _logits()
    base = claims.content_share(content, spatial, **FAST).value
    shifted = claims.content_share(content + 40.0, spatial, **FAST).value
    np.testing.assert_allclose(base, shifted, atol=1e-12)


def test_what_where_verdict_holds_when_heads_split_and_not_when_they_match_the_control():
    content, spatial = _logits()
    content[:, 0] *= 3  # head 0: what (share 0.9)
    spatial[:, 1] *= 3  # head 1: where (share 0.1)
    shares = claims.content_share(content, spatial, **FAST)
    spread = claims.head_spread(content, spatial, **FAST)
    control = claims.head_spread(*_logits(seed=1), **FAST)
    assert claims.what_where_verdict(shares, spread, control)[0] == "holds"
    same, same_spread = claims.content_share(*_logits(seed=2), **FAST), claims.head_spread(*_logits(seed=2), **FAST)
    assert claims.what_where_verdict(same, same_spread, control)[0] == "does not hold"
    content, spatial = _logits(seed=3)
    content *= 3  # every head queries by content alike: no split
    all_what = claims.content_share(content, spatial, **FAST)
    assert (all_what.low > 0.5).all()
    all_spread = claims.head_spread(content, spatial, **FAST)
    assert claims.what_where_verdict(all_what, all_spread, control)[0] == "does not hold"


# --- claim 2: what heads look at -------------------------------------------------------------
def _game_frames(steps=120, seed=0):
    """Frames [T, 3, 40, 50] with a score digit (rows 2..6, columns 30..36) that changes one step after
    each reward, a ball that moves everywhere every step, a brick that vanishes after one reward, and a
    lamp (rows 35..38, columns 40..46) that switches every third step, rewarded or not."""
    rng = np.random.default_rng(seed)
    reward = (rng.random(steps) < 0.1).astype(np.float32)
    obs = np.zeros((steps, 3, 40, 50), np.uint8)
    score = 0
    for t in range(steps):
        obs[t, :, 2:7, 30:37] = (score * 37) % 250 + 5  # the digit's colour stands for its value
        obs[t, :, 20 + t % 15, (3 * t) % 50] = 200  # the ball
        if t <= 40:
            obs[t, :, 12:14, 5:12] = 90  # a brick, gone after step 40
        obs[t, :, 35:38, 40:46] = 120 * ((t // 3) % 2)  # the lamp
        score += int(reward[t])
    reward[40] = 1.0
    return obs, reward


def test_score_box_is_the_digit_that_changes_after_rewards_not_the_ball_or_a_brick():
    obs, reward = _game_frames()
    starts = np.zeros(len(reward), bool)
    starts[0] = True
    assert claims.score_box(obs, reward, starts) == (30.0, 2.0, 37.0, 7.0)


def test_no_score_box_when_the_digit_changes_unrelated_to_rewards():
    obs, reward = _game_frames()
    starts = np.zeros(len(reward), bool)
    shuffled = np.random.default_rng(5).permutation(reward)
    box = claims.score_box(obs, shuffled, starts)
    assert box is None or not (box[0] <= 30 and box[2] >= 37 and box[1] <= 2 and box[3] >= 7)


def test_lives_box_follows_the_drops_of_the_lives_count_and_leaves_out_a_player_who_dies_in_one_place():
    steps = 120
    lives = np.repeat([4, 3, 2, 1], 30)
    obs = np.zeros((steps, 3, 30, 30), np.uint8)
    sprites = np.zeros((steps, 30, 30), bool)
    for t in range(steps):
        obs[t, :, 25:29, 2:8] = 40 * lives[t]  # the lives digit
        obs[t, :, t % 20, (7 * t) % 30] = 255  # a sprite moving about
        obs[t, :, 10:14, 20:24] = 99 - 20 * (4 - lives[t])  # the player, who dies at one place and looks
        sprites[t, 10:14, 20:24] = True  # different after each death: an object (RAM box) like a display
    starts = np.zeros(steps, bool)
    assert claims.lives_box(obs, lives, starts, sprites=sprites) == (2.0, 25.0, 8.0, 29.0)
    with_player = claims.lives_box(obs, lives, starts)
    assert with_player is not None and with_player[2] == 24.0  # without the objects' boxes it takes the player in


def test_region_ahead_along_each_heading_and_none_without_one():
    box = (40.0, 100.0, 56.0, 104.0)
    assert claims.region_ahead(box, (0, -1), 30, 8, 210, 160) == (32.0, 70.0, 64.0, 100.0)
    assert claims.region_ahead(box, (0, 1), 30, 8, 210, 160) == (32.0, 104.0, 64.0, 134.0)
    assert claims.region_ahead(box, (1, 0), 30, 8, 210, 160) == (56.0, 92.0, 86.0, 112.0)
    assert claims.region_ahead(box, (np.nan, np.nan), 30, 8, 210, 160) is None
    assert claims.region_ahead((0.0, 0.0, 10.0, 10.0), (-1, 0), 30, 0, 210, 160) is None  # off the frame


def test_headings_follow_the_last_move_and_reset_at_an_episode_start():
    centres = np.array([[10, 10], [12, 10], [12, 10], [12, 7], [50, 7], [60, 7]], float)
    starts = np.array([True, False, False, False, True, False])
    headings = claims.headings_from_motion(centres, starts)
    np.testing.assert_array_equal(headings[1:4], [[1, 0], [1, 0], [0, -1]])
    assert np.isnan(headings[0]).all() and np.isnan(headings[4]).all()
    np.testing.assert_array_equal(headings[5], [1, 0])


def test_lift_is_above_chance_for_a_head_on_the_target_and_exactly_one_for_a_uniform_head():
    rng = np.random.default_rng(0)
    steps, h, w = 100, 14, 10
    attention = np.full((steps, 2, h, w), 1.0 / (h * w))
    attention[:, 0] = rng.dirichlet(np.ones(h * w) * 0.5, steps).reshape(steps, h, w) * 0.5
    attention[:, 0, 0, 4] += 0.5  # head 0 puts half its mass on the target's cell
    target = box_mask(np.array([[64.0, 0.0, 80.0, 15.0]]), 210, 160)  # exactly cell (0, 4)
    lift = claims.target_lift(attention, target, **FAST)
    assert lift["lift"][0]["low"] > 30  # chance is 1/140 of the frame
    assert lift["lift"][1]["value"] == pytest.approx(1.0)
    assert lift["lift"][1]["low"] == pytest.approx(1.0) and lift["lift"][1]["high"] == pytest.approx(1.0)
    assert claims.looks_at_verdict(lift)[0] == "holds"
    uniform = claims.target_lift(attention[:, 1:], target, **FAST)
    assert claims.looks_at_verdict(uniform)[0] == "does not hold"


def test_looks_at_does_not_hold_when_an_untrained_agent_puts_as_much_there():
    steps = 50
    attention = np.full((steps, 2, 14, 10), 0.5 / 139)
    attention[:, :, 13, 4] = 0.5  # both on a cell of the bottom row, as padding can make an untrained map do
    target = box_mask(np.array([[64.0, 195.0, 80.0, 210.0]]), 210, 160)  # cell (13, 4)
    lift = claims.target_lift(attention[:, :1], target, **FAST)
    untrained = claims.target_lift(attention[:, 1:], target, **FAST)
    assert claims.looks_at_verdict(lift)[0] == "holds"
    assert claims.looks_at_verdict(lift, untrained=untrained)[0] == "does not hold"


def test_looks_at_is_partly_when_the_control_region_gets_more():
    steps = 50
    attention = np.zeros((steps, 1, 14, 10))
    attention[:, 0, 2, 2], attention[:, 0, 10, 2] = 0.3, 0.7
    ahead = box_mask(np.array([[32.0, 30.0, 48.0, 45.0]]), 210, 160)  # cell (2, 2)
    behind = box_mask(np.array([[32.0, 150.0, 48.0, 165.0]]), 210, 160)  # cell (10, 2)
    verdict = claims.looks_at_verdict(claims.target_lift(attention, ahead, **FAST),
                                      claims.target_lift(attention, behind, **FAST))
    assert verdict[0] == "partly"


# --- claim 5: trip wires ------------------------------------------------------------------
def test_cell_entropy_in_bits():
    assert claims.cell_entropy(np.zeros(10, int), 8) == 0.0
    assert claims.cell_entropy(np.arange(8).repeat(3), 8) == pytest.approx(3.0)


def test_row_crossings_count_being_in_the_row_and_jumping_over_it_within_an_episode():
    rows = np.array([np.nan, 3, 4, 6, 7, 5, np.nan, 4, 6])
    starts = np.array([True, False, False, False, False, False, False, True, False])
    crossing = claims.row_crossings(rows, 5, starts)
    np.testing.assert_array_equal(crossing, [False, False, False, True, False, True, False, False, True])
    starts[8] = True  # a new episode between 4 and 6: no crossing
    assert not claims.row_crossings(rows, 5, starts)[8]


def _trip_wire_world(steps=600, seed=0):
    """A ball bouncing between rows 1 and 12 of a 14 x 10 map at random columns; head 0 a trip wire on cell
    (6, 4) whose mass jumps when the ball is in row 6; head 1 follows the ball; head 2 sits on (6, 4) and never
    fires; head 3 is a wire on (3, 7) but moves its peak about (not fixed); head 4 is noise."""
    rng = np.random.default_rng(seed)
    h, w = 14, 10
    rows = np.abs((np.arange(steps) % 22) - 11) + 1.0
    cols = rng.integers(0, w, steps)
    cells = (rows * w + cols).astype(int)
    attention = np.full((steps, 5, h, w), 0.4 / (h * w - 1))
    for t in range(steps):
        attention[t, 0, 6, 4] = 0.6 if rows[t] == 6 else 0.15
        attention[t, 1].flat[cells[t]] = 0.6
        attention[t, 2, 6, 4] = 0.5 + 0.1 * rng.random()
        attention[t, 3].flat[rng.integers(0, h * w)] = 0.5
        attention[t, 3, 3, 7] = 0.9 if rows[t] == 3 else 0.45
        attention[t, 4] = rng.dirichlet(np.ones(h * w)).reshape(h, w)  # noise
    attention /= attention.sum((-1, -2), keepdims=True)
    starts = np.zeros(steps, bool)
    starts[0] = True
    return attention, rows, cells, starts


def test_trip_wires_find_the_fixed_head_that_fires_when_the_ball_crosses_its_row():
    attention, rows, cells, starts = _trip_wire_world()
    heads = claims.trip_wires(attention, rows, cells, starts, **FAST)
    assert heads[0]["wire_cell"] == [6, 4] and heads[0]["verdict"] == "holds"
    assert heads[0]["lift"]["low"] > 2  # 0.6 / 0.15 = 4 before normalising, (0.6 / 1) / (0.15 / 0.55) = 2.2 after
    assert 0.8 < heads[0]["shifted_lift"]["mean"] < 1.3
    assert not heads[1]["fixed"]  # it moves with the ball
    assert heads[2]["fixed"] and not heads[2]["fires"] and heads[2]["verdict"] == "partly"
    assert heads[3]["wire_cell"] == [3, 7] and heads[3]["fires"] and not heads[3]["fixed"]
    assert claims.trip_wire_verdict(heads)[0] == "holds"


def test_trip_wires_do_not_hold_when_no_head_is_fixed_or_fires():
    attention, rows, cells, starts = _trip_wire_world()
    heads = claims.trip_wires(attention[:, 4:], rows, cells, starts, **FAST)
    assert heads[0]["verdict"] == "does not hold"
    assert claims.trip_wire_verdict(heads)[0] == "does not hold"


# --- actions -----------------------------------------------------------------------------------
NAMES = ("NOOP", "FIRE", "UP", "RIGHT", "LEFT", "DOWN", "UPRIGHT", "UPLEFT", "DOWNRIGHT", "DOWNLEFT", "UPFIRE",
         "RIGHTFIRE", "LEFTFIRE", "DOWNFIRE", "UPRIGHTFIRE", "UPLEFTFIRE", "DOWNRIGHTFIRE", "DOWNLEFTFIRE")


def _one_hot(*names):
    probs = np.zeros((len(names), len(NAMES)))
    for i, name in enumerate(names):
        probs[i, NAMES.index(name)] = 1.0
    return probs


def test_reaction_towards_away_and_fire_by_the_actions_directions():
    geometry = claims.action_geometry(NAMES)
    probs = _one_hot("RIGHT", "LEFT", "FIRE", "UP", "DOWNLEFTFIRE", "UP")
    player = np.array([[50, 100]] * 6, float)
    target = np.array([[90, 101], [90, 101], [90, 101], [50, 60], [50, 60], [np.nan, np.nan]])
    moves = claims.reaction(probs, player, target, geometry)
    np.testing.assert_array_equal(moves.towards[:5], [1, 0, 0, 1, 0])
    np.testing.assert_array_equal(moves.away[:5], [0, 1, 0, 0, 1])
    np.testing.assert_array_equal(moves.fire[:5], [0, 0, 1, 0, 1])
    assert np.isnan(moves.towards[5]) and moves.fire[5] == 0


# --- claim 3: novel objects -------------------------------------------------------------------
def test_first_attended_and_bouts():
    mass = np.array([[0.01, 0.0], [0.06, 0.0], [0.01, 0.0], [0.0, 0.07], [0.0, 0.08]])
    chance = np.full(5, 0.01)
    assert claims.first_attended(mass, chance) == 1
    assert claims.attention_bouts(mass, chance) == 2
    assert claims.first_attended(mass * 0.5, chance) is None


def _insertions(novel_effect: bool, count=12, steps=30, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        trial = {}
        for variant in claims.VARIANTS:
            chance = np.full(steps, 0.003)
            mass = np.full((steps, 2), 0.003)
            towards = 0.3 + 0.02 * rng.normal(size=steps)
            if novel_effect and variant == "novel":
                mass[4:, 0] = 0.03  # 10x chance from step 4 on
                towards = towards + 0.2  # and drawn towards it in every window
            trial[variant] = {"mass": mass, "chance": chance, "towards": towards,
                              "away": 0.3 + 0.02 * rng.normal(size=steps), "fire": np.full(steps, 0.5)}
        out.append(trial)
    return out


def test_novel_object_holds_when_the_sprite_is_attended_and_drawn_towards_again_and_again():
    summary = claims.summarise_insertions(_insertions(True), window=10)
    assert summary["variants"]["novel"]["attended"]["value"] == 1.0
    assert summary["variants"]["patch"]["attended"]["value"] == 0.0
    assert summary["variants"]["novel"]["median_steps_to_attend"] == 4
    towards = summary["effects"]["novel - patch"]["towards"]
    assert len(towards) == 3 and all(w["ci95"][0] > 0.1 for w in towards)
    assert claims.novel_object_verdict(summary)[0] == "holds"


def test_novel_object_does_not_hold_when_the_sprite_changes_nothing():
    summary = claims.summarise_insertions(_insertions(False), window=10)
    assert summary["variants"]["novel"]["attended"]["value"] == 0.0
    assert claims.novel_object_verdict(summary)[0] == "does not hold"


def test_swim_path_stays_inside_the_visible_columns():
    path = claims.swim_path(200, 11, 69, -1, 3, (8, 160))
    xs = np.array([x for x, _ in path])
    assert xs.min() >= 8 and xs.max() + 11 <= 160 and {y for _, y in path} == {69}
    assert xs[1] == xs[0] - 3
    every = {x for x, _ in claims.swim_path(400, 11, 69, 1, 1, (8, 160))}
    assert every == set(range(8, 150))  # every column from the left edge to the right edge


def test_patch_and_copy_controls():
    from s3ta.analysis.inject import Sprite

    sprite = Sprite.load("invader")
    patch = claims.patch_like(sprite, np.array([0, 28, 136], np.uint8))
    np.testing.assert_array_equal(patch.mask, sprite.mask)
    assert (patch.rgb == [0, 28, 136]).all()
    frame = np.zeros((3, 40, 40), np.uint8)
    frame[2] = 136
    frame[:, 10:14, 20:28] = 200
    copy = claims.crop_object(frame, (18.0, 9.0, 30.0, 15.0), claims.modal_colour(frame))
    assert copy.mask.sum() == 32 and copy.mask.shape == (6, 12)


# --- claim 4: planning ---------------------------------------------------------------------
BLUE, WALL = np.array([0, 28, 136], np.uint8), np.array([228, 111, 111], np.uint8)


def _maze():
    """A 3 x 60 x 80 frame of wall with a horizontal corridor (rows 20..32, columns 4..76), a vertical one
    (rows 4..32, columns 36..46), a dot in the horizontal one at columns 56..60, and a hall (rows 40..60)
    below a wall, so that the background colour is the most common one, as in Ms. Pac-Man."""
    frame = np.broadcast_to(WALL[:, None, None], (3, 60, 80)).copy()
    frame[:, 20:32, 4:76] = BLUE[:, None, None]
    frame[:, 4:32, 36:46] = BLUE[:, None, None]
    frame[:, 40:60] = BLUE[:, None, None]
    frame[:, 25:27, 56:60] = WALL[:, None, None]
    return frame


def test_corridor_runs_to_the_wall_and_not_to_a_dot():
    np.testing.assert_array_equal(claims.modal_colour(_maze()), BLUE)
    walls = claims.wall_mask(_maze(), BLUE)
    player = (37.0, 21.0, 45.0, 31.0)
    right = claims.corridor(walls, player, (1, 0), 100)
    assert right.any(1).sum() == 10 and np.flatnonzero(right.any(0)).tolist() == list(range(45, 76))
    left = claims.corridor(walls, player, (-1, 0), 20)
    assert np.flatnonzero(left.any(0)).tolist() == list(range(17, 37))  # reach 20
    up = claims.corridor(walls, player, (0, -1), 100)
    assert np.flatnonzero(up.any(1)).tolist() == list(range(4, 21))


def test_away_probability_counts_moves_towards_no_ghost():
    geometry = claims.action_geometry(NAMES)
    probs = np.zeros(len(NAMES))
    for name, p in (("LEFT", 0.4), ("UP", 0.1), ("RIGHT", 0.3), ("NOOP", 0.2)):
        probs[NAMES.index(name)] = p
    assert claims.away_probability(probs, [(1, 0)], geometry) == pytest.approx(0.5)  # a reversal or a turn
    assert claims.away_probability(probs, [(1, 0), (-1, 0)], geometry) == pytest.approx(0.1)  # only the turn


def _planning_world(avoids: bool, steps=80):
    """Ms. Pac-Man in the maze's crossing, heading right. Heads look into the right-hand corridor (ahead) at
    every step; a ghost sits in the right corridor (the attended one) on even steps and in the left one on odd
    steps; the policy always moves left (away from the attended ghost, towards the other) when ``avoids``, else
    always right."""
    frame = _maze()
    obs = np.broadcast_to(frame, (steps, *frame.shape)).copy()
    player = (37.0, 21.0, 45.0, 31.0)
    attention = np.full((steps, 2, 6, 8), 0.5 / 47)
    attention[:, :, 2, 5:8] = 0.5 / 3  # cells over x 50..80, rows 20..30
    attention /= attention.sum((-1, -2), keepdims=True)
    ghosts, probs = [], np.zeros((steps, len(NAMES)))
    for t in range(steps):
        ghost = (60.0, 21.0, 68.0, 31.0) if t % 2 == 0 else (10.0, 21.0, 18.0, 31.0)
        ghosts.append(np.array([ghost]))
        probs[t, NAMES.index("LEFT" if avoids else "RIGHT")] = 1.0
    headings = np.tile([1.0, 0.0], (steps, 1))
    return obs, attention, [player] * steps, ghosts, [np.array([player])] * steps, headings, probs


@pytest.mark.parametrize("avoids", [True, False])
def test_corridor_steps_and_the_planning_verdict(avoids):
    obs, attention, players, ghosts, clear, headings, probs = _planning_world(avoids)
    geometry = claims.action_geometry(NAMES)
    steps = claims.corridor_steps(obs, attention, players, ghosts, clear, headings, probs, geometry, reach=40)
    assert (steps.attended == list(claims.DIRECTIONS).index("right")).all()
    np.testing.assert_array_equal(steps.ghost_in_attended, np.arange(80) % 2 == 0)
    np.testing.assert_array_equal(steps.ghost_elsewhere, np.arange(80) % 2 == 1)
    ahead_minus_behind = claims.lift_difference(attention, steps.ahead, steps.behind, np.ones(80, bool), **FAST)
    assert ahead_minus_behind.low > 0
    away = claims.difference_of_means(np.nan_to_num(steps.away), steps.ghost_in_attended, steps.ghost_elsewhere, **FAST)
    verdict = claims.planning_verdict(ahead_minus_behind, away)[0]
    if avoids:
        assert away.value == pytest.approx(1.0) and verdict == "holds"
    else:
        assert away.value == pytest.approx(-1.0) and verdict == "partly"


# --- the command -----------------------------------------------------------------------------
def test_claims_command_end_to_end_on_a_short_recording(tmp_path, capsys):
    import torch

    from s3ta import agents
    from s3ta.analysis import claims_cli
    from s3ta.analysis.atari_objects import RamAtariEnv
    from s3ta.analysis.recording import record

    env = RamAtariEnv("breakout", seed=0)
    torch.manual_seed(0)
    agent = agents.build("s3ta-small", env.observation_shape, env.num_actions).eval()
    record(agent, env, 1, seed=0, max_steps=30, source={"env": "breakout"}).save(tmp_path / "rec")
    parser = argparse.ArgumentParser()
    claims_cli.add_parser(parser.add_subparsers(dest="command"))
    for claim in ("what-where", "looks-at", "trip-wires"):
        args = parser.parse_args(["claims", claim, "--agent", "s3ta-small", "--recording", str(tmp_path / "rec"),
                                  "--out", str(tmp_path / "out"), "--draws", "50"])
        assert args.func(args) == 0
        result = json.loads((tmp_path / "out" / f"claim-{claim}.json").read_text())
        assert result["verdict"] in ("holds", "partly", "does not hold") and result["recording"]["steps"] == 30
        assert (tmp_path / "out" / f"claim-{claim}.png").stat().st_size > 0
        assert "s3ta claims " + claim in (tmp_path / "out" / f"claim-{claim}.md").read_text()
    bad = parser.parse_args(["claims", "telepathy", "--agent", "s3ta-small", "--out", str(tmp_path / "out")])
    assert bad.func(bad) == 2
    assert "unknown claim 'telepathy'" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["lstm-small", "feedforward"])
def test_an_agent_without_attention_is_refused_before_anything_is_played(tmp_path, capsys, name):
    """lstm-small and the ResNet baselines have no heads: each claim says so in one line and writes nothing
    (the live claim 3 as much as the recorded ones), rather than playing episodes first."""
    from s3ta.analysis import claims_cli

    parser = argparse.ArgumentParser()
    claims_cli.add_parser(parser.add_subparsers(dest="command"))
    for claim in ("what-where", "novel-objects"):
        args = parser.parse_args(["claims", claim, "--agent", name, "--env", "breakout", "--out", str(tmp_path / "out")])
        assert args.func(args) == 2
        assert f"the claims are about attention heads, and {name} has none" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
