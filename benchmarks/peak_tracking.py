"""Does a head's peak follow an object? Per head, over the steps of a recording that show the object: the
correlation of the head's peak cell with the object's centre (x and y, in map cells) and their median
distance. Unlike mass on the object's pixels (`s3ta explain grounding`), this also counts a head that
follows the object from a cell or two away.

    python benchmarks/peak_tracking.py runs/rec-a runs/rec-b --label ball
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

from s3ta.analysis.recording import load_recording


def peak_tracking(recording, label: str) -> tuple[int, list[dict]]:
    """(steps with the object, per head: corr_x, corr_y, median distance in cells)."""
    attention = recording.arrays["attention"]  # [T, heads, h, w]
    _, heads, h, w = attention.shape
    height, width = recording.frames.shape[1:3]
    centres, peaks = [], []
    for t in range(recording.num_steps):
        boxes, labels = recording.boxes_at(t)
        found = [box for box, name in zip(boxes, labels) if name == label]
        if not found:
            continue
        x0, y0, x1, y1 = found[0][:4]
        centres.append(((x0 + x1) / 2 / width * w, (y0 + y1) / 2 / height * h))
        peaks.append([np.unravel_index(attention[t, k].argmax(), (h, w)) for k in range(heads)])
    centres, peaks = np.array(centres), np.array(peaks, float) + 0.5  # cell centres, (row, col)
    rows = []
    for k in range(heads):
        with warnings.catch_warnings():  # a peak that never moves has no correlation: nan
            warnings.simplefilter("ignore", RuntimeWarning)
            corr_x = np.corrcoef(peaks[:, k, 1], centres[:, 0])[0, 1]
            corr_y = np.corrcoef(peaks[:, k, 0], centres[:, 1])[0, 1]
        distance = np.hypot(peaks[:, k, 1] - centres[:, 0], peaks[:, k, 0] - centres[:, 1])
        rows.append({"head": k, "corr_x": corr_x, "corr_y": corr_y, "median_distance": float(np.median(distance))})
    return len(centres), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recordings", nargs="+", help="recording directories (from `s3ta explain record`, with RAM boxes)")
    parser.add_argument("--label", default="ball", help="the object class to follow (default ball)")
    args = parser.parse_args()
    print(f"| recording | steps with a {args.label} | head: corr x / corr y, median distance (cells) |")
    print("|---|---:|---|")
    for path in args.recordings:
        recording = load_recording(path)
        if not recording.has_boxes:
            parser.error(f"{path} has no object boxes: record it without --no-ram")
        steps, rows = peak_tracking(recording, args.label)
        cells = "; ".join(f"{r['head']}: {r['corr_x']:+.2f} / {r['corr_y']:+.2f}, {r['median_distance']:.1f}" for r in rows)
        print(f"| {path} | {steps} | {cells} |")


if __name__ == "__main__":
    main()
