"""A zoo agent as a folder for a model hub (`s3ta zoo export NAME DIR`): its weights, card, learning
curve and attention GIF, and a README.md model card in the common reinforcement-learning format (YAML
front matter with ``library_name``, ``tags`` and ``model-index`` results: task reinforcement-learning,
dataset the env id, ``mean_reward`` as "μ +/- σ"), followed by what that format has no field for: the
evaluation protocol (sticky actions, no-op starts, action set, frames, episodes) and the command that
trains the agent again. Nothing here touches the network.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
import statistics
from pathlib import Path
from typing import Any

from s3ta.checkpoints import CARD, CURVE, GIF, PREFIX, WEIGHTS, ZOO_DIR, zoo_card, zoo_folder, zoo_weights
from s3ta.outputs import creatable_dir, refuse_to_replace, writable_dir

README = "README.md"
EXPORTED = (WEIGHTS, CARD, CURVE, GIF, README)
# TrainConfig fields that say where and how fast a run trains, not what it learns: left out of the command.
MACHINE_FIELDS = ("mode", "backend", "ray_address", "num_actors", "envs_per_actor", "num_buffers", "learner_threads",
                  "unroll_threads", "device", "num_learners", "checkpoint_interval", "keep_checkpoints",
                  "log_interval", "preset")


def export(name: str, out: str | Path, *, replace: bool = False, root: Path = ZOO_DIR) -> list[Path]:
    """Write zoo agent ``name``'s hub folder ``out``: the weights (hash-checked), card.json, the learning
    curve and GIF where the agent has them, and README.md. ``out`` is checked before anything is written;
    files already there are replaced only with ``replace``. Returns the files written."""
    source = zoo_folder(name, root)
    weights = zoo_weights(name, root)  # raises if the weights do not match the card
    info = zoo_card(name, root)
    out = creatable_dir(out)
    refuse_to_replace(out, EXPORTED, "an exported zoo agent", replace)
    writable_dir(out)
    written = []
    for file in (weights, source / CARD, source / CURVE, source / GIF):
        if file.is_file():
            written.append(Path(shutil.copyfile(file, out / file.name)))
    (out / README).write_text(model_card(info, has_curve=(source / CURVE).is_file(), has_gif=(source / GIF).is_file()))
    return [*written, out / README]


def mean_reward(info: dict[str, Any]) -> str:
    """The card's evaluation as the hub's "μ +/- σ": mean return and the sample standard deviation of the
    episodes' returns (as `s3ta eval` prints it)."""
    evaluation = info["evaluation"]
    returns = evaluation.get("returns") or []
    spread = statistics.stdev(returns) if len(returns) > 1 else 0.0
    return f"{evaluation['mean']:.2f} +/- {spread:.2f}"


def train_command(config: dict[str, Any], out: str = "runs/agent") -> str:
    """The `s3ta train` command that trains a run with ``config`` (a TrainConfig.to_dict) again: the
    preset it started from, if this s3ta still ships it, and a flag for every learning setting that
    differs from it (the machine's settings, such as actors and threads, are left to the machine)."""
    from s3ta.training.config import TrainConfig, load_preset

    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
    defaults["agent_overrides"] = {}
    config = {**defaults, **config}  # a field saved before it existed had its default
    base = dict(defaults)
    words = ["s3ta", "train"]
    preset = config.get("preset") or ""  # NAME@VERSION: that version, even once the preset has moved on
    if preset:
        try:
            base.update(load_preset(preset)["config"])
            words += ["--config", preset]
        except (ValueError, OSError):  # a preset this version no longer ships: every setting as a flag
            pass
    words += ["--env", str(config["env"]), "--seed", str(config.get("seed", 0))]
    for key, value in config.items():
        if key in (*MACHINE_FIELDS, "env", "seed", "agent_overrides") or value == base.get(key, value):
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            words.append(flag if value else f"--no-{key.replace('_', '-')}")
        else:
            words += [flag, str(value)]
    overrides = config.get("agent_overrides") or {}
    if overrides != base["agent_overrides"]:
        for key, value in overrides.items():
            words += ["--agent-config", f"{key}={json.dumps(value)}"]
    words += ["--out", out]
    return " ".join(shlex.quote(word) for word in words)


def _yaml(value: Any) -> str:
    """A YAML scalar: strings double-quoted (JSON's escapes are YAML's), numbers as they are."""
    return json.dumps(value)


def front_matter(info: dict[str, Any]) -> str:
    """The model card's YAML front matter, in the reinforcement-learning convention of model hubs."""
    env = info["env"]
    tags = ["reinforcement-learning", "deep-reinforcement-learning", "s3ta", "attention", env]
    if _atari_game(env):
        tags.append("atari")
    lines = ["---", f"library_name: {_yaml('s3ta')}", "tags:", *(f"- {_yaml(tag)}" for tag in tags),
             "model-index:", f"- name: {_yaml(info['name'])}", "  results:", "  - task:",
             f"      type: {_yaml('reinforcement-learning')}", f"      name: {_yaml('reinforcement-learning')}",
             "    dataset:", f"      name: {_yaml(env)}", f"      type: {_yaml(env)}", "    metrics:",
             f"    - type: {_yaml('mean_reward')}", f"      value: {_yaml(mean_reward(info))}",
             f"      name: {_yaml('mean_reward')}", "      verified: false", "---", ""]
    return "\n".join(lines)


def _atari_game(env_id: str) -> str | None:
    from s3ta.envs.atari import game_from_id

    return game_from_id(env_id)


def protocol_rows(info: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, value) rows of how the agent was trained and scored that the front matter cannot hold."""
    env, config = info["env"], info.get("config", {})
    evaluation = info["evaluation"]
    description = info.get("agent_description", {})
    shape = description.get("observation_shape")
    num_actions = description.get("num_actions")
    rows = [("environment", f"`{env}`")]
    game = _atari_game(env)
    if game is not None:
        from s3ta.envs.atari import FRAMESKIP, MAX_EPISODE_FRAMES, PROTOCOLS

        protocol = info.get("protocol", "paper")
        settings = PROTOCOLS[protocol]
        sticky = settings["repeat_action_probability"]
        rows += [("emulator", f"ale-py, ROM `{game}`"),
                 ("protocol", f"`{protocol}` (`s3ta eval --protocol {protocol}`)"),
                 ("sticky actions", f"p = {sticky:g}" if sticky else "none (repeat_action_probability 0)"),
                 ("no-op starts", f"1 to {settings['noop_max']} random no-op frames at each reset"
                  if settings["noop_max"] else "none"),
                 ("action set", f"full, {num_actions} actions" if settings["full_action_space"]
                  else f"minimal, {num_actions} actions"),
                 ("frame skip", f"{FRAMESKIP}, the last two frames max-pooled"),
                 ("observation", f"one {shape[1]}x{shape[2]} RGB frame per step, no stacking or resizing"
                  if shape else "one RGB frame per step"),
                 ("episode cap", f"{MAX_EPISODE_FRAMES:,} frames (30 minutes of play)"),
                 ("life loss", "not signalled to the agent; an episode is a whole game")]
    else:
        from s3ta import envs

        task = envs.BUILTIN_TASKS.get(env)
        actions = ", ".join(task.action_names) if task is not None else ""
        rows += [("emulator", "s3ta's built-in pixel task" if task is not None else "Gymnasium"),
                 ("sticky actions", "none"),
                 ("action set", f"{num_actions} actions" + (f": {actions}" if actions else "")),
                 ("observation", f"{shape[0]}x{shape[1]}x{shape[2]} (C, H, W) uint8 pixels" if shape else "pixels"),
                 ("frame skip", "none: one frame per agent step")]
    budget = config.get("total_frames", 0)
    rows += [("training frames", f"{info['frames']:,}" + (f" (a checkpoint of a run of {budget:,})"
                                                           if budget > info["frames"] else "")),
             ("training reward clip", f"±{config['reward_clip']:g}" if config.get("reward_clip") else "none"),
             ("evaluation episodes", str(evaluation["episodes"])),
             ("evaluation actions", f"{evaluation.get('policy', 'sampled')} (from the softmax policy)"
              if evaluation.get("policy", "sampled") == "sampled" else "greedy (argmax)"),
             ("evaluation seed", str(evaluation.get("seed"))),
             ("evaluation rewards", "raw game score, unclipped")]
    return rows


def model_card(info: dict[str, Any], *, has_curve: bool = True, has_gif: bool = True) -> str:
    """README.md for the hub folder of the zoo agent whose card is ``info``."""
    name, env, agent = info["name"], info["env"], info["agent"]
    evaluation = info["evaluation"]
    pct = int(round(100 * evaluation.get("confidence", 0.95)))
    command = info.get("train_command") or train_command(info.get("config", {"env": env}), out=f"runs/{name}")
    lines = [front_matter(info), f"# `{agent}` on `{env}` (s3ta zoo agent `{name}`)", "", _summary(info), ""]
    if has_gif:
        lines += [f"![the agent playing, with its attention heads over the frame]({GIF})", ""]
    lines += ["## Results", "", "| mean reward (μ +/- σ) | mean, 95% CI | episodes | human-normalised |",
              "|---|---|---|---|"]
    norm = evaluation.get("normalized")
    hns = "—" if not norm else f"{norm['mean']:.1%} [{norm['ci_low']:.1%}, {norm['ci_high']:.1%}]"
    lines += [f"| {mean_reward(info)} | {evaluation['mean']:.2f} [{evaluation['ci_low']:.2f}, "
              f"{evaluation['ci_high']:.2f}] ({pct}%) | {evaluation['episodes']} | {hns} |", "",
              "σ is the standard deviation of the episodes' returns; the interval is Student's t over episodes.", "",
              "## Evaluation protocol", "",
              "What the results above were measured under, beyond the front matter's fields:", "",
              "| | |", "|---|---|", *(f"| {field} | {value} |" for field, value in protocol_rows(info)), "",
              "## Use it", "", "```python", "import s3ta", "",
              f'policy = s3ta.load("{WEIGHTS}")      # or "{PREFIX}{name}" with s3ta installed',
              "env = policy.make_env()              # the env and protocol it was trained on",
              "timestep = env.reset(seed=0)",
              "step = policy.step(timestep)         # step.action, step.attention [B, heads, h, w], ...",
              "```", "",
              "```", f"s3ta eval {WEIGHTS} --episodes {evaluation['episodes']}        # the results above",
              f"s3ta explain record {WEIGHTS} --out rec && s3ta explain view rec   # its attention, step by step",
              "```", "",
              "## Reproduce it", "", "```", command,
              evaluation.get("command") or f"s3ta eval {PREFIX}{name} --episodes {evaluation['episodes']}", "```", ""]
    hours, machine = info.get("wall_clock_hours"), info.get("machine")
    if hours is not None:
        lines += [f"Training took {hours:.2f} hours" + (f" on {machine}" if machine else "") + ".", ""]
    lines += ["## Files", "", f"- `{WEIGHTS}`: an s3ta checkpoint holding the model only; load it with "
              "`torch.load(..., weights_only=True)` or `s3ta.load`.",
              f"- `{CARD}`: how it was trained and scored (config, frames, evaluation returns, sha256 of the weights)."]
    if has_curve:
        lines.append(f"- `{CURVE}`: its training return against frames.")
    if has_gif:
        lines.append(f"- `{GIF}`: the first steps of an evaluation episode with each head's attention.")
    if info.get("notes"):
        lines += ["", "## Notes", "", info["notes"]]
    return "\n".join(lines) + "\n"


def _summary(info: dict[str, Any]) -> str:
    """What the agent is, in a sentence."""
    config = info.get("agent_description", {}).get("config", {})
    heads, queries = config.get("num_heads"), config.get("queries")
    if heads and queries != "projection":
        return (f"An S3TA agent (Mott et al. 2019, *Towards Interpretable Reinforcement Learning Using Attention "
                f"Augmented Agents*): a recurrent IMPALA agent that sees each frame only through {heads} soft "
                "attention heads, whose maps show where it looks at every step. Trained and scored with s3ta.")
    return f"An agent of s3ta (`{info['agent']}`, without attention), trained with IMPALA and scored with s3ta."
