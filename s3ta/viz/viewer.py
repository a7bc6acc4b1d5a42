"""The interactive viewer: one self-contained HTML file (no network, no server) to play, pause,
step and scrub through a recording, toggle and recolour heads, change the overlay opacity, switch
between "attention", "what-where" and "saliency" (where computed) and follow linked charts of
value, reward and action probabilities with a cursor at the current step.

Frames are embedded as PNG data URLs, attention maps as base64 uint8 (each map rescaled to its own
[min, max], as in the video), what/where maps as base64 int8. The page draws with canvas 2D and the
same cell <-> pixel mapping as ``s3ta.analysis.geometry``.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from s3ta.analysis.recording import Recording, iter_episode_steps, load_recording
from s3ta.viz.overlay import head_hex
from s3ta.viz.viewer_template import TEMPLATE

SALIENCY_FILE = "analysis/saliency_maps.npz"


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def _png(frame: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG", optimize=False, compress_level=6)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _unit_maps(maps: np.ndarray) -> np.ndarray:
    """uint8 maps [..., h, w], each rescaled from its [min, max] to [0, 255]."""
    low = maps.min(axis=(-1, -2), keepdims=True)
    spread = maps.max(axis=(-1, -2), keepdims=True) - low
    return np.rint((maps - low) / np.where(spread > 0, spread, 1.0) * 255).astype(np.uint8)


def viewer_data(recording: Recording, steps: np.ndarray) -> dict[str, Any]:
    """The JSON the page reads (also handy for tests)."""
    arrays = recording.arrays
    frames = recording.frames[steps]
    data: dict[str, Any] = {
        "title": f"{recording.meta['source']['agent']['name']} on {recording.meta['source'].get('env', '?')}",
        "numSteps": int(len(steps)),
        "frameHeight": int(frames.shape[1]), "frameWidth": int(frames.shape[2]),
        "frames": [_png(f) for f in frames],
        "steps": steps.tolist(),
        "episode": arrays["episode"][steps].tolist(),
        "episodeStep": arrays["episode_step"][steps].tolist(),
        "value": np.round(arrays["value"][steps], 5).tolist(),
        "reward": np.round(arrays["reward"][steps], 5).tolist(),
        "action": arrays["action"][steps].tolist(),
        "probs": np.round(arrays["action_probs"][steps], 4).tolist(),
        "actionNames": recording.action_names,
        "modes": [],
    }
    if recording.has_attention:
        from s3ta.analysis.whatwhere import balance, what_where

        attention = arrays["attention"][steps]
        heads, h, w = attention.shape[1:]
        data.update(heads=int(heads), mapHeight=int(h), mapWidth=int(w),
                    headColours=[head_hex(i) for i in range(heads)],
                    attention=_b64(_unit_maps(attention)),
                    attentionPeak=np.round(attention.max(axis=(-1, -2)), 5).tolist())
        data["modes"].append("attention")
        if "content_logits" in arrays:
            ww = what_where(attention, arrays["content_logits"][steps], arrays["spatial_logits"][steps])
            data["whatWhere"] = _b64(np.rint(balance(ww.weighted) * 127).astype(np.int8))
            data["whatWhereScore"] = np.round(ww.score, 4).tolist()
            data["modes"].append("what-where")
    else:
        data.update(heads=0)
    saliency_path = recording.path / SALIENCY_FILE if recording.path else None
    if saliency_path is not None and saliency_path.is_file():
        with np.load(saliency_path) as saved:
            position = {int(t): i for i, t in enumerate(steps)}
            entries = {}
            for k, t in enumerate(saved["steps"]):
                if int(t) in position:
                    entries[position[int(t)]] = {"policy": _b64(_unit_maps(saved["policy"][k])),
                                                 "value": _b64(_unit_maps(saved["value"][k]))}
            if entries:
                data["saliency"] = entries
                data["modes"].append("saliency")
    if recording.has_boxes:
        data["boxes"] = [[[round(float(v), 1) for v in box] for box in recording.boxes_at(int(t))[0]] for t in steps]
    return data


def write_viewer(recording: Recording | str | Path, path: str | Path | None = None, *,
                 episodes: list[int] | None = None, max_steps: int | None = None) -> Path:
    """Write the self-contained viewer of ``recording`` (a Recording or a directory) to ``path``
    (default: ``viewer.html`` in the recording directory). Returns the path."""
    from s3ta.outputs import writable_dir

    if not isinstance(recording, Recording):
        recording = load_recording(recording)
    if path is None:
        if recording.path is None:
            raise ValueError("give a path for a recording that was not saved")
        path = recording.path / "viewer.html"
    steps = iter_episode_steps(recording, episodes)
    if max_steps is not None:
        steps = steps[:max_steps]
    data = viewer_data(recording, steps)
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    page = TEMPLATE.replace("__TITLE__", html.escape(data["title"])).replace("__DATA__", payload)
    path = Path(path)
    writable_dir(path.parent)
    path.write_text(page, encoding="utf-8")
    return path
