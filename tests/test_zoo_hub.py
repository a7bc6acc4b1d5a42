"""`s3ta zoo export NAME DIR`: a folder for a model hub whose README.md front matter is the common
reinforcement-learning model card (parsed here with a YAML parser, as hubs read it), followed by the
protocol fields that format lacks and the commands that reproduce the agent. No network is used."""

from __future__ import annotations

import hashlib
import socket
import statistics

import pytest
import yaml  # PyYAML: in the test extra with Ray, which needs it

from s3ta import zoo
from s3ta.cli import main
from s3ta.training.config import TrainConfig, config_source
from s3ta.zoo.hub import export, train_command


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def run(argv, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        status = main([str(a) for a in argv])
    except SystemExit as stop:
        status = stop.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the export tried to open a network connection")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_export_writes_a_hub_folder_whose_card_parses(tmp_path, capsys, no_network):
    out = tmp_path / "hub"
    status, printed, err = run(["zoo", "export", "zoo:catch-s3ta-small", out], capsys)
    assert status == 0, err
    info = zoo.card("catch-s3ta-small")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "attention.gif", "card.json", "learning_curve.png",
                                                     "weights.pt"]
    assert hashlib.sha256((out / "weights.pt").read_bytes()).hexdigest() == info["sha256"]
    assert f"wrote {out / 'README.md'}" in printed

    readme = (out / "README.md").read_text()
    meta = front_matter(readme)
    assert meta["library_name"] == "s3ta"
    assert {"reinforcement-learning", "deep-reinforcement-learning", "catch"} <= set(meta["tags"])
    result = meta["model-index"][0]["results"][0]
    assert meta["model-index"][0]["name"] == "catch-s3ta-small"
    assert result["task"]["type"] == "reinforcement-learning"
    assert result["dataset"]["name"] == result["dataset"]["type"] == "catch"
    metric = result["metrics"][0]
    assert metric["type"] == "mean_reward" and metric["verified"] is False
    returns = info["evaluation"]["returns"]
    assert metric["value"] == f"{info['evaluation']['mean']:.2f} +/- {statistics.stdev(returns):.2f}"

    body = readme.split("---\n", 2)[2]
    for field in ("| sticky actions | none |", "| action set | 3 actions: LEFT, STAY, RIGHT |",
                  f"| training frames | {info['frames']:,} |", f"| evaluation episodes | {len(returns)} |"):
        assert field in body, field
    assert (info.get("train_command") or train_command(info["config"], out="runs/catch-s3ta-small")) in body
    assert train_command(info["config"]).startswith("s3ta train --env catch --seed 0 --total-frames 250000 ")
    assert f"s3ta eval zoo:catch-s3ta-small --episodes {len(returns)}" in body


def test_export_refuses_to_replace_an_earlier_export_unless_forced(tmp_path, capsys):
    out = tmp_path / "hub"
    export("catch-s3ta-small", out)
    (out / "README.md").write_text("edited by hand")
    status, _, err = run(["zoo", "export", "catch-s3ta-small", out], capsys)
    assert status == 2 and err.startswith("s3ta zoo export: error: ") and "--force" in err
    assert (out / "README.md").read_text() == "edited by hand"
    assert run(["zoo", "export", "catch-s3ta-small", out, "--force"], capsys)[0] == 0
    assert (out / "README.md").read_text().startswith("---\n")
    status, _, err = run(["zoo", "export", "no-such-agent", tmp_path / "x"], capsys)
    assert status == 2 and "unknown zoo agent" in err and not (tmp_path / "x").exists()


def test_an_atari_card_names_the_protocol_and_the_preset_command():
    """A card trained under atari-small: sticky actions and no-ops of its protocol, the full action set,
    and a command whose preset plus flags give back the card's learning settings."""
    info = zoo.card("pong-s3ta-small")
    from s3ta.zoo.hub import model_card

    readme = model_card(info)
    meta = front_matter(readme)
    assert meta["model-index"][0]["results"][0]["dataset"]["name"] == "pong" and "atari" in meta["tags"]
    for field in ("| sticky actions | none (repeat_action_probability 0) |",
                  "| no-op starts | 1 to 30 random no-op frames at each reset |", "| action set | full, 18 actions |"):
        assert field in readme, field
    command = train_command(info["config"])
    preset = info["config"]["preset"]  # NAME@VERSION: the command names the version, which repeats it later too
    assert "@" in preset and command.startswith(f"s3ta train --config {preset} --env pong --seed {info['config']['seed']} ")
    # the command's settings, read as `s3ta train` reads them, are the card's learning settings
    words = command.split()
    values = dict(config_source(preset))
    for flag, value in zip(words[2::2], words[3::2]):
        key = flag[2:].replace("-", "_")
        if key in ("config", "out"):
            continue
        values[key] = type(TrainConfig.__dataclass_fields__[key].default)(value) if key != "env" else value
    learned = {k: v for k, v in info["config"].items() if k not in ("mode", "backend", "ray_address", "num_actors",
               "envs_per_actor", "num_buffers", "learner_threads", "unroll_threads", "device", "num_learners",
               "checkpoint_interval", "keep_checkpoints", "log_interval", "preset")}
    defaults = {k: f.default for k, f in TrainConfig.__dataclass_fields__.items()
                if k in learned or k == "lr_constant_frames"}
    expected = {**defaults, **learned}
    assert {k: values.get(k, defaults.get(k)) for k in expected} == expected
