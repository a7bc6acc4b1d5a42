"""Video of a recording: a large panel with every head's attention on the frame, a small-multiple
panel per head, and a strip of synchronised timelines (value, reward, chosen action and its
probability) with a cursor at the current step. MP4 through imageio-ffmpeg (libx264), GIF through
Pillow; frames are composed with NumPy and Pillow's text drawing.
"""

from __future__ import annotations

import errno
import math
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from s3ta.analysis.recording import Recording
from s3ta.viz.overlay import head_colour, overlay, scale_image, what_where_overlay

MODES = ("attention", "whatwhere")
BACKGROUND = (18, 18, 22)
TEXT = (235, 235, 235)
ROW_HEIGHT = 44  # pixels per timeline row
LABEL = 18  # pixels of the label line above each panel


def _font(size: int = 13) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


class FrameComposer:
    """Composes the video frame of any recorded step; one instance per recording and style."""

    def __init__(self, recording: Recording, *, upsample: str = "nearest", opacity: float = 0.7,
                 mode: str = "attention", scale: int | None = None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "whatwhere":
            recording.require_attention("the what/where video")
        self.recording, self.upsample, self.opacity, self.mode = recording, upsample, opacity, mode
        frames = recording.frames
        self.frames = frames
        height, width = frames.shape[1:3]
        self.scale = scale or max(1, round(384 / height))
        self.heads = recording.num_heads
        self.font, self.small = _font(14), _font(12)
        if recording.has_attention:
            self.grid_rows = math.ceil(self.heads / 2)
            self.panel_scale = max(1, (2 * self.scale) // (2 * self.grid_rows)) if self.grid_rows > 1 else self.scale
            main_h = height * self.scale
            grid_h = self.grid_rows * (height * self.panel_scale + LABEL) - LABEL
            self.top_height = max(main_h, grid_h) + 2 * LABEL
            grid_w = (2 if self.heads > 1 else 1) * width * self.panel_scale + 6
            self.width = width * self.scale + 12 + grid_w
        else:
            self.top_height = height * self.scale + 2 * LABEL
            self.width = max(width * self.scale, 360)
        self.width += (-self.width) % 16  # H.264 wants sizes divisible by 16
        self.timeline_height = 3 * ROW_HEIGHT + 8
        self.height = self.top_height + self.timeline_height + 6
        self.height += (-self.height) % 16
        if mode == "whatwhere":
            from s3ta.analysis.whatwhere import balance, what_where

            arrays = recording.arrays
            weighted = what_where(arrays["attention"], arrays["content_logits"], arrays["spatial_logits"]).weighted
            self.balanced = balance(weighted)  # [T, N, h, w]

    # --- pieces ----------------------------------------------------------------------------
    def _head_panel(self, t: int, head: int) -> np.ndarray:
        frame, maps = self.frames[t], self.recording.arrays["attention"][t]
        if self.mode == "whatwhere":
            return what_where_overlay(frame, maps[head], self.balanced[t, head], self.upsample, self.opacity)
        return overlay(frame, maps, [head], self.upsample, self.opacity)

    def _timeline(self, t: int) -> Image.Image:
        rec = self.recording
        arrays = rec.arrays
        episode = int(arrays["episode"][t])
        span = rec.episode_slice(episode)
        start, stop = span.start, span.stop
        width, left, right = self.width, 96, 12
        plot_w = width - left - right
        image = Image.new("RGB", (width, self.timeline_height), BACKGROUND)
        draw = ImageDraw.Draw(image)

        def x_of(step: int) -> float:
            return left + (step - start + 0.5) * plot_w / max(stop - start, 1)

        value = arrays["value"][span]
        reward = arrays["reward"][span]
        chosen = arrays["action_probs"][span][np.arange(stop - start), arrays["action"][span]]
        rows = [("value", value, (235, 235, 235), "line"), ("reward", reward, (90, 220, 90), "bars"),
                ("p(action)", chosen, (255, 215, 0), "line")]
        for r, (name, series, colour, style) in enumerate(rows):
            top = 4 + r * ROW_HEIGHT
            bottom = top + ROW_HEIGHT - 8
            draw.rectangle([left, top, width - right, bottom], outline=(70, 70, 80))
            draw.text((6, top + 2), name, fill=colour, font=self.small)
            low, high = (0.0, 1.0) if name == "p(action)" else (float(min(series.min(), 0)), float(max(series.max(), 0)))
            if high - low < 1e-6:
                high = low + 1.0
            draw.text((6, top + 18), f"{high:.3g}/{low:.3g}", fill=(150, 150, 160), font=self.small)

            def y_of(v: float) -> float:
                return bottom - 2 - (v - low) / (high - low) * (bottom - top - 4)

            if style == "line":
                points = [(x_of(start + i), y_of(float(v))) for i, v in enumerate(series)]
                if len(points) > 1:
                    draw.line(points, fill=colour, width=2)
                else:
                    draw.point(points, fill=colour)
            else:
                zero = y_of(0.0)
                for i, v in enumerate(series):
                    if v != 0:
                        x = x_of(start + i)
                        draw.line([(x, zero), (x, y_of(float(v)))], fill=colour if v > 0 else (240, 80, 80), width=2)
        cursor = x_of(t)
        draw.line([(cursor, 2), (cursor, self.timeline_height - 2)], fill=(255, 255, 255), width=1)
        return image

    def header_text(self, t: int) -> str:
        """The line above recorded step t: episode and step numbered from 0, as the viewer,
        recording.json and ``s3ta explain video --episodes`` number them; action, p, V, r."""
        arrays, names = self.recording.arrays, self.recording.action_names
        action = int(arrays["action"][t])
        return (f"episode {int(arrays['episode'][t])} step {int(arrays['episode_step'][t])}   "
                f"{names[action] if action < len(names) else action} p={arrays['action_probs'][t, action]:.2f}   "
                f"V={arrays['value'][t]:+.2f}   r={arrays['reward'][t]:+g}")

    def __call__(self, t: int) -> np.ndarray:
        """The composed RGB frame [height, width, 3] of recorded step t."""
        rec, arrays = self.recording, self.recording.arrays
        canvas = Image.new("RGB", (self.width, self.height), BACKGROUND)
        draw = ImageDraw.Draw(canvas)
        frame = self.frames[t]
        header = self.header_text(t)
        if rec.has_attention:
            maps = arrays["attention"][t]
            if self.mode == "whatwhere":
                main = frame
                title = "what (red) / where (blue)"
            else:
                main = overlay(frame, maps, None, self.upsample, self.opacity)
                title = "all heads"
            draw.text((4, 2), header, fill=TEXT, font=self.small)
            canvas.paste(Image.fromarray(scale_image(main, self.scale)), (0, 2 * LABEL))
            draw.text((4, LABEL + 2), title, fill=TEXT, font=self.small)
            x0 = frame.shape[1] * self.scale + 12
            ph, pw = frame.shape[0] * self.panel_scale, frame.shape[1] * self.panel_scale
            for head in range(self.heads):
                row, col = divmod(head, 2)
                x, y = x0 + col * (pw + 6), 2 * LABEL + row * (ph + LABEL)
                canvas.paste(Image.fromarray(scale_image(self._head_panel(t, head), self.panel_scale)), (x, y))
                peak = float(maps[head].max())
                draw.text((x + 2, y - LABEL + 2), f"head {head}  peak {peak:.1%}", fill=head_colour(head),
                          font=self.small)
        else:
            draw.text((4, 2), header, fill=TEXT, font=self.small)
            canvas.paste(Image.fromarray(scale_image(frame, self.scale)), (0, 2 * LABEL))
            draw.text((4, LABEL + 2), "no attention (baseline agent)", fill=TEXT, font=self.small)
        canvas.paste(self._timeline(t), (0, self.top_height + 4))
        return np.asarray(canvas)


def iter_video_frames(recording: Recording, steps: np.ndarray | None = None, **style) -> Iterator[np.ndarray]:
    composer = FrameComposer(recording, **style)
    for t in (range(recording.num_steps) if steps is None else steps):
        yield composer(int(t))


def write_video(recording: Recording, path: str | Path, *, episodes: list[int] | None = None,
                max_steps: int | None = None, fps: float = 15.0, upsample: str = "nearest",
                opacity: float = 0.7, mode: str = "attention", progress: bool = False) -> Path:
    """Write an MP4 (libx264, yuv420p) or a GIF (by ``path``'s suffix) of the recording's steps
    (the given episodes, all by default; at most ``max_steps`` frames). Returns the path."""
    from s3ta.analysis.recording import iter_episode_steps
    from s3ta.outputs import writable_dir

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise ValueError(f"video path must end in .mp4 or .gif, got {path.name!r}")
    steps = iter_episode_steps(recording, episodes)
    if max_steps is not None:
        steps = steps[:max_steps]
    if len(steps) == 0:
        raise ValueError(f"no steps to write: the recording has {recording.num_steps} steps, episodes {episodes}, "
                         f"max_steps {max_steps}")
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a video file", str(path))
    writable_dir(path.parent)  # before rendering
    frames = iter_video_frames(recording, steps, upsample=upsample, opacity=opacity, mode=mode)
    if progress:
        from tqdm import tqdm

        frames = tqdm(frames, total=len(steps), desc=f"writing {path.name}", unit="frame")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".gif":
        # The palette's sample frames are rendered twice (16 of them): cheaper than holding every frame in RGB.
        samples = sample_evenly(steps, GIF_PALETTE_SAMPLES)
        style = dict(upsample=upsample, opacity=opacity, mode=mode)
        palette = gif_palette(list(iter_video_frames(recording, samples, **style)))
        save_gif(frames, path, palette, fps)
        return path
    import imageio.v2 as imageio

    writer = imageio.get_writer(path, format="FFMPEG", fps=fps, codec="libx264", quality=8,
                                pixelformat="yuv420p", macro_block_size=16, ffmpeg_log_level="error")
    with writer:
        for frame in frames:
            writer.append_data(frame)
    return path


GIF_PALETTE_SAMPLES = 16  # frames, spread over the video, that the GIF's one palette is made from


def sample_evenly(items: np.ndarray, count: int) -> np.ndarray:
    """At most ``count`` of ``items``, evenly spread from the first to the last."""
    if len(items) <= count:
        return items
    return items[np.unique(np.linspace(0, len(items) - 1, count).round().astype(int))]


def gif_palette(frames: list[np.ndarray]) -> Image.Image:
    """One 256-colour palette for a whole GIF, from sample frames (median cut, no dithering).

    A palette shared by every frame, without dithering, keeps flat regions flat from frame to frame,
    which is what GIF's compression can use: with a dithered palette per frame the zoo's Pong GIF
    was twice the size (docs/benchmarks.md, "Attention GIFs").
    """
    return Image.fromarray(np.concatenate(frames, axis=0)).quantize(
        colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)


def save_gif(frames: Iterable[np.ndarray], path: Path, palette: Image.Image, fps: float) -> None:
    """Write RGB frames as a looping GIF in one ``palette`` (from ``gif_palette``), without dithering.
    Pillow keeps the frames until it writes: one byte per pixel each once quantized."""
    images = [Image.fromarray(frame).quantize(palette=palette, dither=Image.Dither.NONE) for frame in frames]
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=1000.0 / fps, loop=0)
