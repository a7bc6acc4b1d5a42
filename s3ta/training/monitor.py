"""What a training run reports: TensorBoard scalars, a JSON-lines metrics file (``metrics.jsonl``:
``{"kind": "episode", ...}`` per finished episode, ``{"kind": "update", ...}`` per logged update),
and a live progress bar that degrades to plain periodic lines when stdout is not a terminal.
A run that continues from a checkpoint first drops what was logged after it, so that no frame is
counted twice.
"""

from __future__ import annotations

import collections
import json
import math
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm


def drop_records_after(path: Path, frames: int) -> int:
    """Keep the records of the JSON-lines log ``path`` up to ``frames`` (and drop a line torn by a kill);
    returns how many were dropped. The file is replaced atomically."""
    if not path.exists():
        return 0
    lines = path.read_text().splitlines()
    kept = []
    for line in lines:
        try:
            if json.loads(line)["frames"] <= frames:
                kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            pass
    if len(kept) < len(lines):
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, path)
    return len(lines) - len(kept)


def format_return(mean_return: float, episodes: int) -> str:
    """The progress lines' "return 0.42 (last 100)", or "return - (no episode yet)"."""
    return f"return {mean_return:.3g} (last {episodes})" if episodes else "return - (no episode yet)"


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Monitor:
    def __init__(self, run_dir: str | Path, total_frames: int, start_frames: int, log_interval: float,
                 stream=None, tensorboard: bool = True):
        """``start_frames``: the frame count of the checkpoint the run continues from (0 for a new run);
        records logged after it, by an attempt that went further, are dropped."""
        self.run_dir = Path(run_dir)
        self.total_frames = total_frames
        self.log_interval = log_interval
        self.stream = stream or sys.stdout
        self.dropped = drop_records_after(self.run_dir / "metrics.jsonl", start_frames)
        self.metrics = open(self.run_dir / "metrics.jsonl", "a", buffering=1)
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # TensorBoard hides the events of earlier files at steps >= purge_step: those after the checkpoint
            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=start_frames + 1)
        self.recent_returns: collections.deque[float] = collections.deque(maxlen=100)
        self.start_time = self.last_line = time.monotonic()
        self.start_frames = self.frames = start_frames
        self.rate_window: collections.deque[tuple[float, int]] = collections.deque(maxlen=20)
        self.rate_window.append((self.start_time, start_frames))
        self.bar = None
        if getattr(self.stream, "isatty", lambda: False)():
            self.bar = tqdm(total=total_frames, initial=start_frames, unit="frame", unit_scale=True,
                            dynamic_ncols=True, file=self.stream, smoothing=0.1)

    @property
    def mean_return(self) -> float:
        return sum(self.recent_returns) / len(self.recent_returns) if self.recent_returns else math.nan

    def fps(self) -> float:
        (t0, f0), (t1, f1) = self.rate_window[0], self.rate_window[-1]
        return (f1 - f0) / (t1 - t0) if t1 > t0 else math.nan

    def episode(self, frames: int, episode_return: float, length: int) -> None:
        self.recent_returns.append(episode_return)
        self.metrics.write(json.dumps({"kind": "episode", "frames": frames, "return": episode_return,
                                       "length": length}) + "\n")
        if self.writer:
            self.writer.add_scalar("episode/return", episode_return, frames)
            self.writer.add_scalar("episode/length", length, frames)

    def update(self, frames: int, updates: int, steps_per_frame: float, stats: dict[str, float]) -> None:
        now = time.monotonic()
        self.rate_window.append((now, frames))
        fps = self.fps()
        sps = fps * steps_per_frame
        record = {"kind": "update", "frames": frames, "updates": updates, "time": now - self.start_time,
                  "fps": fps, "sps": sps, "mean_return": self.mean_return, **stats}
        if self.writer:
            for key, value in record.items():
                if key not in ("kind", "frames") and isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(key, value, frames)
        if self.bar is not None:
            self.bar.update(frames - self.frames)
            self.bar.set_postfix_str(f"{sps:,.0f} SPS, {format_return(self.mean_return, len(self.recent_returns))}"
                                     f", lr {stats.get('learning_rate', math.nan):.3g}")
        self.frames = frames
        if now - self.last_line >= self.log_interval:
            self.last_line = now
            self.metrics.write(json.dumps(record) + "\n")
            if self.writer:
                self.writer.flush()
            if self.bar is None:
                eta = max(0, self.total_frames - frames) / fps if fps and fps > 0 else math.inf
                print(f"frames {frames:,}/{self.total_frames:,} ({100 * frames / self.total_frames:.0f}%) | "
                      f"{sps:,.0f} SPS | ETA {format_duration(eta)} | "
                      f"{format_return(self.mean_return, len(self.recent_returns))} | "
                      f"loss {stats.get('loss/total', math.nan):.4g} | "
                      f"lr {stats.get('learning_rate', math.nan):.3g}",
                      file=self.stream, flush=True)

    def message(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer:
            self.writer.close()
        self.metrics.close()
