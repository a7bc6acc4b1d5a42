"""Novel-object injection (spec 6.7, the paper's Seaquest experiment): paste a sprite into the
observation frames at the pixel level (the game does not know of it) and see whether the attention
goes to it and the policy changes.

The recorded episode is replayed twice on the same inputs: the control without the sprite, and
the injected run with the sprite pasted from ``onset`` on, moving along its path. Per step and head
the attention mass on the sprite's pixels is reported for both runs (the control's mass on the
same pixels is the baseline), with KL(control || injected) of the policy and greedy-action flips.
Sprites: built-in (``SPRITES``) or any PNG (its alpha channel, or non-black pixels, is the shape).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from s3ta.analysis.common import kl_divergence, recorded_inputs
from s3ta.analysis.forward import replay
from s3ta.analysis.geometry import pixel_mass
from s3ta.analysis.recording import Recording

_SHARK = """
..........XX....
.........XXX....
XX....XXXXXXXXX.
XXX.XXXXXXXXXXXX
.XXXXXXXXXX.XXXX
XXX.XXXXXXXXXXX.
XX....XXXXXXXX..
..........XX....
"""
_INVADER = """
..X.....X..
...X...X...
..XXXXXXX..
.XX.XXX.XX.
XXXXXXXXXXX
X.XXXXXXX.X
X.X.....X.X
...XX.XX...
"""


def _parse(art: str) -> np.ndarray:
    return np.array([[c == "X" for c in line] for line in art.strip().splitlines()], bool)


SPRITES: dict[str, tuple[np.ndarray, tuple[int, int, int]]] = {
    "shark": (_parse(_SHARK), (92, 186, 92)),  # a fish like Seaquest's, in green
    "invader": (_parse(_INVADER), (255, 255, 255)),
    "square": (np.ones((6, 6), bool), (255, 0, 255)),
}


@dataclass(frozen=True)
class Sprite:
    mask: np.ndarray  # bool [h, w]
    rgb: np.ndarray  # uint8 [h, w, 3]

    @classmethod
    def load(cls, name_or_png: str, scale: int = 1, colour: tuple[int, int, int] | None = None) -> "Sprite":
        if name_or_png in SPRITES:
            mask, default = SPRITES[name_or_png]
            rgb = np.broadcast_to(np.array(colour or default, np.uint8), (*mask.shape, 3)).copy()
        else:
            path = Path(name_or_png)
            if path.suffix.lower() != ".png" or not path.is_file():
                raise ValueError(f"sprite {name_or_png!r} is neither a built-in sprite ({', '.join(SPRITES)}) "
                                 "nor an existing .png file")
            from PIL import Image

            image = np.asarray(Image.open(path).convert("RGBA"))
            rgb = image[..., :3].copy()
            mask = image[..., 3] > 127 if (image[..., 3] < 255).any() else rgb.max(-1) > 0
            if colour is not None:
                rgb[:] = colour
        if scale > 1:
            mask = mask.repeat(scale, 0).repeat(scale, 1)
            rgb = rgb.repeat(scale, 0).repeat(scale, 1)
        if not mask.any():
            raise ValueError(f"sprite {name_or_png!r} has no visible pixels")
        return cls(mask, rgb)


def positions(num_steps: int, onset: int, start: tuple[float, float], velocity: tuple[float, float] = (0.0, 0.0),
              waypoints: list[tuple[float, float]] | None = None, duration: int | None = None) -> list[tuple[int, int] | None]:
    """Top-left (x, y) of the sprite at each step (None where it is absent): from ``onset`` for
    ``duration`` steps (to the end by default), moving by ``velocity`` pixels per step, or through
    ``waypoints`` (evenly timed, linear in between; ``start`` is the first)."""
    out: list[tuple[int, int] | None] = []
    end = num_steps if duration is None else min(num_steps, onset + duration)
    points = [start, *(waypoints or [])]
    span = max(end - onset - 1, 1)
    for t in range(num_steps):
        if not onset <= t < end:
            out.append(None)
            continue
        k = t - onset
        if len(points) > 1:
            where = k / span * (len(points) - 1)
            i = min(int(where), len(points) - 2)
            frac = where - i
            x = points[i][0] + frac * (points[i + 1][0] - points[i][0])
            y = points[i][1] + frac * (points[i + 1][1] - points[i][1])
        else:
            x, y = start[0] + velocity[0] * k, start[1] + velocity[1] * k
        out.append((int(round(x)), int(round(y))))
    return out


def paste(obs: np.ndarray, sprite: Sprite, x: int, y: int) -> tuple[np.ndarray, np.ndarray]:
    """obs [C, H, W] with the sprite's top-left at pixel (x, y) (clipped at the edges); also the
    bool [H, W] mask of the pixels it covers. Grayscale observations get the sprite's luminance."""
    channels, height, width = obs.shape
    out = obs.copy()
    covered = np.zeros((height, width), bool)
    sh, sw = sprite.mask.shape
    y0, y1, x0, x1 = max(y, 0), min(y + sh, height), max(x, 0), min(x + sw, width)
    if y0 >= y1 or x0 >= x1:
        return out, covered
    mask = sprite.mask[y0 - y:y1 - y, x0 - x:x1 - x]
    rgb = sprite.rgb[y0 - y:y1 - y, x0 - x:x1 - x]
    pixels = rgb.transpose(2, 0, 1) if channels == 3 else (rgb @ np.array([0.299, 0.587, 0.114]))[None].astype(obs.dtype)
    region = out[:, y0:y1, x0:x1]
    out[:, y0:y1, x0:x1] = np.where(mask[None], pixels, region)
    covered[y0:y1, x0:x1] = mask
    return out, covered


def inject_frames(obs: np.ndarray, sprite: Sprite, where: list[tuple[int, int] | None]) -> tuple[np.ndarray, np.ndarray]:
    """Paste the sprite into observations [T, C, H, W] at ``where[t]``; returns them and masks [T, H, W]."""
    out, masks = obs.copy(), np.zeros((obs.shape[0], *obs.shape[2:]), bool)
    for t, position in enumerate(where):
        if position is not None:
            out[t], masks[t] = paste(obs[t], sprite, *position)
    return out, masks


@torch.no_grad()
def inject(agent: nn.Module, recording: Recording, sprite: Sprite, where: list[tuple[int, int] | None]) -> dict[str, Any]:
    """Replay the recording with and without the sprite; per-step and summary effects."""
    if len(where) != recording.num_steps:
        raise ValueError(f"need one position per recorded step ({recording.num_steps}), got {len(where)}")
    agent.eval()
    obs = recording.arrays["obs"]
    injected_obs, masks = inject_frames(obs, sprite, where)
    control = replay(agent, recorded_inputs(recording))
    injected = replay(agent, recorded_inputs(recording, injected_obs))
    kl = kl_divergence(control.output.policy_logits[:, 0], injected.output.policy_logits[:, 0]).cpu().numpy()
    flip = (control.output.policy_logits[:, 0].argmax(-1) != injected.output.policy_logits[:, 0].argmax(-1)).cpu().numpy()
    present = np.array([p is not None and masks[t].any() for t, p in enumerate(where)])
    result: dict[str, Any] = {
        "sprite_area_px": int(sprite.mask.sum()),
        "present": present.tolist(),
        "positions": [list(p) if p is not None else None for p in where],
        "kl": kl.tolist(), "flip": flip.tolist(),
        "value_change": (injected.output.baseline[:, 0] - control.output.baseline[:, 0]).cpu().numpy().tolist(),
    }
    height, width = obs.shape[-2:]
    if injected.output.attention is not None:
        heads = injected.output.attention.shape[2]
        mass_injected = np.zeros((len(where), heads))
        mass_control = np.zeros((len(where), heads))
        for t in np.flatnonzero(present):
            mass_injected[t] = (pixel_mass(injected.output.attention[t, 0].cpu().numpy(), height, width)
                                * masks[t]).sum((-1, -2))
            mass_control[t] = (pixel_mass(control.output.attention[t, 0].cpu().numpy(), height, width)
                               * masks[t]).sum((-1, -2))
        result["mass_on_sprite"] = {"injected": mass_injected.tolist(), "control": mass_control.tolist()}
        result["area_fraction"] = (masks.sum((-1, -2)) / (height * width)).tolist()
    summary = {"steps_with_sprite": int(present.sum())}
    if present.any():
        summary.update(mean_kl=float(kl[present].mean()), flip_rate=float(flip[present].mean()),
                       mean_kl_before=float(kl[~present].mean()) if (~present).any() else None)
        if "mass_on_sprite" in result:
            summary["mean_mass_injected"] = np.asarray(result["mass_on_sprite"]["injected"])[present].mean(0).tolist()
            summary["mean_mass_control"] = np.asarray(result["mass_on_sprite"]["control"])[present].mean(0).tolist()
            summary["mean_area_fraction"] = float(np.asarray(result["area_fraction"])[present].mean())
    result["summary"] = summary
    result["_injected_output"] = injected.output  # for writing a recording of the injected run
    result["_injected_obs"] = injected_obs
    return result


def injected_recording(recording: Recording, result: dict[str, Any]) -> Recording:
    """A recording of the injected replay (frames with the sprite, the agent's outputs on them),
    to render with ``s3ta explain video`` / ``view``. Actions stay the recorded ones (open loop)."""
    output = result["_injected_output"]
    arrays = dict(recording.arrays)
    arrays["obs"] = result["_injected_obs"]
    logits = output.policy_logits[:, 0].float()
    arrays["policy_logits"] = logits.cpu().numpy()
    arrays["action_probs"] = torch.softmax(logits, -1).cpu().numpy()
    arrays["value"] = output.baseline[:, 0].cpu().numpy()
    for name in ("attention", "queries", "content_logits", "spatial_logits"):
        value = getattr(output, name)
        if value is not None:
            arrays[name] = value[:, 0].cpu().numpy()
    meta = dict(recording.meta)
    meta["source"] = dict(meta["source"], injected_from=str(recording.path))
    return Recording(meta, arrays, None, recording.weights)
