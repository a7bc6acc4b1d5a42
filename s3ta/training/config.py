"""The training run's configuration: one frozen dataclass, a docstring per field (so `s3ta train
--help` documents itself), validation in __post_init__, and JSON round-trips for run directories.
Defaults are the spec's IMPALA / Mott et al. hyperparameters (spec section 3).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


MACHINE_SETTINGS = ("device", "num_learners", "num_actors", "envs_per_actor", "learner_threads", "unroll_threads")
"""Fields that say how this machine runs a run, not what the run learns: `--resume` takes them from the
command line, so that a run may continue on another machine (a GPU box, then a laptop)."""


def default_num_actors(cores: int | None = None) -> int:
    """One actor process per core but one (of ``cores``, default this machine's), at least one. The
    learner's threads use all cores: on CPU, learning costs ~3x acting per step, so actors spend most
    of their time waiting for free slots."""
    return max(1, (cores or os.cpu_count() or 2) - 1)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run."""

    env: str = "catch"
    """Environment id: a built-in task, an Atari game (e.g. breakout) or a Gymnasium id."""
    agent: str = "s3ta-small"
    """Agent name from s3ta.agents.names()."""
    agent_overrides: dict[str, Any] = field(default_factory=dict)
    """Overrides of the agent's config fields, e.g. {"num_heads": 8}."""
    total_frames: int = 1_000_000
    """Environment frames to train for (agent steps x action repeat)."""
    seed: int = 0
    """Seed of the model initialisation, the environments and action sampling."""
    protocol: str = "paper"
    """Atari protocol: "paper" (no-op starts) or "machado" (sticky actions)."""
    unroll_length: int = 50
    """T: agent steps per unroll (the learner sees T + 1, the first repeating the previous last)."""
    batch_size: int = 32
    """B: unrolls per learner update."""
    discount: float = 0.99
    """gamma."""
    reward_clip: float = 1.0
    """Rewards are clipped to [-reward_clip, reward_clip] in the loss; raw rewards are logged."""
    baseline_cost: float = 0.5
    """Weight of the baseline (value) loss."""
    entropy_cost: float = 0.01
    """Weight of the entropy regulariser."""
    clip_rho_threshold: float = 1.0
    """V-trace rho-bar."""
    clip_pg_rho_threshold: float = 1.0
    """V-trace rho-bar of the policy-gradient advantage."""
    learning_rate: float = 2e-4
    """RMSProp learning rate at the start of the run."""
    rmsprop_eps: float = 0.01
    """RMSProp epsilon (assumes summed, not averaged, losses)."""
    rmsprop_alpha: float = 0.99
    """RMSProp decay."""
    momentum: float = 0.0
    """RMSProp momentum."""
    lr_schedule: str = "linear"
    """"linear" decay to 0 over total_frames, or "constant"."""
    lr_constant_frames: int = 0
    """Linear schedule: hold learning_rate for this many frames, then follow the linear schedule from
    there (a step down to learning_rate * (1 - frames / total_frames)); 0 = decay from the start. No
    effect on the constant schedule."""
    grad_norm_clip: float = 40.0
    """Global gradient-norm clipping of the summed loss (0 disables)."""
    mode: str = "parallel"
    """Local backend: "parallel": actor processes and the learner overlap; "serial": they alternate in one
    process (deterministic for a seed; for debugging and tests)."""
    backend: str = "local"
    """Where actors run: "local" (processes on this machine, see mode) or "ray" (Ray actors on the cluster
    at ray_address; the learner stays here)."""
    ray_address: str = ""
    """Ray backend: "" starts a local Ray instance; "auto" or HOST:PORT joins a running cluster."""
    num_actors: int = field(default_factory=default_num_actors)
    """Actor processes (parallel mode) or Ray actors (ray backend)."""
    envs_per_actor: int = 0
    """Environments each actor steps as one batch; 0 = batch_size / num_actors, rounded down to a divisor of
    batch_size."""
    num_buffers: int = 0
    """Shared-memory unroll slots; 0 = twice what one learner batch needs."""
    learner_threads: int = 0
    """torch threads of the learner; 0 = all cores. Learning costs ~3x acting per step, so actors mostly
    wait for free slots and the learner can share their cores (docs/benchmarks.md)."""
    unroll_threads: int = 0
    """CPU torch threads of the learner's time loop (forward and backward), the rest of the update keeping
    learner_threads; 0 = one thread when a step of the loop is small (under 0.5 GFLOP at batch_size), else
    learner_threads. Small per-step operators lose more to waking threads than they gain (docs/benchmarks.md)."""
    precision: str = "fp32"
    """Arithmetic of the forward passes: "fp32", or "bf16" (autocast: convolutions and matmuls in bf16;
    weights, optimizer state, attention softmax, policy and value heads, V-trace and loss in fp32). Acting
    uses it too. Where the learner's device has no native bf16 the run says so and trains in fp32."""
    device: str = "auto"
    """Learner device: "auto" (cuda if available), "cpu" or "cuda"."""
    num_learners: int = 1
    """Data-parallel learner processes, each taking batch_size / num_learners unrolls of every batch
    (one per GPU, rank i on cuda:i; gloo processes on CPU). See docs/multi-gpu.md."""
    checkpoint_interval: float = 300.0
    """Seconds between periodic checkpoints."""
    keep_checkpoints: int = 3
    """How many checkpoints to keep."""
    log_interval: float = 10.0
    """Seconds between plain-text progress lines (when stdout is not a terminal) and TB flushes."""
    preset: str = ""
    """The preset this config started from, as NAME@VERSION (e.g. atari-small@1); a record, not a setting."""

    def __post_init__(self):
        from s3ta import agents  # local: keep the config importable without torch start-up cost

        check_override_types(agents.config_for(self.agent), self.agent_overrides)
        agents.config_for(self.agent, **self.agent_overrides)  # unknown fields, the agent's own checks
        requirements = {  # field: (holds, the valid range as the message states it)
            "total_frames": (self.total_frames > 0, "> 0"), "unroll_length": (self.unroll_length > 0, "> 0"),
            "batch_size": (self.batch_size > 0, "> 0"), "num_actors": (self.num_actors > 0, "> 0"),
            "envs_per_actor": (self.envs_per_actor >= 0, ">= 0"), "num_buffers": (self.num_buffers >= 0, ">= 0"),
            "learning_rate": (self.learning_rate > 0, "> 0"), "rmsprop_eps": (self.rmsprop_eps > 0, "> 0"),
            "discount": (0.0 <= self.discount <= 1.0, "in [0, 1]"), "reward_clip": (self.reward_clip > 0, "> 0"),
            "keep_checkpoints": (self.keep_checkpoints > 0, "> 0"),
            "lr_constant_frames": (self.lr_constant_frames >= 0, ">= 0 (0 = decay from the start)"),
            "grad_norm_clip": (self.grad_norm_clip >= 0, ">= 0 (0 disables clipping)"),
            "checkpoint_interval": (self.checkpoint_interval > 0, "> 0 seconds"),
            "learner_threads": (self.learner_threads >= 0, ">= 0 (0 = all cores)"),
            "unroll_threads": (self.unroll_threads >= 0, ">= 0 (0 = automatic)"),
        }
        bad = [f"{name} must be {rule}, got {getattr(self, name)!r}"
               for name, (holds, rule) in requirements.items() if not holds]
        if bad:
            raise ValueError("; ".join(bad))
        for name, allowed in (("mode", ("parallel", "serial")), ("backend", ("local", "ray")),
                              ("lr_schedule", ("linear", "constant")),
                              ("protocol", ("paper", "machado")), ("device", ("auto", "cpu", "cuda")),
                              ("precision", ("fp32", "bf16"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.backend == "ray" and self.mode == "serial":
            raise ValueError("mode 'serial' acts in the learner's process; it does not combine with backend 'ray'")
        if self.mode == "parallel" and self.batch_size % self.actor_batch != 0:
            raise ValueError(f"batch_size {self.batch_size} must be a multiple of envs_per_actor {self.actor_batch}")
        if self.num_learners < 1 or self.batch_size % self.num_learners != 0:
            raise ValueError(f"num_learners must be >= 1 and divide batch_size (each learner takes batch_size / "
                             f"num_learners unrolls), got num_learners={self.num_learners}, "
                             f"batch_size={self.batch_size}")
        if self.mode == "serial" and self.num_learners > 1:
            raise ValueError(f"num_learners must be 1 in mode 'serial' (acting and learning alternate in one "
                             f"process), got {self.num_learners}; several learners need mode 'parallel'")

    @property
    def actor_batch(self) -> int:
        """Environments per actor (and per unroll slot); by default the largest divisor of batch_size
        that gives every actor at least one slot per batch (32 envs, 3 actors -> 8)."""
        if self.envs_per_actor:
            return self.envs_per_actor
        share = max(1, self.batch_size // self.num_actors)
        return max(d for d in range(1, share + 1) if self.batch_size % d == 0)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown training config keys {unknown}")
        return cls(**values)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"cannot read training config {path}: {error}") from None


_KINDS = {bool: ("true or false", "booleans"), int: ("an integer", "integers"), float: ("a number", "numbers"),
          str: ("a string", "strings")}  # a field's type as an error message names it, alone and in a list


def _fits(value: Any, default: Any) -> bool:
    """Whether ``value`` (a JSON value) has the type of the field whose default is ``default``."""
    if isinstance(default, tuple):
        return isinstance(value, (list, tuple)) and (not default or all(_fits(item, default[0]) for item in value))
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def check_override_types(agent_config: Any, overrides: dict[str, Any]) -> None:
    """Raise a one-line ValueError for an override whose type is not its field's (``num_heads="abc"``,
    ``conv_channels=16``), before the agent's own checks meet it as a TypeError."""
    defaults = {f.name: getattr(agent_config, f.name) for f in dataclasses.fields(agent_config)}
    for name, value in overrides.items():
        default = defaults.get(name)
        if name not in defaults or _fits(value, default):
            continue
        if isinstance(default, tuple):
            kind = f"a list of {_KINDS[type(default[0])][1]}" if default else "a list"
        else:
            kind = _KINDS.get(type(default), (type(default).__name__,))[0]
        example = json.dumps(list(default) if isinstance(default, tuple) else default)
        raise ValueError(f"agent config {name} must be {kind} like {example}, got {value!r}")


PRESET_DIR = Path(__file__).parent / "presets"
"""Each preset's current version, NAME.json; its earlier versions, frozen, in versions/NAME@VERSION.json."""


def preset_names() -> list[str]:
    """Names of the training presets shipped with the package (s3ta/training/presets/*.json)."""
    return sorted(path.stem for path in PRESET_DIR.glob("*.json"))


def preset_versions(name: str) -> list[int]:
    """Every version of preset ``name`` that this package can load, the current one last."""
    current = _read_preset(name, PRESET_DIR / f"{name}.json")["version"]
    earlier = (int(path.stem.rpartition("@")[2]) for path in (PRESET_DIR / "versions").glob(f"{name}@*.json"))
    return sorted({*earlier, current})


def load_preset(name: str) -> dict[str, Any]:
    """A shipped preset, ``NAME`` (its current version) or ``NAME@VERSION`` (that version, so that a run
    made under it can be repeated after the preset has moved on): {"name", "version", "description",
    "config": {TrainConfig fields}, "deviations": {field: why it differs from the paper's default}}."""
    base, _, version = name.partition("@")
    current = _read_preset(base, PRESET_DIR / f"{base}.json")
    if not version or version == str(current["version"]):
        return current
    path = PRESET_DIR / "versions" / f"{base}@{version}.json"
    if not version.isdigit() or not path.is_file():
        versions = ", ".join(f"{base}@{v}" for v in preset_versions(base))
        raise ValueError(f"preset {base!r} has no version {version!r}; versions: {versions} "
                         f"(the last is current, also named {base!r})")
    return _read_preset(name, path)


def _read_preset(name: str, path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(preset_names()) or 'none'} "
                         f"(or give the path of a config.json)")
    preset = json.loads(path.read_text())
    undocumented = sorted(set(preset["config"]) - set(preset["deviations"]) - {"env"})
    if undocumented:
        raise ValueError(f"preset {name!r} changes {undocumented} without saying why (its 'deviations')")
    return preset


def config_source(name_or_path: str | Path) -> dict[str, Any]:
    """TrainConfig values from a config.json path or a preset name (the preset is recorded in "preset")."""
    path = Path(name_or_path)
    if path.suffix == ".json" or path.exists():
        return TrainConfig.load(path).to_dict()
    preset = load_preset(str(name_or_path))
    return {**preset["config"], "preset": f"{preset['name']}@{preset['version']}"}
