"""Top-k cell deletion (s3ta.analysis.faithfulness_topk, issue 38 item 4) on cases whose answer is
known: a hand-made agent whose policy reads a moving sprite, a head that sits on it (faithful by
construction) and a head on an empty corner; and the same heads when the policy reads another sprite
that no head looks at (not faithful). Pure pieces against slow references written independently."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from s3ta.agents import AgentOutput
from s3ta.analysis import faithfulness_topk as ft
from s3ta.analysis.geometry import cell_footprint
from s3ta.analysis.recording import Recording

SIZE, GRID, CELL = 64, 8, 8  # 64x64 frames, an 8x8 attention map: each cell is 8x8 pixels
SPRITE = 4  # each sprite is 4x4 pixels in a corner of its cell (a quarter of the cell)
BALL, DECOY = 200, 100  # the values of the sprite the policy reads and of the other one


class ReadsSpriteAgent(nn.Module):
    """Two actions; logits [4 s - 2, 0] with s the share of the sprite's 16 pixels (value ``target``)
    still in the frame, value s. Clean: action 0 (p 0.88); the sprite deleted: action 1."""

    def __init__(self, target=BALL):
        super().__init__()
        self.target, self.observation_shape, self.num_actions, self.name = target, (3, SIZE, SIZE), 2, "reads-sprite"
        self.unused = nn.Parameter(torch.zeros(1))

    def initial_state(self, batch_size):
        return ()

    def forward(self, inputs, state):
        share = (inputs.obs[:, :, 0] == self.target).double().sum((-1, -2)) / (SPRITE * SPRITE)  # [T, B]
        logits = torch.stack([4 * share - 2, torch.zeros_like(share)], -1)
        return AgentOutput(logits, share.float()), state


def sprite_recording(steps=40, seed=0):
    """Each step: the ball and the decoy each sit in one random cell (never the corner (7, 7), never the
    same cell); head 0's map peaks on the ball's cell, head 1's on the empty corner."""
    rng = np.random.default_rng(seed)
    obs = np.zeros((steps, 3, SIZE, SIZE), np.uint8)
    attention = np.full((steps, 2, GRID, GRID), 0.5 / (GRID * GRID - 1), np.float32)
    for t in range(steps):
        ball, decoy = rng.choice(GRID * GRID - 1, 2, replace=False)
        for cell, value in ((ball, BALL), (decoy, DECOY)):
            r, c = divmod(int(cell), GRID)
            obs[t, :, r * CELL:r * CELL + SPRITE, c * CELL:c * CELL + SPRITE] = value
        attention[t, 0].flat[ball] = 0.5
        attention[t, 1, GRID - 1, GRID - 1] = 0.5
    arrays = {"obs": obs, "prev_action": np.zeros(steps, np.int64), "prev_reward": np.zeros(steps, np.float32),
              "done": np.eye(1, steps, dtype=bool)[0], "action": np.zeros(steps, np.int64),
              "episode": np.zeros(steps, np.int32), "episode_step": np.arange(steps, dtype=np.int32),
              "attention": attention}
    meta = {"source": {"agent": {"name": "reads-sprite"}}, "action_names": ["a", "b"],
            "episodes": [{"start": 0, "length": steps}], "observation_shape": [3, SIZE, SIZE]}
    return Recording(meta, arrays)


def run(agent, recording, substrate="plate", draws=8):
    steps = list(range(recording.num_steps))
    maps = [{"head 0": recording.arrays["attention"][t, 0], "head 1": recording.arrays["attention"][t, 1],
             **{f"random {r}": np.zeros((GRID, GRID), np.float32) for r in range(draws)}} for t in steps]
    result = ft.topk_deletion(agent, recording, steps, maps, ks=(1, 3), substrates=(substrate,))
    return result, ft.summarise_topk(result, block=5, draws=400)


# --- the measure on known answers -------------------------------------------------------------
@pytest.mark.parametrize("substrate", ["plate", "cell-mode", "mean"])
def test_a_head_on_the_sprite_the_policy_reads_beats_random_cells(substrate):
    result, summary = run(ReadsSpriteAgent(BALL), sprite_recording(), substrate=substrate)
    scores = result["scores"][substrate][1]
    # every substrate removes the whole sprite: every greedy action flips, p(a*) drops by 0.88 - 0.12
    np.testing.assert_array_equal(scores["head 0"]["flip"], 1.0)
    np.testing.assert_allclose(scores["head 0"]["drop"], np.tanh(1.0), atol=1e-9)  # sigmoid(2) - sigmoid(-2)
    np.testing.assert_allclose(scores["head 0"]["value"], 1.0, atol=1e-6)
    # the corner never holds the sprite: deleting it changes nothing
    for measure in ft.MEASURES:
        np.testing.assert_allclose(scores["head 1"][measure], 0.0, atol=1e-9)
        head0, head1 = summary[substrate]["1"]["head 0"][measure], summary[substrate]["1"]["head 1"][measure]
        assert head0["low"] > 0, measure  # separates from random, the CI excluding it
        assert head1["high"] <= 0, measure  # a head on nothing cannot beat random
    # a random cell is the ball's about 1 time in 64; k = 3 random cells about 3 times as often
    assert summary[substrate]["1"]["random"]["flip"] == pytest.approx(1 / 64, abs=0.03)
    assert summary[substrate]["3"]["random"]["flip"] == pytest.approx(3 / 64, abs=0.04)


def test_the_plate_keeps_what_never_moves_and_the_mean_colour_does_not():
    # a sprite at the same place in every frame is part of the background plate: "deleting" it with the
    # plate changes nothing, with the frame's mean colour it is gone
    recording = sprite_recording(steps=6)
    obs, attention = recording.arrays["obs"], recording.arrays["attention"]
    obs[:] = 0
    obs[:, :, :SPRITE, :SPRITE] = BALL
    attention[:, 0] = 0.0
    attention[:, 0, 0, 0] = 1.0
    for substrate, flips in (("plate", 0.0), ("mean", 1.0)):
        result, _ = run(ReadsSpriteAgent(BALL), recording, substrate=substrate, draws=2)
        np.testing.assert_array_equal(result["scores"][substrate][1]["head 0"]["flip"], flips, err_msg=substrate)
    assert not ft.object_cells(obs[0], ft.median_plate(obs), GRID, GRID).any()


def test_heads_on_a_sprite_the_policy_does_not_read_do_not_beat_random():
    # the same maps, but the policy reads the decoy: no head is faithful
    _, summary = run(ReadsSpriteAgent(DECOY), sprite_recording())
    for name in ("head 0", "head 1"):
        for measure in ft.MEASURES:
            assert summary["plate"]["1"][name][measure]["low"] <= 0, (name, measure)


def test_restricted_to_object_cells_random_hits_the_sprite_half_the_time():
    # two objects a frame: a random object cell is the ball half the time, the head's always
    _, summary = run(ReadsSpriteAgent(BALL), sprite_recording(steps=60))
    random = summary["plate"]["1"]["random" + ft.OBJECTS]
    assert random["flip"] == pytest.approx(0.5, abs=0.12)
    head0 = summary["plate"]["1"]["head 0" + ft.OBJECTS]["flip"]
    assert head0["map"] == 1.0 and head0["low"] > 0.3
    # the empty corner holds no object: restricted, head 1's map ties the two object cells, so half the time
    assert summary["plate"]["1"]["head 1" + ft.OBJECTS]["flip"]["map"] == pytest.approx(0.5, abs=0.2)


def test_whole_curves_compared_with_random_at_the_same_states():
    from s3ta.analysis import faithfulness

    recording = sprite_recording(steps=24)
    steps = list(range(24))
    maps = [faithfulness.step_maps(recording, t, None, random_draws=4) for t in steps]
    result = faithfulness.curves(ReadsSpriteAgent(BALL), recording, steps, maps, substrates=("mean",),
                                 fractions=np.linspace(0, 1, 11))
    summary = faithfulness.summarise(result, np.linspace(0, 1, 11))["mean"]
    # head 0 ranks the sprite's cell first: deleting it drops p(a*) at once, inserting it restores it at once
    deletion, insertion = summary["head 0"]["deletion"]["vs_random"], summary["head 0"]["insertion"]["vs_random"]
    assert deletion["high"] < 0 and insertion["low"] > 0
    assert deletion["difference"] == pytest.approx(
        summary["head 0"]["deletion"]["auc"]["mean"] - summary["random"]["deletion"]["auc"]["mean"])
    assert "vs_random" not in summary["random"]["deletion"]


# --- pure pieces against slow references ------------------------------------------------------
def test_delete_cells_matches_a_loop_over_cell_footprints():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 255, (3, 50, 37)).astype(np.uint8)  # cells of unequal size
    filled = rng.integers(0, 255, (3, 50, 37)).astype(np.uint8)
    cells = np.array([0, 7, 23, 34])
    fast = ft.delete_cells(frame, filled, cells, 7, 5)
    slow = frame.copy()
    for cell in cells:
        x0, y0, x1, y1 = cell_footprint(*divmod(int(cell), 5), 50, 37, 7, 5)
        slow[:, y0:y1, x0:x1] = filled[:, y0:y1, x0:x1]
    np.testing.assert_array_equal(fast, slow)


def test_pool_to_cells_sums_each_cell():
    rng = np.random.default_rng(2)
    pixel_map = rng.random((50, 37))
    slow = np.zeros((7, 5))
    for r in range(7):
        for c in range(5):
            x0, y0, x1, y1 = cell_footprint(r, c, 50, 37, 7, 5)
            slow[r, c] = pixel_map[y0:y1, x0:x1].sum()
    np.testing.assert_allclose(ft.pool_to_cells(pixel_map, 7, 5), slow)


def test_top_cells_orders_breaks_ties_at_random_and_restricts():
    rng = np.random.default_rng(0)
    importance = np.array([[0.1, 0.5], [0.3, 0.5]])
    assert set(ft.top_cells(importance, 2, rng)) == {1, 3} and ft.top_cells(importance, 3, rng)[-1] == 2
    draws = [int(ft.top_cells(np.zeros((4, 4)), 1, rng)[0]) for _ in range(1600)]
    counts = np.bincount(draws, minlength=16)
    assert counts.min() > 60 and counts.max() < 145  # uniform: 100 each
    allowed = np.array([[True, False], [True, False]])
    np.testing.assert_array_equal(ft.top_cells(importance, 5, rng, allowed), [2, 0])


def test_plate_cell_mode_and_object_cells_remove_a_moving_sprite():
    obs = np.full((5, 3, 16, 16), 40, np.uint8)
    for t in range(5):
        obs[t, :, 2 * t:2 * t + 2, 1:3] = 250  # a 2x2 sprite moving down
    plate = ft.median_plate(obs)
    assert (plate == 40).all()
    np.testing.assert_array_equal(ft.object_cells(obs[2], plate, 4, 4),
                                  np.eye(1, 16, 4, dtype=bool).reshape(4, 4))  # rows 4-5, cols 1-2: cell (1, 0)
    moded = ft.cell_mode(obs[2], 4, 4)
    assert (moded == 40).all()  # 4 sprite pixels of a 16-pixel cell: the cell's mode is background
    half = obs[2].copy()
    half[:, 4:8, 0:4][:, :, :3] = 250  # 12 of 16 pixels: the sprite's colour is now the mode
    assert (ft.cell_mode(half, 4, 4)[:, 4:8, 0:4] == 250).all()


def test_policy_change_by_hand_and_paired_difference():
    from s3ta.analysis.faithfulness import paired_difference

    clean = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64)
    logits = torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]], dtype=torch.float64)
    change = ft.policy_change(clean, 0.5, logits, torch.tensor([0.5, -0.25], dtype=torch.float64), action=0)
    p, q = torch.softmax(clean, -1), torch.softmax(logits[1], -1)
    np.testing.assert_allclose(change.kl, [0.0, float((p * (p / q).log()).sum())], atol=1e-12)
    np.testing.assert_array_equal(change.flip, [0.0, 1.0])
    np.testing.assert_allclose(change.drop, [0.0, float(p[0] - q[0])], atol=1e-12)
    np.testing.assert_allclose(change.value, [0.0, 0.75])
    # a constant paired difference has a zero-width interval at that value, whatever the steps' spread
    rng = np.random.default_rng(0)
    level = rng.random(30) * 10
    out = paired_difference(level + 0.2, np.stack([level, level], 1), block=5, draws=200)
    assert out["difference"] == pytest.approx(0.2)
    assert out["low"] == pytest.approx(0.2) and out["high"] == pytest.approx(0.2)
    with pytest.raises(ValueError):
        paired_difference(level, level)


# --- the command ----------------------------------------------------------------------------
def test_explain_faithfulness_top_k_writes_a_paired_table(tmp_path, capsys):
    from s3ta import agents, envs
    from s3ta.analysis.cli import main as explain_main
    from s3ta.analysis.recording import record

    torch.manual_seed(0)
    env = envs.make("catch", 1, seed=0)
    agent = agents.build("s3ta-small", env.observation_shape, env.num_actions).eval()
    rec = tmp_path / "rec"
    record(agent, env, 1, seed=0).save(rec)
    argv = ["explain", "faithfulness", str(rec), "--top-k", "1", "2", "--substrate", "plate", "cell-mode",
            "--states", "3", "--random-draws", "2", "--stride", "16", "--out", str(tmp_path / "out")]
    assert explain_main(argv) == 0
    result = json.loads((tmp_path / "out" / "faithfulness_topk.json").read_text())
    assert set(result["summary"]) == {"plate", "cell-mode"} and set(result["summary"]["plate"]) == {"1", "2"}
    rows = result["summary"]["plate"]["1"]
    assert {"head 0", "heads mean", "saliency", "random", "head 0" + ft.OBJECTS, "random" + ft.OBJECTS} <= set(rows)
    assert rows["random"]["draws"] == 2 and set(rows["head 3"]) == set(ft.MEASURES)
    text = (tmp_path / "out" / "faithfulness_topk.md").read_text()
    assert "--top-k 1 2" in text and "| saliency |" in text and "paired by step" in text
    capsys.readouterr()
    # the curves take only blur and mean
    assert explain_main(["explain", "faithfulness", str(rec), "--substrate", "plate"]) == 2
    assert "need --top-k" in capsys.readouterr().err
