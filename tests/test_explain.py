"""`s3ta explain`: the recording round-trip, the re-implemented forward pass, overlay geometry,
what/where, saliency, interventions, sprite injection, grounding, Atari RAM ground truth, videos
and the command line. Uses s3ta-small on the 64x64 built-in tasks and a few hand-made agents."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from s3ta import agents, envs
from s3ta.agents import AgentInputs, AgentOutput
from s3ta.analysis import forward, geometry, grounding, inject, intervene, saliency, whatwhere
from s3ta.analysis.cli import main as explain_main
from s3ta.analysis.recording import Recording, load_recording, record
from s3ta.viz.overlay import head_colour, overlay


@pytest.fixture(scope="module")
def catch_recording(tmp_path_factory):
    torch.manual_seed(0)
    env = envs.make("catch", 1, seed=0)
    agent = agents.build("s3ta-small", env.observation_shape, env.num_actions).eval()
    recording = record(agent, env, 2, seed=0, source={"env": "catch"})
    recording.save(tmp_path_factory.mktemp("rec") / "catch")
    return agent, recording


def random_inputs(T, B, obs_shape, num_actions, seed=0, done_prob=0.3):
    g = torch.Generator().manual_seed(seed)
    done = torch.rand(T, B, generator=g) < done_prob
    done[0] = True
    return AgentInputs(torch.randint(0, 256, (T, B, *obs_shape), generator=g, dtype=torch.uint8),
                       torch.randint(0, num_actions, (T, B), generator=g), torch.randn(T, B, generator=g), done)


# --- recording ------------------------------------------------------------------------------
def test_recording_round_trip(catch_recording):
    agent, recording = catch_recording
    loaded = load_recording(recording.path)
    assert loaded.meta["episodes"] == recording.meta["episodes"] and len(loaded.meta["episodes"]) == 2
    assert all(e["length"] == 7 and e["complete"] for e in loaded.meta["episodes"])
    assert sorted(loaded.arrays) == sorted(recording.arrays)
    for name, array in recording.arrays.items():
        np.testing.assert_array_equal(loaded.arrays[name], array, err_msg=name)
        assert loaded.meta["arrays"][name]["shape"] == list(array.shape)
    T = loaded.num_steps
    assert loaded.arrays["obs"].shape == (T, 3, 64, 64) and loaded.arrays["attention"].shape == (T, 4, 8, 8)
    np.testing.assert_allclose(loaded.arrays["attention"].sum((-1, -2)), 1.0, rtol=1e-5)
    assert loaded.box_labels == ["ball", "paddle"]
    boxes, labels = loaded.boxes_at(0)
    assert sorted(labels) == ["ball", "paddle"] and boxes.shape == (2, 4)
    # The stored weights reproduce the recorded outputs from the recorded inputs (no checkpoint).
    from s3ta.analysis.common import recorded_inputs

    replayed = forward.replay(loaded.load_agent(), recorded_inputs(loaded))
    np.testing.assert_allclose(replayed.output.policy_logits[:, 0].numpy(), loaded.arrays["policy_logits"], atol=1e-5)
    np.testing.assert_allclose(replayed.output.attention[:, 0].numpy(), loaded.arrays["attention"], atol=1e-6)
    # Inputs line up: prev_action is the previous step's action, done marks episode starts.
    np.testing.assert_array_equal(loaded.arrays["prev_action"][1:], loaded.arrays["action"][:-1])
    assert loaded.arrays["done"].tolist() == [True] + [False] * 6 + [True] + [False] * 6


def test_baseline_recording_has_no_attention(tmp_path):
    env = envs.make("catch", 1, seed=1)
    agent = agents.build("feedforward", env.observation_shape, env.num_actions).eval()
    recording = record(agent, env, 1, seed=1)
    assert not recording.has_attention and "value" in recording.arrays
    with pytest.raises(ValueError, match="needs attention"):
        grounding.grounding(recording)


# --- forward ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["s3ta-small", "fixed-query", "l2-keys"])
def test_unroll_without_override_equals_agent(name):
    torch.manual_seed(0)
    agent = agents.build(name, (3, 64, 64), 5, **({} if name == "s3ta-small" else
                                                    dict(conv_channels=(8, 16, 16), value_channels=8)))
    inputs = random_inputs(4, 3, (3, 64, 64), 5)
    state = tuple(torch.randn_like(s) for s in agent.initial_state(3))
    with torch.no_grad():
        expected, expected_state = agent(inputs, state)
        got, got_state = forward.unroll(agent, inputs, state)
    for field, a, b in zip(AgentOutput._fields, expected, got):
        assert (a is None) == (b is None), field
        if a is not None:
            assert torch.equal(a, b), field
    assert all(torch.equal(a, b) for a, b in zip(expected_state, got_state))


def test_forward_step_override_replaces_weights():
    torch.manual_seed(0)
    agent = agents.build("s3ta-small", (3, 64, 64), 3)
    inputs = random_inputs(1, 2, (3, 64, 64), 3)
    state = agent.initial_state(2)
    with torch.no_grad():
        out, _ = forward.forward_step(agent, inputs, state, lambda w, t: intervene.uniform(w, 1))
    assert torch.allclose(out.attention[0, :, 1], torch.full((2, 8, 8), 1 / 64))
    with pytest.raises(ValueError, match="T = 1"):
        forward.forward_step(agent, random_inputs(2, 2, (3, 64, 64), 3), state)


# --- geometry and overlays ------------------------------------------------------------------
def test_one_hot_attention_lands_on_its_cell():
    maps = np.zeros((1, 8, 8), np.float32)
    maps[0, 2, 5] = 1.0
    up = geometry.upsample(maps, 64, 64)[0]
    expected = np.zeros((64, 64), bool)
    expected[16:24, 40:48] = True
    np.testing.assert_array_equal(up > 0, expected)
    frame = np.full((64, 64, 3), 10, np.uint8)
    blended = overlay(frame, maps, opacity=1.0)
    changed = (blended != frame).any(-1)
    np.testing.assert_array_equal(changed, expected)
    assert tuple(blended[20, 44]) == head_colour(0)
    np.testing.assert_allclose(geometry.pixel_mass(maps, 64, 64).sum(), 1.0)


def test_cells_tile_atari_frame_without_shift():
    bounds_y, bounds_x = geometry.cell_bounds(210, 27), geometry.cell_bounds(160, 20)
    assert bounds_y[0, 0] == 0 and bounds_y[-1, 1] == 210 and (bounds_y[1:, 0] == bounds_y[:-1, 1]).all()
    assert (bounds_x == np.stack([np.arange(20) * 8, np.arange(20) * 8 + 8], 1)).all()
    # Symmetric: the mapping of a flipped frame is the flipped mapping (no half-cell drift).
    index = geometry.cell_index(210, 27)
    np.testing.assert_array_equal(index[::-1], 26 - index)
    for row, col in [(0, 0), (13, 7), (26, 19)]:
        maps = np.zeros((1, 27, 20), np.float32)
        maps[0, row, col] = 1
        ys, xs = np.nonzero(geometry.upsample(maps, 210, 160)[0])
        x0, y0, x1, y1 = geometry.cell_footprint(row, col, 210, 160, 27, 20)
        assert (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1) == (y0, y1, x0, x1)
        assert abs((y0 + y1) / 2 - (row + 0.5) * 210 / 27) <= 0.5 and (x0 + x1) / 2 == (col + 0.5) * 8


# --- what / where ----------------------------------------------------------------------------
def test_what_where_sign_and_clipping():
    attention = np.array([[[0.5, 0.5, 0.0]]], np.float32)  # [N=1, h=1, w=3]
    content = np.array([[[5.0, 0.0, 3.0]]], np.float32)
    spatial = np.array([[[0.0, 1.0, 0.0]]], np.float32)
    result = whatwhere.what_where(attention, content, spatial)
    clip = math.log(10)
    np.testing.assert_allclose(result.weighted, [[[0.5 * clip, -0.5, 0.0]]], rtol=1e-6)
    np.testing.assert_allclose(result.score, [0.5 * clip - 0.5], rtol=1e-6)
    balanced = whatwhere.balance(result.weighted)
    np.testing.assert_allclose(balanced, [[[1.0, -1.0, 0.0]]])
    colours = whatwhere.colours(balanced)
    np.testing.assert_allclose(colours[0, 0], [[1, 0, 0], [0, 0, 1], [1, 1, 1]])
    with pytest.raises(ValueError, match="share one shape"):
        whatwhere.what_where(attention, content[..., :2], spatial)


# --- saliency ------------------------------------------------------------------------------
class RegionAgent(nn.Module):
    """Feedforward agent whose policy and value read only the mean of pixels [y0:y1, x0:x1]."""

    def __init__(self, region, shape=(3, 64, 64), num_actions=3):
        super().__init__()
        self.region, self.observation_shape, self.num_actions = region, shape, num_actions
        self.scale = nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
        self.name = "region"

    def initial_state(self, batch_size):
        return ()

    def forward(self, inputs, state):
        y0, y1, x0, x1 = self.region
        mean = inputs.obs[..., y0:y1, x0:x1].float().mean((-1, -2, -3)) / 255.0  # [T, B]
        return AgentOutput(mean[..., None] * self.scale * 10, mean * 5), state


def _fake_recording(obs, num_actions=3):
    T = len(obs)
    arrays = {"obs": obs, "prev_action": np.zeros(T, np.int64), "prev_reward": np.zeros(T, np.float32),
              "done": np.eye(1, T, dtype=bool)[0], "action": np.zeros(T, np.int64),
              "episode": np.zeros(T, np.int32), "episode_step": np.arange(T, dtype=np.int32)}
    meta = {"source": {"agent": {"name": "region"}}, "action_names": ["a"] * num_actions, "episodes":
            [{"start": 0, "length": T}], "observation_shape": list(obs.shape[1:])}
    return Recording(meta, arrays)


def test_saliency_peaks_on_the_region_a_model_reads():
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, (2, 3, 64, 64)).astype(np.uint8)
    agent = RegionAgent((40, 48, 8, 16))  # reads rows 40..47, columns 8..15
    recording = _fake_recording(obs)
    result = saliency.saliency(agent, recording, [1], stride=4)
    for maps in (result.policy[0], result.value[0]):
        y, x = np.unravel_index(maps.argmax(), maps.shape)
        assert 36 <= y < 52 and 4 <= x < 20
        assert maps[:20].max() < 0.05 * maps.max()  # far away: nothing


# --- interventions -------------------------------------------------------------------------
def _catch_agent_and_recording(ignore_head=None):
    torch.manual_seed(1)
    env = envs.make("catch", 1, seed=3)
    agent = agents.build("s3ta-small", env.observation_shape, env.num_actions).eval()
    if ignore_head is not None:  # the core never reads this head's answer
        answer = agent.config.value_channels + agent.config.basis_channels
        with torch.no_grad():
            agent.core_mlp[0].weight[:, ignore_head * answer:(ignore_head + 1) * answer] = 0
    with torch.no_grad():  # make the policy sensitive to the core so effects are visible
        agent.policy.weight.mul_(50)
    return agent, record(agent, env, 1, seed=3)


def test_intervening_on_an_ignored_head_changes_nothing():
    agent, recording = _catch_agent_and_recording(ignore_head=2)
    runner = intervene.Intervention(agent, recording)
    # swap is left out: it would also move head 0's map, which the core does read.
    for mode, kwargs in [("uniform", {}), ("shift", {"offset": (2, -3)}), ("freeze", {"from_step": 3})]:
        for persistent in (False, True):
            result = runner.run(mode, 2, persistent=persistent, **kwargs)
            assert result["summary"]["mean_kl"] < 1e-9, (mode, persistent)
            assert result["summary"]["mean_abs_value_change"] < 1e-5
            assert result["summary"]["flip_rate"] == 0
    with pytest.raises(ValueError, match="another head"):
        runner.run("swap", 2, other_head=2)


def test_intervening_on_a_used_head_changes_the_policy():
    agent, recording = _catch_agent_and_recording()
    runner = intervene.Intervention(agent, recording)
    result = runner.run("shift", 0, offset=(3, 3))
    assert result["summary"]["mean_kl"] > 1e-4
    assert len(result["per_step"]["kl"]) == recording.num_steps
    masked = runner.run("mask-topk", percent=20)
    assert masked["summary"]["mean_kl"] > 0
    panel = intervene.panel(runner, random_repeats=1)
    assert set(panel["table"]) == set(intervene.HEAD_MODES) and len(panel["table"]["uniform"]) == 4


def test_masks_are_area_matched():
    attention = np.random.default_rng(0).random((27, 20)).astype(np.float32)
    top = intervene.topk_mask(attention, 210, 160, 10)
    rand = intervene.random_cells_mask(27, 20, 210, 160, int(top.sum()), np.random.default_rng(1))
    assert top.sum() == rand.sum() == round(0.1 * 210 * 160)


# --- injection -----------------------------------------------------------------------------
class SpyAgent(RegionAgent):
    def forward(self, inputs, state):
        self.seen.append(inputs.obs.clone())
        return super().forward(inputs, state)


def test_injected_sprite_is_in_the_frames_the_agent_receives():
    obs = np.zeros((6, 3, 64, 64), np.uint8)
    agent = SpyAgent((0, 64, 0, 64))
    agent.seen = []
    sprite = inject.Sprite.load("square")
    where = inject.positions(6, onset=2, start=(10, 20), velocity=(3, 1))
    assert where[:2] == [None, None] and where[2] == (10, 20) and where[5] == (19, 23)
    result = inject.inject(agent, _fake_recording(obs), sprite, where)
    seen = torch.cat(agent.seen[6:])[:, 0].numpy()  # the injected replay's frames [T, C, H, W]
    assert seen[:2].max() == 0
    for t in range(2, 6):
        x, y = where[t]
        np.testing.assert_array_equal(seen[t][:, y:y + 6, x:x + 6], np.broadcast_to(np.array([255, 0, 255])[:, None, None], (3, 6, 6)))
        assert seen[t].astype(bool).any(0).sum() == 36
    assert result["present"] == [False, False, True, True, True, True]
    assert max(result["kl"][2:]) > 0 and max(result["kl"][:2]) == 0


def test_injection_reports_attention_mass_per_head(catch_recording):
    agent, recording = catch_recording
    where = inject.positions(recording.num_steps, onset=3, start=(0, 0), duration=4)
    result = inject.inject(agent, recording, inject.Sprite.load("shark"), where)
    mass = np.array(result["mass_on_sprite"]["injected"])
    assert mass.shape == (recording.num_steps, 4) and (mass[3:7] > 0).all() and (mass[:3] == 0).all()
    assert len(result["summary"]["mean_mass_injected"]) == 4


# --- grounding -----------------------------------------------------------------------------
def test_grounding_of_one_hot_map_on_an_object_is_complete():
    attention = np.zeros((2, 8, 8), np.float32)
    attention[0, 3, 4] = 1.0  # cell (3, 4) = pixels x 32..40, y 24..32, inside the box
    attention[1, 0, 0] = 1.0  # far from it
    boxes = np.array([[30, 22, 44, 34]], np.float32)
    result = grounding.step_grounding(attention, boxes, ["ball"], 64, 64)
    assert result["mass"][0] == pytest.approx(1.0) and result["mass"][1] == 0.0
    assert result["peak_on_object"] == [True, False]
    assert result["chance"] == pytest.approx(14 * 12 / 64 / 64)
    assert result["classes"]["ball"]["mass"][0] == pytest.approx(1.0)


def test_peak_tracking_follows_an_object_also_from_beside_it():
    steps = 12
    cols, rows = np.arange(steps) % 6, (np.arange(steps) // 2) % 5  # the object moves in x and y, not together
    centres = np.stack([cols + 0.5, rows + 0.5], axis=1)
    attention = np.zeros((steps, 3, 8, 8), np.float32)
    attention[np.arange(steps), 0, rows, cols] = 1.0  # on the object
    attention[np.arange(steps), 1, rows, cols + 1] = 1.0  # one cell to its right
    attention[:, 2, 7, 7] = 1.0  # never moves
    on, beside, still = grounding.peak_tracking(attention, centres)
    assert on["corr_x"] == pytest.approx(1.0) and on["corr_y"] == pytest.approx(1.0) and on["median_distance"] == 0.0
    assert beside["corr_x"] == pytest.approx(1.0) and beside["corr_y"] == pytest.approx(1.0)
    assert beside["median_distance"] == pytest.approx(1.0)
    assert math.isnan(still["corr_x"]) and math.isnan(still["corr_y"]) and still["median_distance"] > 2


def test_frequent_peaks_name_the_cells_a_head_sits_on():
    attention = np.zeros((8, 2, 4, 5), np.float32)
    attention[:, 0, 3, 1] = 1.0  # a head that looks at one place
    attention[:6, 1, 0, 4], attention[6:, 1, 2, 0] = 1.0, 1.0  # 6 steps at (0, 4), 2 at (2, 0)
    place, two = grounding.frequent_peaks(attention)
    assert place == [{"row": 3, "col": 1, "share": 1.0}]
    assert two == [{"row": 0, "col": 4, "share": 0.75}, {"row": 2, "col": 0, "share": 0.25}]


def test_grounding_on_a_recording(catch_recording):
    _, recording = catch_recording
    result = grounding.grounding(recording)
    assert result["classes"] == ["ball", "paddle"] and len(result["heads"]) == 4
    for head in result["heads"]:
        assert 0 <= head["mass_on_objects"] <= 1 and 0 < head["chance"] < 0.05
        assert 0 < sum(p["share"] for p in head["frequent_peaks"]) <= 1
        follows = head["classes"]["ball"]["peak_tracking"]  # catch shows one ball
        assert follows is not None and 0 <= follows["median_distance"] <= math.hypot(8, 8)


# --- Atari RAM ground truth ----------------------------------------------------------------
def test_ram_env_matches_vector_env_and_yields_boxes():
    pytest.importorskip("ale_py")
    from ale_py.vector_env import AtariVectorEnv

    from s3ta.analysis.atari_objects import RamAtariEnv
    from s3ta.envs.atari import PROTOCOLS

    ram_env = RamAtariEnv("breakout", seed=0)
    ram_env.noop_max = 0  # deterministic start, to compare frame by frame
    vector = AtariVectorEnv("breakout", 1, autoreset_mode="SameStep", num_threads=1, **dict(PROTOCOLS["paper"], noop_max=0))
    obs, _ = vector.reset(seed=0)
    ts = ram_env.reset()
    np.testing.assert_array_equal(ts.obs[0], obs[0, 0].transpose(2, 0, 1))
    for action in [1, 3, 3, 4, 1, 0, 4, 3] * 3:
        obs, reward, *_ = vector.step(np.array([action]))
        ts = ram_env.step(np.array([action]))
        np.testing.assert_array_equal(ts.obs[0], obs[0, 0].transpose(2, 0, 1))
        assert ts.reward[0] == reward[0]
    vector.close()
    assert "paddle" in ts.info["box_labels"][0] and ts.info["ram"].shape == (1, 128)
    from s3ta.analysis.atari_objects import DECODERS, objects_from_ram

    for game in DECODERS:
        boxes, labels = objects_from_ram(game, np.zeros(128, np.uint8))
        assert boxes.shape == (len(labels), 4)


# --- videos and the command line -----------------------------------------------------------
def test_video_and_gif(catch_recording, tmp_path):
    import imageio.v3 as iio

    from s3ta.viz import save_attention_figure, write_video

    _, recording = catch_recording
    mp4 = write_video(recording, tmp_path / "v.mp4", max_steps=5)
    import imageio.v2 as imageio

    with imageio.get_reader(mp4, format="FFMPEG") as reader:
        count = sum(1 for _ in reader)
    assert count == 5
    gif = write_video(recording, tmp_path / "v.gif", episodes=[1], mode="whatwhere")
    decoded = iio.imread(gif)[..., :3].astype(int)
    assert decoded.shape[0] == 7
    # Every frame in order and in its own colours (one palette for the whole GIF, made from frames spread over it).
    from s3ta.analysis.recording import iter_episode_steps
    from s3ta.viz.video import iter_video_frames

    rendered = np.stack(list(iter_video_frames(recording, iter_episode_steps(recording, [1]), mode="whatwhere")))
    assert decoded.shape == rendered.shape
    assert np.abs(decoded - rendered).mean() < 2.0
    png = save_attention_figure(recording, tmp_path / "f.png", num_frames=2)
    assert png.stat().st_size > 1000


def test_cli_runs_and_fails_cleanly(catch_recording, tmp_path, capsys):
    _, recording = catch_recording
    out = tmp_path / "out"
    assert explain_main(["explain", "whatwhere", str(recording.path), "--out", str(out)]) == 0
    assert explain_main(["explain", "grounding", str(recording.path), "--out", str(out)]) == 0
    assert explain_main(["explain", "intervene", str(recording.path), "--out", str(out), "--mode", "uniform",
                         "--head", "1"]) == 0
    data = json.loads((out / "grounding.json").read_text())
    assert len(data["heads"]) == 4 and (out / "whatwhere.png").is_file()
    capsys.readouterr()
    assert explain_main(["explain", "view", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "does not exist" in err
    assert explain_main(["explain", "intervene", str(recording.path), "--mode", "uniform", "--head", "9"]) == 2
    assert "head must be in 0..3" in capsys.readouterr().err
    assert explain_main(["explain", "record", "--env", "catch", "--out", str(tmp_path / "x")]) == 2
    assert "--agent" in capsys.readouterr().err


def test_cli_record_untrained_and_baseline_errors(tmp_path, capsys):
    rec = tmp_path / "ff"
    assert explain_main(["explain", "record", "--agent", "feedforward", "--env", "catch", "--out", str(rec)]) == 0
    capsys.readouterr()
    assert explain_main(["explain", "whatwhere", str(rec)]) == 2
    assert "needs attention maps" in capsys.readouterr().err
    assert explain_main(["explain", "saliency", str(rec), "--steps", "3", "--stride", "8"]) == 0
    assert (rec / "analysis" / "saliency.json").is_file()


def test_cli_record_from_checkpoint(tmp_path, capsys):
    from s3ta.training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    agent = agents.build("s3ta-small", (3, 64, 64), 3)
    run = tmp_path / "run"
    save_checkpoint(run, model=agent, optimizer=torch.optim.RMSprop(agent.parameters()), scheduler=None,
                    counters={"frames": 0, "updates": 0}, rng={},
                    config={"env": "catch", "seed": 5, "protocol": "paper"}, keep=3)
    rec = tmp_path / "rec"
    assert explain_main(["explain", "record", str(run), "--episodes", "1", "--out", str(rec)]) == 0
    loaded = load_recording(rec)
    assert loaded.meta["source"]["env"] == "catch" and loaded.meta["source"]["seed"] == 5
    np.testing.assert_array_equal(loaded.arrays["attention"].shape, (7, 4, 8, 8))
    assert explain_main(["explain", "inject", str(rec), "--checkpoint", str(run), "--sprite", "invader",
                         "--path", "0,0;40,40", "--onset", "2"]) == 0
    assert (rec / "analysis" / "inject_recording" / "recording.json").is_file()
    capsys.readouterr()
    assert explain_main(["explain", "record", str(tmp_path / "nothing"), "--out", str(rec)]) == 2
    assert "does not exist" in capsys.readouterr().err
