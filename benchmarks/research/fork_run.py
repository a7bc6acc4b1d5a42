"""Fork a training run at one of its checkpoints with some settings changed, to test what a setting does
from that point on (docs/notebook/breakout.md: Breakout (1b) holds run (1)'s learning rate from 26.33M frames).

Writes ``--out``: the source run's ``config.json`` with the ``--set KEY=VALUE`` changes (JSON values;
checked by TrainConfig), the checkpoint under ``checkpoints/``, and the source's ``metrics.jsonl`` cut at
the checkpoint's frames, so that the fork's log and ``zoo.training_hours`` count the shared start once.
Then continue it with ``s3ta train --out OUT --resume``; a resumed run follows its config's schedule.

    git show 51fa498:training-wip/breakout-s1/ckpt-000026333440.pt > /tmp/ckpt-000026333440.pt
    python benchmarks/research/fork_run.py benchmarks/results/training-logs/breakout-s1 /tmp/ckpt-000026333440.pt \\
        --set lr_schedule='"constant"' --set learning_rate=2.05e-4 --out runs/breakout-s1-hold
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from s3ta.training import TrainConfig
from s3ta.training.checkpoint import CheckpointError, checkpoint_dir, load_checkpoint


def parse_setting(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--set wants KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError as error:
        raise ValueError(f"--set {key}: {value!r} is not a JSON value (strings need quotes: '\"constant\"')") from error


def fork(source: Path, checkpoint: Path, out: Path, settings: dict[str, object]) -> TrainConfig:
    """Make the fork directory; returns its config."""
    if out.exists():
        raise ValueError(f"{out} exists; a fork starts in a new directory")
    config = json.loads((source / "config.json").read_text())
    unknown = sorted(set(settings) - set(config))
    if unknown:
        raise ValueError(f"unknown settings {unknown}; config.json has {sorted(config)}")
    config.update(settings)
    forked = TrainConfig.from_dict(config)  # validates the changed values
    frames = load_checkpoint(checkpoint).counters["frames"]
    log = [line for line in (source / "metrics.jsonl").read_text().splitlines()
           if line.strip() and json.loads(line)["frames"] <= frames]
    out.mkdir(parents=True)
    forked.save(out / "config.json")
    (out / "metrics.jsonl").write_text("\n".join(log) + "\n")
    checkpoint_dir(out).mkdir()
    shutil.copy2(checkpoint, checkpoint_dir(out) / checkpoint.name)
    print(f"forked {source} at {frames:,} frames ({len(log)} log lines) into {out}; changed {settings}")
    return forked


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="the run (or its kept log) with config.json and metrics.jsonl")
    parser.add_argument("checkpoint", type=Path, help="the checkpoint of that run to start from")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="a config.json setting to change (a JSON value); repeat for several")
    parser.add_argument("--out", type=Path, required=True, help="the new run directory")
    args = parser.parse_args(argv)
    try:
        fork(args.source, args.checkpoint, args.out, dict(parse_setting(s) for s in args.settings))
    except (ValueError, OSError, CheckpointError) as error:
        print(f"fork_run: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
