"""Recordings: what an agent saw and did, step by step, in one documented on-disk format that every
renderer and analysis reads. A recording can be rendered without the checkpoint; analyses that
re-run the model (saliency, intervene, inject) load the weights stored beside it.

A recording directory holds:
  ``recording.json``  the index: format version, source (checkpoint, agent, env, seed, protocol),
                      action names, episodes (start, length, return), and every array's shape,
                      dtype and meaning (``ARRAY_DOCS``).
  ``steps.npz``       NumPy arrays, time-major over all recorded steps of all episodes in order.
  ``agent.pt``        the agent's weights and description (``torch.load(weights_only=True)``).
Shape letters: T recorded steps, C/H/W observation, A actions, N heads, h x w attention map,
K ground-truth boxes (NaN-padded), R RAM bytes.
"""

from __future__ import annotations

import datetime
import contextlib
import errno
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from s3ta import __version__, agents

FORMAT_VERSION = 1
INDEX, ARRAYS, WEIGHTS = "recording.json", "steps.npz", "agent.pt"

ARRAY_DOCS = {
    "obs": "[T, C, H, W] uint8: the observation the agent received at step t (the raw frame)",
    "done": "[T] bool: an episode starts at step t (agent input)",
    "prev_action": "[T] int64: the action before step t (agent input; 0 at the first step)",
    "prev_reward": "[T] float32: the raw reward before step t (agent input)",
    "action": "[T] int64: the action chosen at step t",
    "policy_logits": "[T, A] float32: policy logits at step t",
    "action_probs": "[T, A] float32: softmax of the policy logits",
    "value": "[T] float32: the baseline V(x_t)",
    "reward": "[T] float32: raw reward received for the action of step t",
    "episode_end": "[T] bool: the episode ended with the action of step t",
    "episode": "[T] int32: episode index of step t",
    "episode_step": "[T] int32: step t's index inside its episode",
    "attention": "[T, N, h, w] float32: each head's attention weights (each map sums to 1)",
    "queries": "[T, N, K + S] float32: each head's query (absent for l2-keys)",
    "content_logits": "[T, N, h, w] float32: the q_K . K ('what') part of the attention logits",
    "spatial_logits": "[T, N, h, w] float32: the q_S . S ('where') part of the attention logits",
    "boxes": "[T, K, 4] float32: ground-truth object boxes (x0, y0, x1, y1) in pixels, half-open, NaN-padded",
    "box_label": "[T, K] int16: index into recording.json's box_labels per box, -1 for padding",
    "ram": "[T, R] uint8: emulator RAM after step t's observation was produced (Atari)",
}
ATTENTION_ARRAYS = ("attention", "queries", "content_logits", "spatial_logits")


class RecordingError(ValueError):
    """A missing or malformed recording; the message is one line."""


@dataclass
class Recording:
    """One recording in memory: the index ``meta`` (recording.json) and the ``arrays``."""

    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]
    path: Path | None = None
    weights: dict[str, Any] | None = field(default=None, repr=False)  # {"agent": description, "model": state dict}

    # --- views ---------------------------------------------------------------------------
    @property
    def num_steps(self) -> int:
        return int(self.arrays["action"].shape[0])

    @property
    def has_attention(self) -> bool:
        return "attention" in self.arrays

    @property
    def has_boxes(self) -> bool:
        return "boxes" in self.arrays

    @property
    def frames(self) -> np.ndarray:
        """[T, H, W, 3] uint8 RGB frames for rendering (grayscale is repeated)."""
        obs = self.arrays["obs"]
        frames = obs.transpose(0, 2, 3, 1)
        return np.repeat(frames, 3, axis=-1) if frames.shape[-1] == 1 else frames[..., :3]

    @property
    def action_names(self) -> list[str]:
        return list(self.meta["action_names"])

    @property
    def box_labels(self) -> list[str]:
        return list(self.meta.get("box_labels", []))

    @property
    def num_heads(self) -> int:
        return int(self.arrays["attention"].shape[1]) if self.has_attention else 0

    def episode_slice(self, episode: int) -> slice:
        episodes = self.meta["episodes"]
        if not 0 <= episode < len(episodes):
            raise RecordingError(f"episode {episode} is not in the recording (it has {len(episodes)})")
        start = episodes[episode]["start"]
        return slice(start, start + episodes[episode]["length"])

    def boxes_at(self, t: int) -> tuple[np.ndarray, list[str]]:
        """Ground-truth boxes [K, 4] and labels of step t (empty if none were recorded)."""
        if not self.has_boxes:
            return np.zeros((0, 4), np.float32), []
        ids = self.arrays["box_label"][t]
        keep = ids >= 0
        return self.arrays["boxes"][t][keep], [self.box_labels[i] for i in ids[keep]]

    def require_attention(self, what: str) -> None:
        if not self.has_attention:
            raise RecordingError(f"{what} needs attention maps, but the recording at {self.path} is of agent "
                                 f"{self.meta['source']['agent']['name']!r}, which has none")

    def load_agent(self, device: str | torch.device = "cpu") -> nn.Module:
        """The agent that made this recording, with its weights (from agent.pt)."""
        if self.weights is None:
            raise RecordingError(f"recording {self.path} has no {WEIGHTS}; pass --checkpoint")
        agent = agents.from_description(self.weights["agent"])
        agent.load_state_dict(self.weights["model"])
        return agent.to(device).eval()

    # --- files ---------------------------------------------------------------------------
    def save(self, directory: str | Path, *, replace: bool = False) -> Path:
        """Write the recording as ``directory`` (see ``check_save_target`` for what may be there).

        The files are written into a staging directory beside it and moved into place when all are
        written, so a failed write (a full disk) leaves an earlier recording as it was. A replaced
        recording goes as a whole: its videos, viewer and analyses are deleted with it, so that
        nothing made from the old recording stays beside the new one.
        """
        directory = Path(directory)
        if directory.name in ("", ".", ".."):  # "." is renamed by its name in its parent
            directory = directory.resolve()
        check_save_target(directory, replace)
        meta = dict(self.meta)
        meta["arrays"] = {name: {"shape": list(a.shape), "dtype": str(a.dtype), "doc": ARRAY_DOCS.get(name, "")}
                          for name, a in self.arrays.items()}
        meta["files"] = {"index": INDEX, "arrays": ARRAYS, "weights": WEIGHTS if self.weights else None}
        staging, old = (directory.parent / f".{directory.name}.{kind}" for kind in ("partial", "replaced"))
        for leftover in (staging, old):  # from a write that was killed
            shutil.rmtree(leftover, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            np.savez_compressed(staging / ARRAYS, **self.arrays)
            if self.weights is not None:
                torch.save({"agent": json.dumps(self.weights["agent"]), "model": self.weights["model"]},
                           staging / WEIGHTS)
            (staging / INDEX).write_text(json.dumps(meta, indent=1) + "\n")
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if directory.is_dir() and not any(directory.iterdir()):  # an empty directory (a shell's cwd, say) stays
            try:
                for path in staging.iterdir():
                    path.rename(directory / path.name)
            except BaseException:  # it would not take the files: leave it empty and no staging behind
                for name in (ARRAYS, WEIGHTS, INDEX):
                    with contextlib.suppress(OSError):
                        (directory / name).unlink(missing_ok=True)
                shutil.rmtree(staging, ignore_errors=True)
                raise
            staging.rmdir()
        else:
            if directory.exists():  # the recording being replaced
                directory.rename(old)
            staging.rename(directory)
            shutil.rmtree(old, ignore_errors=True)
        self.meta, self.path = meta, directory
        return directory


def check_save_target(directory: str | Path, replace: bool) -> None:
    """Raise unless ``Recording.save`` may write ``directory``: a new or empty directory, or (only
    with ``replace``) one that holds a recording. ``OutputExistsError`` names ``--force``; a
    non-empty directory without a recording is never written into; its parent must be writable."""
    from s3ta.outputs import OutputExistsError, writable_dir

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "is a file, not a directory", str(directory))
    if directory.is_dir() and (directory / INDEX).exists():
        if not replace:
            raise OutputExistsError(f"{directory} already holds a recording; pass --force to replace it (the videos, "
                                    "viewer and analyses in it go with it), or choose another --out")
    elif directory.is_dir() and any(directory.iterdir()):
        raise OutputExistsError(f"{directory} is not empty and holds no recording; choose a new or empty directory")
    writable_dir(directory.parent)  # the staging directory is made beside it
    if directory.is_dir():  # an empty directory is filled in place: it must take files too (a read-only one does not)
        writable_dir(directory)


def load_recording(directory: str | Path) -> Recording:
    """Read a recording directory written by ``Recording.save``."""
    directory = Path(directory)
    if not directory.exists():
        raise RecordingError(f"recording directory {directory} does not exist")
    if not (directory / INDEX).is_file():
        raise RecordingError(f"{directory} is not a recording (no {INDEX}; make one with `s3ta explain record`)")
    try:
        meta = json.loads((directory / INDEX).read_text())
    except json.JSONDecodeError as error:
        raise RecordingError(f"{directory / INDEX} is not valid JSON ({error})") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise RecordingError(f"{directory} has recording format {meta.get('format_version')}, expected {FORMAT_VERSION}")
    try:
        with np.load(directory / ARRAYS, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError) as error:
        raise RecordingError(f"cannot read {directory / ARRAYS}: {error}") from None
    weights = None
    if (directory / WEIGHTS).is_file():
        payload = torch.load(directory / WEIGHTS, map_location="cpu", weights_only=True)
        weights = {"agent": json.loads(payload["agent"]), "model": payload["model"]}
    return Recording(meta, arrays, directory, weights)


def _pad_boxes(per_step: list[tuple[np.ndarray, list[str]]]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    labels = sorted({label for _, names in per_step for label in names})
    index = {label: i for i, label in enumerate(labels)}
    k = max([len(names) for _, names in per_step] + [1])
    boxes = np.full((len(per_step), k, 4), np.nan, np.float32)
    ids = np.full((len(per_step), k), -1, np.int16)
    for t, (b, names) in enumerate(per_step):
        boxes[t, :len(names)] = b
        ids[t, :len(names)] = [index[n] for n in names]
    return boxes, ids, labels


def record(agent: nn.Module, env: Any, num_episodes: int, *, seed: int | None = 0, greedy: bool = False,
           max_steps: int | None = None, source: dict[str, Any] | None = None,
           progress: bool = False) -> Recording:
    """Play ``num_episodes`` episodes of ``agent`` in ``env`` (one env: ``env.num_envs == 1``) and
    record every step. Uses ``s3ta.rollout.run_episodes``, the evaluation's loop."""
    from s3ta.rollout import run_episodes

    if env.num_envs != 1:
        raise ValueError(f"record needs an env with num_envs == 1, got {env.num_envs}")
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
    agent.eval()
    steps = run_episodes(agent, env, num_episodes, greedy=greedy, seed=seed, max_steps=max_steps)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc="recording", unit="step", total=max_steps)
    columns: dict[str, list[Any]] = {name: [] for name in ARRAY_DOCS}
    gt: list[tuple[np.ndarray, list[str]]] = []
    has_boxes = has_ram = False
    prev_action = 0
    for step in steps:
        ts, out = step.timestep, step.output
        columns["obs"].append(ts.obs[0])
        columns["done"].append(bool(ts.done[0]))
        columns["prev_action"].append(prev_action)
        columns["prev_reward"].append(float(ts.reward[0]))
        columns["action"].append(int(step.action[0]))
        logits = out.policy_logits[0].float()
        columns["policy_logits"].append(logits.cpu().numpy())
        columns["action_probs"].append(torch.softmax(logits, -1).cpu().numpy())
        columns["value"].append(float(out.baseline[0]))
        columns["reward"].append(float(step.result.reward[0]))
        columns["episode_end"].append(bool(step.result.done[0]))
        for name in ATTENTION_ARRAYS:
            value = getattr(out, name)
            if value is not None:
                columns[name].append(value[0].float().cpu().numpy())
        if "boxes" in ts.info:
            has_boxes = True
            gt.append((np.asarray(ts.info["boxes"][0], np.float32).reshape(-1, 4), list(ts.info["box_labels"][0])))
        else:
            gt.append((np.zeros((0, 4), np.float32), []))
        if "ram" in ts.info:
            has_ram = True
            columns["ram"].append(np.asarray(ts.info["ram"][0], np.uint8))
        prev_action = int(step.action[0])
    if not columns["action"]:
        raise ValueError("the rollout produced no steps")
    done = np.array(columns["done"])
    episode = (np.cumsum(done) - 1).astype(np.int32)
    arrays: dict[str, np.ndarray] = {
        "obs": np.stack(columns["obs"]).astype(np.uint8),
        "done": done,
        "prev_action": np.array(columns["prev_action"], np.int64),
        "prev_reward": np.array(columns["prev_reward"], np.float32),
        "action": np.array(columns["action"], np.int64),
        "policy_logits": np.stack(columns["policy_logits"]).astype(np.float32),
        "action_probs": np.stack(columns["action_probs"]).astype(np.float32),
        "value": np.array(columns["value"], np.float32),
        "reward": np.array(columns["reward"], np.float32),
        "episode_end": np.array(columns["episode_end"]),
        "episode": episode,
    }
    starts = np.flatnonzero(done)
    arrays["episode_step"] = (np.arange(len(done)) - starts[episode]).astype(np.int32)
    for name in ATTENTION_ARRAYS:
        if columns[name]:
            arrays[name] = np.stack(columns[name]).astype(np.float32)
    box_labels: list[str] = []
    if has_boxes:
        arrays["boxes"], arrays["box_label"], box_labels = _pad_boxes(gt)
    if has_ram:
        arrays["ram"] = np.stack(columns["ram"])
    episodes = []
    for i, start in enumerate(starts):
        stop = starts[i + 1] if i + 1 < len(starts) else len(done)
        episodes.append({"index": i, "start": int(start), "length": int(stop - start),
                         "return": float(arrays["reward"][start:stop].sum()),
                         "complete": bool(arrays["episode_end"][stop - 1])})
    description = agents.describe(agent)
    meta = {
        "format_version": FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "s3ta_version": __version__,
        "source": {"agent": description, "seed": seed, "greedy": greedy, **(source or {})},
        "action_names": list(env.action_names),
        "observation_shape": list(env.observation_shape),
        "num_steps": len(done),
        "episodes": episodes,
        "attention_shape": list(arrays["attention"].shape[1:]) if "attention" in arrays else None,
        "box_labels": box_labels,
    }
    weights = {"agent": description, "model": {k: v.detach().cpu() for k, v in agent.state_dict().items()}}
    return Recording(meta, arrays, None, weights)


def iter_episode_steps(recording: Recording, episodes: Iterable[int] | None = None) -> np.ndarray:
    """Indices of the steps of the given episodes (all by default), in order."""
    if episodes is None:
        return np.arange(recording.num_steps)
    return np.concatenate([np.arange(recording.num_steps)[recording.episode_slice(e)] for e in episodes])
