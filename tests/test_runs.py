"""Runs that never lose work: extending a run with --resume --total-frames (the schedule follows the new
total), resuming on another machine (--device, learners, actors), a log without the frames after the
checkpoint resumed from, --time-limit, resuming past a corrupt newest checkpoint, failed starts that
leave nothing behind, progress before the first update, the learning curve of a single run, presets,
and the zoo. Runs are pinned to the CPU (device="cpu"), whatever `auto` would find."""

import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from s3ta import agents, zoo
from s3ta.training import TrainConfig, train
from s3ta.training.checkpoint import CheckpointError, list_checkpoints, load_agent, load_checkpoint
from s3ta.training.cli import parse_duration
from s3ta.training.config import config_source, load_preset, preset_names, preset_versions

TINY = dict(env="catch", agent="s3ta-small", unroll_length=5, batch_size=4, log_interval=1000.0, mode="serial",
            device="cpu")


def tiny(**changes) -> TrainConfig:
    return TrainConfig(**{**TINY, "total_frames": 200, **changes})


def s3ta(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "s3ta", *args], capture_output=True, text=True, timeout=timeout)


def updates_logged(run_dir: Path) -> list[dict]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in lines if r["kind"] == "update"]


def attempts(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "attempts.json").read_text())


def test_resume_extends_a_finished_run_and_the_schedule_follows_the_new_total(tmp_path):
    config = tiny(total_frames=100, learning_rate=1.0, log_interval=0.0)  # 20 frames per update: 5 updates
    first = train(config, tmp_path, stream=io.StringIO())
    assert first["finished"] and (tmp_path / "DONE").exists()
    assert updates_logged(tmp_path)[-1]["learning_rate"] == pytest.approx(0.2)  # 1 - 80/100

    stream = io.StringIO()
    second = train(TrainConfig(), tmp_path, resume=True, total_frames=200, stream=stream)
    assert second["finished"] and second["frames"] == 200 and second["updates"] == 10
    assert "100 -> 200" in stream.getvalue()
    rates = [r["learning_rate"] for r in updates_logged(tmp_path)[5:]]
    # the sixth update starts from frame 100 of 200: lr 0.5, then 0.4, ... (not the old schedule's 0)
    assert rates == pytest.approx([0.5, 0.4, 0.3, 0.2, 0.1])
    assert "| lr 0.5\n" in stream.getvalue() and "| lr 0.1\n" in stream.getvalue()  # the progress lines say it
    assert TrainConfig.load(tmp_path / "config.json").total_frames == 200
    assert (tmp_path / "DONE").exists()


def test_a_fork_resumes_on_the_schedule_of_its_edited_config(tmp_path):
    """benchmarks/research/fork_run.py (docs/benchmarks.md, Breakout (1b)): a run's config.json with another rate and
    schedule, one of its checkpoints and its log cut there; the resumed fork takes the config's rate, not
    the base rate saved in the checkpoint's scheduler state."""
    source, fork = tmp_path / "run", tmp_path / "fork"
    train(tiny(total_frames=100, learning_rate=1.0, log_interval=0.0, keep_checkpoints=10,
               checkpoint_interval=1e-6), source, stream=io.StringIO())
    middle = [p for p in list_checkpoints(source) if load_checkpoint(p).counters["frames"] == 60]
    assert middle, [p.name for p in list_checkpoints(source)]
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "research" / "fork_run.py"
    result = subprocess.run([sys.executable, str(script), str(source), str(middle[0]), "--out", str(fork),
                             "--set", "learning_rate=0.3", "--set", 'lr_schedule="constant"'],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert max(r["frames"] for r in updates_logged(fork)) == 60  # the log is cut at the checkpoint

    train(TrainConfig(), fork, resume=True, total_frames=120, stream=io.StringIO())
    rates = [r["learning_rate"] for r in updates_logged(fork) if r["frames"] > 60]
    assert rates == pytest.approx([0.3, 0.3, 0.3])


def test_optimizer_state_pairs_each_rmsprop_statistic_with_its_parameter(tmp_path):
    """benchmarks/research/optimizer_state.py (docs/benchmarks.md, Breakout (1c)): the step elasticity eps/(sqrt(v)+eps)
    per named parameter. One tensor's v is set to (99 eps)^2 and every other to 0: only that name may read
    0.01, every other 1.0; a state paired with the wrong parameter shows up as another name reading 0.01."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "research" / "optimizer_state.py"
    spec = importlib.util.spec_from_file_location("optimizer_state", path)
    optimizer_state = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(optimizer_state)
    train(tiny(total_frames=40), tmp_path / "run", stream=io.StringIO())
    checkpoint = list_checkpoints(tmp_path / "run")[-1]
    names = [name for name, _ in load_agent(checkpoint)[0].named_parameters()]
    payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    eps = payload["optimizer"]["param_groups"][0]["eps"]
    target = names.index("policy.bias")
    ids = payload["optimizer"]["param_groups"][0]["params"]
    for i in ids:
        payload["optimizer"]["state"][i]["square_avg"].fill_((99 * eps) ** 2 if i == ids[target] else 0.0)
    edited = tmp_path / "ckpt-000000000040.pt"
    torch.save(payload, edited)

    rows, found_eps = optimizer_state.step_elasticity(edited)
    assert found_eps == eps and [r["name"] for r in rows] == names
    elasticity = {r["name"]: r["elasticity"] for r in rows}
    assert elasticity.pop("policy.bias") == pytest.approx(0.01)
    assert set(elasticity.values()) == {1.0}
    modules = {m["name"]: m for m in optimizer_state.by_module(rows)}
    counts = {r["name"]: r["count"] for r in rows}
    weight, bias = counts["policy.weight"], counts["policy.bias"]
    assert modules["policy"]["elasticity"] == pytest.approx((weight + 0.01 * bias) / (weight + bias))
    assert sum(m["count"] for m in modules.values()) == sum(r["count"] for r in rows)


def test_resume_cli_extends_and_names_the_flags_it_ignores(tmp_path):
    train(tiny(total_frames=40), tmp_path)
    result = s3ta("train", "--out", str(tmp_path), "--resume", "--total-frames", "80", "--batch-size", "2",
                  "--learning-rate", "0.1", "--device", "cpu", "--num-actors", "3", "--learner-threads", "1")
    assert result.returncode == 0, result.stderr
    ignored = [line for line in result.stderr.splitlines() if "ignored" in line]
    assert len(ignored) == 1 and "--batch-size" in ignored[0] and "--learning-rate" in ignored[0]
    for flag in ("--device", "--num-actors", "--learner-threads"):  # this machine's settings are taken
        assert flag not in ignored[0]
    assert load_checkpoint(tmp_path).counters["frames"] == 80
    saved = TrainConfig.load(tmp_path / "config.json")
    assert saved.batch_size == 4 and saved.num_actors == 3  # the run's setting is kept; the machine's is this one's
    assert saved.learner_threads == 1  # two runs sharing a small machine each take one thread (docs/training.md)
    assert [(a["frames"], a["num_actors"], a["learner_threads"]) for a in attempts(tmp_path)] == \
        [(0, TrainConfig().num_actors, os.cpu_count()), (40, 3, 1)]

    result = s3ta("train", "--out", str(tmp_path), "--resume", "--total-frames", "60")
    assert result.returncode == 2 and "must be >" in result.stderr and result.stderr.count("\n") == 1


def test_a_run_saved_with_device_cuda_continues_on_the_cpu(tmp_path):
    """A run trained on a GPU box (its config.json says cuda; made here on the CPU and edited) continues on a
    machine without one when resumed with --device cpu; the checkpoint loads onto the CPU, and every attempt's
    machine is recorded in attempts.json while config.json keeps the run's settings."""
    train(tiny(total_frames=40), tmp_path, stream=io.StringIO())
    saved = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**saved, "device": "cuda", "num_actors": 7}))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="saved with device 'cuda': resume it with --device cpu"):
            train(TrainConfig(), tmp_path, resume=True, total_frames=80)
        assert len(attempts(tmp_path)) == 1, "a failed start records no attempt"
    stream = io.StringIO()
    summary = train(TrainConfig(), tmp_path, resume=True, total_frames=80, machine={"device": "cpu"}, stream=stream)
    assert summary["finished"] and summary["frames"] == 80
    assert "this machine: device cuda -> cpu" in stream.getvalue()
    assert ", cpu fp32:" in stream.getvalue()  # the start line names the device
    record = TrainConfig.load(tmp_path / "config.json")
    assert (record.device, record.num_actors, record.total_frames) == ("cpu", 7, 80)
    assert [(a["frames"], a["device"], a["num_actors"]) for a in attempts(tmp_path)] == \
        [(0, "cpu", TrainConfig().num_actors), (40, "cpu", 7)]


def test_learners_may_change_on_resume_if_they_divide_the_batch(tmp_path):
    train(tiny(total_frames=40), tmp_path, stream=io.StringIO())
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    with pytest.raises(ValueError, match="num_learners must be >= 1 and divide batch_size"):
        train(TrainConfig(), tmp_path, resume=True, machine={"num_learners": 3})
    with pytest.raises(ValueError, match="num_learners must be 1 in mode 'serial'"):  # this run's mode is serial
        train(TrainConfig(), tmp_path, resume=True, machine={"num_learners": 2})
    with pytest.raises(ValueError, match=r"\['mode'\] are not machine settings"):
        train(TrainConfig(), tmp_path, resume=True, machine={"mode": "parallel"})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_resuming_from_an_older_checkpoint_drops_the_log_after_it(tmp_path):
    """The newer checkpoints were lost (a machine that went away): the log of the frames after the one
    resumed from is dropped, in metrics.jsonl and TensorBoard, so that no frame is counted twice."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(tiny(total_frames=100, log_interval=0.0, checkpoint_interval=1e-9, keep_checkpoints=10), tmp_path,
          stream=io.StringIO())
    for path in list_checkpoints(tmp_path):
        if load_checkpoint(path).counters["frames"] > 60:
            path.unlink()
    episodes_before = [r for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())
                       if r["kind"] == "episode" and r["frames"] <= 60]
    (tmp_path / "metrics.jsonl").open("a").write('{"kind": "update", "frames": 1')  # a line torn by a kill
    stream = io.StringIO()
    train(TrainConfig(), tmp_path, resume=True, stream=stream)
    assert "logged after frame 60" in stream.getvalue()
    assert [r["frames"] for r in updates_logged(tmp_path)] == [20, 40, 60, 80, 100]
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    episodes = [r for r in records if r["kind"] == "episode"]
    assert episodes[:len(episodes_before)] == episodes_before and episodes[len(episodes_before)]["frames"] > 60
    assert [r["frames"] for r in records] == sorted(r["frames"] for r in records)
    scalars = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    assert [event.step for event in scalars.Scalars("loss/total")] == [20, 40, 60, 80, 100]


def test_time_limit_stops_with_a_checkpoint(tmp_path):
    summary = train(tiny(total_frames=10**9), tmp_path, time_limit=4.0, stream=io.StringIO())
    assert summary["interrupted_by"] == "time-limit" and not summary["finished"]
    assert load_checkpoint(tmp_path).counters["frames"] == summary["frames"] > 0
    assert not (tmp_path / "DONE").exists() and (tmp_path / "learning_curve.png").exists()


def test_time_limit_cli_exit_status_says_resume(tmp_path):
    result = s3ta("train", "--out", str(tmp_path), "--env", "catch", "--agent", "s3ta-small", "--mode", "serial",
                  "--total-frames", "100000000", "--unroll-length", "5", "--batch-size", "4", "--time-limit", "1s")
    assert result.returncode == 75, result.stderr
    assert "time limit" in result.stdout and "--resume" in result.stdout
    assert list_checkpoints(tmp_path)
    result = s3ta("train", "--out", str(tmp_path), "--resume", "--time-limit", "soon")
    assert result.returncode == 2 and "duration" in result.stderr


def test_durations_parse():
    assert parse_duration("2h50m") == 2 * 3600 + 50 * 60
    assert parse_duration("90m") == 5400 and parse_duration("45s") == 45 and parse_duration("3600") == 3600
    assert parse_duration("1h30m15s") == 5415
    for bad in ("", "soon", "0", "-5", "5x"):
        with pytest.raises(Exception, match="duration|> 0"):
            parse_duration(bad)


def test_resume_skips_a_corrupt_newest_checkpoint_and_says_so(tmp_path):
    train(tiny(total_frames=100, checkpoint_interval=1e-9, keep_checkpoints=5), tmp_path)
    newest = list_checkpoints(tmp_path)[-1]
    newest.write_bytes(b"\x00truncated")
    stream = io.StringIO()
    summary = train(TrainConfig(), tmp_path, resume=True, total_frames=140, stream=stream)
    assert f"skipped unreadable checkpoint {newest.name}" in stream.getvalue()
    assert "resumed from ckpt-000000000080.pt" in stream.getvalue()
    assert summary["frames"] == 140


def test_resume_without_a_checkpoint_says_it_starts_from_frame_0(tmp_path):
    tiny(total_frames=40).save(tmp_path / "config.json")
    stream = io.StringIO()
    summary = train(TrainConfig(), tmp_path, resume=True, stream=stream)
    assert "starting from frame 0" in stream.getvalue() and summary["frames"] == 40


def _box2d_installed() -> bool:
    return importlib.util.find_spec("Box2D") is not None


@pytest.mark.parametrize("flags, message", [
    (["--env", "no-such-env"], "unknown environment"),
    (["--env", "CartPole-v1"], "image"),
    pytest.param(["--env", "catch", "--device", "cuda"], "cuda",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
    pytest.param(["--env", "CarRacing-v3"], 'pip install "gymnasium[box2d]"',
                 marks=pytest.mark.skipif(_box2d_installed(), reason="Box2D is installed")),
    (["--agent-config", "num_heads=abc"], "agent config num_heads must be an integer like 4, got 'abc'"),
    (["--agent-config", "conv_channels=16"], "agent config conv_channels must be a list of integers"),
    (["--num-learners", "2", "--mode", "serial"], "--num-learners must be 1 in mode 'serial'"),
    (["--resume"], "cannot resume"),  # no run in --out
])
def test_a_failed_start_is_one_line_and_leaves_no_run_directory(tmp_path, flags, message):
    out = tmp_path / "run"
    result = s3ta("train", "--out", str(out), "--total-frames", "100", *flags)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert not out.exists(), f"{flags} left {list(out.iterdir())}"


def test_out_that_is_a_file_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = s3ta("train", "--out", str(blocker / "run"), "--env", "catch", "--total-frames", "100")
    assert result.returncode != 0 and "not a directory" in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_progress_starts_before_the_first_update_and_a_curve_is_written(tmp_path):
    stream = io.StringIO()
    train(tiny(total_frames=90, log_interval=0.0), tmp_path, stream=stream)  # 20 frames per update: ends at 100
    text = stream.getvalue()
    assert "the first batch needs 20 agent steps" in text
    assert "ends after the update that passes 90, 10 frames later" in text
    # catch's episodes last 7 steps: none has ended after the first update's 5
    assert "frames 20/90 (22%)" in text and "| return - (no episode yet) |" in text and "nan" not in text
    assert "(last 4) |" in text  # after the second update's 10 steps, each of the 4 environments ended one
    assert (tmp_path / "learning_curve.png").stat().st_size > 0


def test_first_batch_progress_reports_acted_steps(tmp_path):
    from s3ta.training.loop import FirstBatchProgress

    class Runner:
        def acted_steps(self):
            return 7

    class Monitor:
        lines: list[str] = []

        def message(self, text):
            self.lines.append(text)

    monitor = Monitor()
    progress = FirstBatchProgress(monitor, Runner(), 20, interval=0.05)
    progress.start()
    import time

    time.sleep(0.3)
    progress.stop(learning=True)
    time.sleep(0.3)
    progress.stop()
    assert any("7/20 agent steps" in line for line in monitor.lines)
    assert any("first update is running" in line for line in monitor.lines)


def test_presets_document_every_deviation_and_load_by_name():
    assert "atari-small" in preset_names()
    for name in preset_names():
        preset = load_preset(name)
        values = config_source(name)
        assert values["preset"] == f"{name}@{preset['version']}"
        defaults = TrainConfig()
        config = TrainConfig.from_dict({**defaults.to_dict(), **values})
        for key in preset["config"]:
            if key != "env":
                assert getattr(config, key) != getattr(defaults, key) or key in preset["deviations"]
                assert key in preset["deviations"] and len(preset["deviations"][key]) > 20
    small = TrainConfig.from_dict({**TrainConfig().to_dict(), **config_source("atari-small")})
    assert (small.agent, small.unroll_length, small.batch_size, small.protocol) == ("s3ta-small", 20, 16, "paper")
    agent = agents.build(small.agent, (3, 210, 160), 18, **small.agent_overrides)  # the recipe of Pong run (4)
    assert agent.attention_shape == (4, 14, 10) and agent.config.padding_mode == "replicate"
    assert TrainConfig().agent_overrides == {} and TrainConfig().learning_rate == 2e-4  # paper defaults unchanged
    with pytest.raises(ValueError, match="unknown preset"):
        config_source("atari-huge")


def test_earlier_preset_versions_load_by_name_and_stay_as_they_were():
    """NAME@VERSION repeats a run made under an earlier version after the preset has moved on; the current
    version answers to both names; a missing version is named with those that exist."""
    versions = preset_versions("atari-small")
    current = load_preset("atari-small")["version"]
    assert versions[-1] == current and versions == list(range(1, current + 1))
    assert config_source(f"atari-small@{current}") == config_source("atari-small")
    for version in versions:
        values = config_source(f"atari-small@{version}")
        assert values["preset"] == f"atari-small@{version}"
        TrainConfig.from_dict({**TrainConfig().to_dict(), **values})  # every version is still a valid config
    # what the notebook says each version changed (docs/notebook/pong.md)
    assert "agent_overrides" not in config_source("atari-small@1")
    assert config_source("atari-small@2")["agent_overrides"]["conv_strides"] == [4, 2, 2]
    assert "lr_constant_frames" not in config_source("atari-small@2")
    assert config_source("atari-small@3")["lr_constant_frames"] == 11_447_040
    assert config_source("atari-small@3")["entropy_cost"] == 0.0006
    assert config_source("atari-small@4")["entropy_cost"] == 0.003
    assert config_source("atari-small@4")["lr_constant_frames"] == 11_447_040
    # version 5, the comparison grid's recipe (docs/notebook/atari-small-5.md)
    grid = config_source("atari-small@5")
    assert (grid["lr_constant_frames"], grid["grad_norm_clip"], grid["precision"]) == (10_000_000, 40.0, "bf16")
    assert {k: v for k, v in grid.items() if k not in ("lr_constant_frames", "grad_norm_clip", "precision", "preset")} \
        == {k: v for k, v in config_source("atari-small@4").items() if k not in ("lr_constant_frames", "preset")}
    with pytest.raises(ValueError, match=r"no version '99'; versions: atari-small@1, .*atari-small@5"):
        config_source("atari-small@99")


# --- the zoo ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", zoo.names())
def test_zoo_agent_matches_its_card(name):
    """Every shipped agent: weights within 10 MB whose sha256 is the card's, loaded with weights_only=True
    into the agent the card describes (observation shape, actions), outputs of the right shapes."""
    info = zoo.card(name)
    path = zoo.weights_path(name)  # checks the hash
    assert path.stat().st_size <= zoo.MAX_WEIGHTS_BYTES and zoo.sha256(path) == info["sha256"]
    agent, checkpoint = load_agent(f"zoo:{name}")
    assert (agent.name, checkpoint.config["env"]) == (info["agent"], info["env"])
    assert list(agent.observation_shape) == info["agent_description"]["observation_shape"]
    assert checkpoint.counters["frames"] == info["frames"]
    from s3ta.agents import AgentInputs

    obs = torch.zeros(2, 1, *agent.observation_shape, dtype=torch.uint8)
    with torch.no_grad():
        output, _ = agent(AgentInputs(obs, torch.zeros(2, 1, dtype=torch.long), torch.zeros(2, 1),
                                      torch.ones(2, 1, dtype=torch.bool)), agent.initial_state(1))
    assert output.policy_logits.shape == (2, 1, agent.num_actions)
    for key in ("env", "agent", "config", "frames", "wall_clock_hours", "machine", "protocol", "sha256"):
        assert key in info
    assert {"mean", "ci_low", "ci_high", "episodes"} <= set(info["evaluation"])
    folder = zoo.folder(name)
    assert (folder / zoo.CURVE).exists()


def test_training_hours_add_attempts_and_skip_what_a_resume_replaced(tmp_path):
    # attempt 1 logged frames 100-300 at 10-30 s and died; attempt 2 resumed from the checkpoint at 200
    rows = [(100, 10.0), (200, 20.0), (300, 30.0), (300, 5.0), (400, 15.0)]
    (tmp_path / "metrics.jsonl").write_text("".join(
        json.dumps({"kind": "update", "frames": f, "time": t}) + "\n" for f, t in rows))
    assert zoo.training_hours(tmp_path) == pytest.approx((20 + 15) / 3600)
    assert zoo.training_hours(tmp_path, until_frames=300) == pytest.approx((20 + 5) / 3600)
    assert zoo.training_hours(tmp_path, until_frames=150) == pytest.approx(10 / 3600)


def test_zoo_add_builds_a_verified_agent_and_rejects_tampering(tmp_path):
    run = tmp_path / "run"
    train(tiny(total_frames=100), run)
    root = tmp_path / "zoo"
    root.mkdir()
    zoo.add(run, "catch-tiny", episodes=3, gif_steps=10, root=root, log=lambda text: None)
    assert zoo.names(root) == ["catch-tiny"]
    info = zoo.card("catch-tiny", root)
    assert info["frames"] == 100 and info["evaluation"]["episodes"] == 3 and len(info["evaluation"]["returns"]) == 3
    assert info["trained_on"] == [{"start": 0, "end": None, "device": "cpu", "precision": "fp32"}]
    weights = zoo.weights_path("catch-tiny", root)
    payload = torch.load(weights, weights_only=True)
    assert payload["optimizer"] == {} and set(payload["model"]) == set(load_checkpoint(run).model)
    assert (root / "catch-tiny" / zoo.GIF).stat().st_size > 0
    weights.write_bytes(weights.read_bytes() + b"\x00")
    with pytest.raises(zoo.ZooError, match="sha256"):
        zoo.weights_path("catch-tiny", root)
    with pytest.raises(zoo.ZooError, match="unknown zoo agent"):
        zoo.folder("nope", root)


def test_zoo_names_resolve_everywhere_a_checkpoint_is_taken():
    with pytest.raises(CheckpointError, match="unknown zoo agent"):
        load_agent("zoo:no-such-agent")
    result = s3ta("eval", "zoo:no-such-agent")
    assert result.returncode == 2 and "zoo list" in result.stderr


def test_eval_of_a_zoo_agent_writes_under_runs_not_into_the_package():
    from s3ta.evaluation.evaluate import run_dir_of

    assert run_dir_of(zoo.ZOO_DIR / "pong-s3ta-small" / zoo.WEIGHTS) == Path("runs/zoo/pong-s3ta-small")
    assert run_dir_of(Path("some/run/checkpoints/ckpt-000000000100.pt")) == Path("some/run")


def test_bad_train_values_name_the_flag_and_the_valid_range(tmp_path):
    result = s3ta("train", "--out", str(tmp_path / "run"), "--total-frames", "0", "--discount", "2")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("s3ta train: error: ")
    assert "--total-frames must be > 0, got 0" in result.stderr and "--discount must be in [0, 1]" in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_full_disk_while_training_is_one_line_and_keeps_the_earlier_checkpoints(tmp_path, capsys, monkeypatch):
    import errno

    from s3ta import cli
    from s3ta.training import checkpoint

    train(tiny(total_frames=40), tmp_path)
    before = {p.name: p.read_bytes() for p in (tmp_path / "checkpoints").iterdir()}

    def full(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device", getattr(f, "name", None))

    monkeypatch.setattr(checkpoint.torch, "save", full)
    status = cli.main(["train", "--out", str(tmp_path), "--resume", "--total-frames", "80", "--log-interval", "1000"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and err[-1].startswith("s3ta train: error: ") and "No space left on device" in err[-1]
    assert {p.name: p.read_bytes() for p in (tmp_path / "checkpoints").iterdir()} == before  # no .tmp left
