"""Attention GIFs: size and write time of s3ta's GIF encoding against a dithered palette per frame.

Renders a recording's video frames once, then writes the same frames two ways: as ``s3ta explain video``
does (one palette for the whole GIF, no dithering) and as imageio's GIF writer does by default (an
adaptive palette per frame with Floyd-Steinberg dithering, how s3ta wrote GIFs before).

    s3ta explain record zoo:pong-s3ta-small-run4 --seed 2 --max-steps 240 --out runs/gif-bench
    python benchmarks/gif_size.py runs/gif-bench --out runs/gif-bench
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

from s3ta.analysis.recording import iter_episode_steps, load_recording
from s3ta.viz.video import GIF_PALETTE_SAMPLES, gif_palette, iter_video_frames, sample_evenly, save_gif


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recording", type=Path, help="a recording directory (from `s3ta explain record`)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the two GIFs")
    parser.add_argument("--max-steps", type=int, default=240)
    args = parser.parse_args()

    recording = load_recording(args.recording)
    steps = iter_episode_steps(recording)[: args.max_steps]
    start = time.perf_counter()
    frames = list(iter_video_frames(recording, steps))
    render = time.perf_counter() - start
    height, width = frames[0].shape[:2]
    print(f"{len(frames)} frames of {width}x{height}, rendered in {render:.1f} s")
    args.out.mkdir(parents=True, exist_ok=True)

    def shared_palette(path: Path) -> None:  # what write_video does with the frames it renders
        samples = sample_evenly(np.arange(len(frames)), GIF_PALETTE_SAMPLES)
        save_gif(frames, path, gif_palette([frames[i] for i in samples]), 15)

    def per_frame_dithered(path: Path) -> None:
        with imageio.get_writer(path, format="GIF", mode="I", duration=1000 / 15, loop=0) as writer:
            for frame in frames:
                writer.append_data(frame)

    print("| encoding | size (MB) | encode time (s) |")
    print("|---|---:|---:|")
    for name, write in (("one palette, no dithering (s3ta)", shared_palette),
                        ("palette per frame, dithered (imageio default)", per_frame_dithered)):
        path = args.out / (write.__name__ + ".gif")
        start = time.perf_counter()
        write(path)
        print(f"| {name} | {path.stat().st_size / 1e6:.2f} | {time.perf_counter() - start:.1f} |", flush=True)


if __name__ == "__main__":
    main()
