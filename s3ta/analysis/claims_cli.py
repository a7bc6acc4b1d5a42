"""`s3ta claims CLAIM --agent AGENT --out DIR`: put one of the paper's five interpretability claims to its
test (``s3ta.analysis.claims``) and write DIR/claim-CLAIM.json (every number), DIR/claim-CLAIM.md (a table
with the command that made it) and DIR/claim-CLAIM.png. Claims 1, 2, 4 and 5 measure a recording (made
here, into DIR/recording, or given with --recording); claim 3 plays the agent live.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

from s3ta.cli import UsageError, command, positive_int

CLAIMS = {"what-where": 1, "looks-at": 2, "novel-objects": 3, "planning": 4, "trip-wires": 5}
TITLES = {1: "What and where: heads query content and position separately",
          2: "What heads look at: the score and lives, power-ups, the region ahead of the player",
          3: "Novel objects: an inserted sprite is attended and the agent reacts to it, again and again",
          4: "Planning: heads look down the corridors ahead; a ghost in an attended corridor is avoided",
          5: "Trip wires: heads watch fixed places and fire when the ball crosses them"}
LIVES_RAM = {"breakout": 57, "space_invaders": 73, "seaquest": 59, "ms_pacman": 123}
"""Per game, the RAM byte whose low 3 bits follow the lives count (each equal, up to an offset, to ALE's
``lives()`` over 3,000 random steps, found by search); claim 2 finds the lives display from its drops."""
FACING = {"breakout": (0.0, -1.0), "space_invaders": (0.0, -1.0), "pong": (-1.0, 0.0)}
"""Players that face one way whatever they do (a paddle or cannon that plays upwards; Pong's right paddle
plays to the left); elsewhere the heading is the player's last move."""
MAZE_ROWS = {"ms_pacman": (0, 172)}
"""The frame rows [y0, y1) of Ms. Pac-Man's maze (its lives, fruit and score are below)."""
NOVEL_COLOUR = (255, 0, 255)
DEFAULTS = {"episodes": 2, "max_steps": 600, "seed": 0, "block": 20, "draws": 1000, "reach": 48, "trials": 30,
            "duration": 60, "window": 15, "onset": (30, 150), "sprite": "invader"}
"""The options' defaults: the parser's, and what the command line written beside each result leaves out."""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``s3ta claims`` to the top-level subparsers."""
    p = subparsers.add_parser(
        "claims", help="test one of the paper's interpretability claims on an agent: a number, a 95%% CI, a control",
        description="Claims: what-where (1), looks-at (2), novel-objects (3, Seaquest, live), planning (4, Ms. "
                    "Pac-Man), trip-wires (5, Breakout). Writes OUT/claim-CLAIM.{json,md,png}; claims 1, 2, 4, 5 "
                    "also the recording they measured (OUT/recording) unless --recording is given.")
    p.add_argument("claim", help="what-where, looks-at, novel-objects, planning or trip-wires (or 1..5)")
    p.add_argument("--agent", required=True,
                   help="zoo:NAME, a checkpoint or run directory, or an agent name (untrained; needs --env)")
    p.add_argument("--env", help="environment id (default: the checkpoint's)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--recording", help="measure this recording (from `s3ta explain record` or an earlier claim; "
                                       "its own weights, not --agent) instead of recording")
    p.add_argument("--episodes", type=positive_int, help="episodes to record (default 2)")
    p.add_argument("--max-steps", type=positive_int, help="cap on recorded steps in all (default 600)")
    p.add_argument("--seed", type=int, help="env, action, untrained-agent and bootstrap seed (default 0)")
    p.add_argument("--greedy", action="store_true", help="record greedy actions (default: sampled, as trained)")
    p.add_argument("--block", type=positive_int, help="steps per bootstrap block (default 20)")
    p.add_argument("--draws", type=positive_int, help="bootstrap resamples (default 1000)")
    p.add_argument("--reach", type=positive_int, help="looks-at, planning: pixels ahead of the player measured (default 48)")
    p.add_argument("--trials", type=positive_int, help="novel-objects: insertions (default 30)")
    p.add_argument("--duration", type=positive_int, help="novel-objects: steps the sprite stays (default 60)")
    p.add_argument("--window", type=positive_int,
                   help="novel-objects: steps per reaction window; later windows test the repeat (default 15)")
    p.add_argument("--onset", type=positive_int, nargs=2, metavar=("LO", "HI"),
                   help="novel-objects: the insertion comes after LO..HI steps of play (default 30 150)")
    p.add_argument("--sprite", help="novel-objects: the novel sprite, built-in or .png (default invader, in magenta)")
    p.add_argument("--force", action="store_true", help="replace an earlier recording in OUT/recording")
    p.set_defaults(func=command("claims")(run), **DEFAULTS)
    return p


register = add_parser  # the name ``s3ta.cli.COMMAND_MODULES`` calls


def run(args: argparse.Namespace) -> int:
    claim = CLAIMS.get(args.claim) or (int(args.claim) if args.claim in {"1", "2", "3", "4", "5"} else None)
    if claim is None:
        raise UsageError(f"unknown claim {args.claim!r}; choose one of {', '.join(CLAIMS)} (or 1..5)")
    from s3ta.outputs import creatable_dir, writable_dir

    if claim == 3 and args.recording:
        raise UsageError("novel-objects plays the agent live; it takes no --recording")
    creatable_dir(Path(args.out))
    loaded = None if args.recording else _agent_and_env(args)  # a bad agent fails before DIR is made
    out = writable_dir(Path(args.out))
    name = next(k for k, v in CLAIMS.items() if v == claim)
    argv = ["s3ta", "claims", name] + _argv_tail(args)
    if claim == 3:
        result = _novel_objects(args, loaded)
    else:
        recording = _recording(args, out, loaded)
        result = {1: _what_where, 2: _looks_at, 4: _planning, 5: _trip_wires}[claim](recording, args)
        result["recording"] = {"path": str(recording.path), "steps": recording.num_steps,
                               "episodes": recording.meta["episodes"], "source": recording.meta["source"]}
    result.update(claim=claim, name=name, title=TITLES[claim], command=" ".join(shlex.quote(a) for a in argv))
    from s3ta.analysis.common import write_json

    paths = [write_json(_public(result), out / f"claim-{name}.json")]
    (out / f"claim-{name}.md").write_text(markdown(result))
    paths.append(out / f"claim-{name}.md")
    paths.append(PLOTS[claim](result, out / f"claim-{name}.png"))
    print(f"claim {claim} ({name}): {result['verdict']} — {result['reason']}")
    for path in paths:
        print(f"wrote {path}")
    return 0


def _argv_tail(args: argparse.Namespace) -> list[str]:
    tail = ["--agent", args.agent, "--out", args.out]
    for flag in ("env", "recording"):
        if getattr(args, flag):
            tail += [f"--{flag}", getattr(args, flag)]
    for key, default in DEFAULTS.items():
        value = getattr(args, key)
        if value != default and tuple(np.atleast_1d(value)) != tuple(np.atleast_1d(default)):
            tail += [f"--{key.replace('_', '-')}", *map(str, np.atleast_1d(value))]
    return tail + (["--greedy"] if args.greedy else [])


def _public(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if not k.startswith("_")}


# --- the agent and its recording ------------------------------------------------------------
def _agent_and_env(args: argparse.Namespace):
    """(agent, env id, protocol, whether untrained) for --agent / --env; an agent without attention maps
    (lstm-small, the ResNet baselines) is refused here, before anything is played or written."""
    agent, env_id, protocol, untrained = _load_agent_and_env(args)
    from s3ta import agents

    if not agents.is_attention_agent(agent):
        name = agents.describe(agent)["name"]
        shown = args.agent if args.agent == name else f"{args.agent} ({name})"
        raise ValueError(f"the claims are about attention heads, and {shown} has none")
    return agent, env_id, protocol, untrained


def _load_agent_and_env(args: argparse.Namespace):
    import torch

    from s3ta import agents

    if args.agent in agents.names():
        if not args.env:
            raise UsageError(f"an untrained agent ({args.agent}) needs --env")
        probe = _ram_env(args.env, args.seed, "paper")
        torch.manual_seed(args.seed)
        agent = agents.build(args.agent, probe.observation_shape, probe.num_actions).eval()
        probe.close()
        return agent, args.env, "paper", True
    from s3ta.checkpoints import load_agent

    agent, checkpoint = load_agent(args.agent)
    env_id = args.env or checkpoint.config.get("env")
    if not env_id:
        raise ValueError(f"checkpoint {checkpoint.path} names no env; pass --env")
    return agent, env_id, checkpoint.config.get("protocol", "paper"), False


def _game(env_id: str) -> str:
    from s3ta.analysis.atari_objects import DECODERS
    from s3ta.envs.atari import game_from_id

    game = game_from_id(env_id)
    if game not in DECODERS:
        raise ValueError(f"the claims need an Atari game with RAM object boxes ({', '.join(DECODERS)}), got {env_id!r}")
    return game


def _ram_env(env_id: str, seed: int, protocol: str):
    from s3ta.analysis.atari_objects import RamAtariEnv

    return RamAtariEnv(_game(env_id), seed=seed, protocol=protocol)


def _recording(args: argparse.Namespace, out: Path, loaded):
    """The recording the claim measures: --recording, or made here from ``loaded`` (``_agent_and_env``)."""
    from s3ta.analysis.recording import check_save_target, load_recording, record

    if args.recording:
        recording = load_recording(args.recording)
    else:
        agent, env_id, protocol, untrained = loaded
        check_save_target(out / "recording", replace=args.force)
        env = _ram_env(env_id, args.seed, protocol)
        recording = record(agent, env, args.episodes, seed=args.seed, greedy=args.greedy, max_steps=args.max_steps,
                           source={"checkpoint": args.agent, "env": env_id, "protocol": protocol,
                                   "untrained": untrained}, progress=sys.stderr.isatty())
        env.close()
        recording.save(out / "recording", replace=args.force)
    recording.require_attention("the claims")
    if "boxes" not in recording.arrays:
        raise ValueError(f"the recording at {recording.path} has no RAM object boxes (record without --no-ram)")
    return recording


def _untrained(recording, seed: int):
    """The outputs [T, 1, ...] of the recording's architecture, untrained (seeded), on its recorded inputs:
    the control of claims 1 and 2 (what the architecture does before it learns)."""
    import torch

    from s3ta import agents
    from s3ta.analysis.common import recorded_inputs
    from s3ta.analysis.forward import replay

    torch.manual_seed(seed)
    agent = agents.from_description(recording.weights["agent"]).eval()
    return replay(agent, recorded_inputs(recording)).output


def _kw(args: argparse.Namespace) -> dict[str, int]:
    return {"block": args.block, "draws": args.draws, "seed": args.seed}


def _labelled_boxes(recording, label: str) -> list[np.ndarray]:
    """Per step, the boxes [K, 4] labelled ``label``."""
    out = []
    for t in range(recording.num_steps):
        boxes, labels = recording.boxes_at(t)
        out.append(np.array([b for b, name in zip(boxes, labels) if name == label], np.float64).reshape(-1, 4))
    return out


# --- claim 1 -------------------------------------------------------------------------------
def _what_where(recording, args: argparse.Namespace) -> dict[str, Any]:
    from s3ta.analysis import claims

    arrays, kw = recording.arrays, _kw(args)
    shares = claims.content_share(arrays["content_logits"], arrays["spatial_logits"], **kw)
    spread = claims.head_spread(arrays["content_logits"], arrays["spatial_logits"], **kw)
    output = _untrained(recording, args.seed)  # the control: the same architecture untrained, same inputs
    content, spatial = output.content_logits[:, 0].numpy(), output.spatial_logits[:, 0].numpy()
    control = claims.content_share(content, spatial, **kw)
    control_spread = claims.head_spread(content, spatial, **kw)
    verdict, reason = claims.what_where_verdict(shares, spread, control_spread)
    return {"method": "per head, sum_t Cov(c, l) / sum_t Var(l) over the positions of each step's logits l = c + s "
                      "(c = q_K.K content, s = q_S.S spatial): the share of the logit variance from content; "
                      "control: the same architecture untrained (seed) on the same inputs",
            "content_share": claims.per_head(shares), "spread": claims.as_dict(spread),
            "control_content_share": claims.per_head(control), "control_spread": claims.as_dict(control_spread),
            "verdict": verdict, "reason": reason}


# --- claim 2 -------------------------------------------------------------------------------
def _looks_at(recording, args: argparse.Namespace) -> dict[str, Any]:
    from s3ta.analysis import claims
    from s3ta.analysis.geometry import box_mask

    arrays, kw = recording.arrays, _kw(args)
    game = _game(recording.meta["source"]["env"])
    obs, attention, starts = arrays["obs"], arrays["attention"], arrays["done"]
    total, _, height, width = obs.shape
    targets: dict[str, Any] = {}
    # The objects' pixels [T, H, W], their boxes widened by a pixel (a decoded box can be a column short)
    sprites = np.stack([box_mask(recording.boxes_at(t)[0] + [-1, -1, 1, 1], height, width) for t in range(total)])
    found = {"score": claims.score_box(obs, arrays["reward"], starts, sprites=sprites)}
    if game in LIVES_RAM and "ram" in arrays:
        found["lives"] = claims.lives_box(obs, arrays["ram"][:, LIVES_RAM[game]] & 7, starts, sprites=sprites)
    del sprites
    for name, box in found.items():
        entry = {"box": list(box) if box else None}
        if box is not None:
            entry.update(claims.target_lift(attention, box_mask(np.array([box]), height, width), **kw))
        targets[name] = entry
    pills = _labelled_boxes(recording, "power_pill")
    if any(len(b) for b in pills):
        pill_masks = np.stack([box_mask(b, height, width) for b in pills])
        targets["power_pills"] = claims.target_lift(attention, pill_masks, **kw)
    players = _labelled_boxes(recording, claims.PLAYER_LABELS.get(game, "player"))
    centres = np.array([((b[0, 0] + b[0, 2]) / 2, (b[0, 1] + b[0, 3]) / 2) if len(b) else (np.nan, np.nan)
                        for b in players])
    if game in FACING:
        headings = np.where(np.isfinite(centres), np.array(FACING[game]), np.nan)
    else:
        headings = claims.headings_from_motion(centres, starts)
    regions: dict[str, list] = {"ahead": [], "behind": []}
    ahead = np.zeros((total, height, width), bool)
    behind = np.zeros_like(ahead)
    for t in range(total):
        if len(players[t]) == 0:
            regions["ahead"].append(None), regions["behind"].append(None)
            continue
        box = tuple(players[t][0])
        for name, sign, masks in (("ahead", 1, ahead), ("behind", -1, behind)):
            region = claims.region_ahead(box, tuple(sign * headings[t]), args.reach, 8, height, width)
            regions[name].append(region)
            if region is not None:
                masks[t] = box_mask(np.array([region]), height, width)
    targets["ahead_of_player"] = claims.target_lift(attention, ahead, **kw)
    targets["behind_player"] = claims.target_lift(attention, behind, **kw)
    # The untrained architecture's lift on each target: what the maps put there before any learning.
    untrained = _untrained(recording, args.seed).attention[:, 0].numpy()
    masks_of = {"ahead_of_player": ahead, "behind_player": behind}
    if "power_pills" in targets:
        masks_of["power_pills"] = pill_masks
    for name, entry in targets.items():
        if entry.get("steps"):
            mask = masks_of.get(name)
            if mask is None:
                mask = box_mask(np.array([entry["box"]]), height, width)
            entry["untrained_lift"] = claims.target_lift(untrained, mask, **kw)
    verdicts = {}
    for name, entry in targets.items():
        if name == "behind_player":
            continue
        control = targets["behind_player"] if name == "ahead_of_player" else None
        verdicts[name] = dict(zip(("verdict", "reason"),
                                  claims.looks_at_verdict(entry, control, entry.get("untrained_lift"))))
    held = [n for n, v in verdicts.items() if v["verdict"] == "holds"]
    measured = [n for n, v in verdicts.items() if v["verdict"] != "not measured"]
    verdict = "holds" if held and len(held) == len(measured) else "partly" if held else "does not hold"
    example = next((t for t in range(total) if regions["ahead"][t] is not None), 0)
    return {"method": "attention mass on each target over the target's share of the frame (the lift; 1 = chance), "
                      "pooled over steps, block-bootstrap CI. Score box: the pixels, outside every RAM object (+1 "
                      "px), that are redrawn (changed, held a step before and after) within 2 steps after at least "
                      "half (and two) of the rewards and after at most 1% of the steps without one; lives box: the "
                      "same after the lives count (RAM) drops; ahead: the player's width + 8 px a side, --reach px "
                      "deep along its heading; behind: the same the other way (the control of ahead). A head looks at "
                      "a target when its lift's CI is above 1 and above every head's lift under the same architecture "
                      "untrained (seeded) on the same inputs",
            "game": game, "targets": targets, "verdicts": verdicts, "verdict": verdict,
            "reason": f"holds for: {', '.join(held) or 'none'}; "
                      f"not for: {', '.join(n for n in measured if n not in held) or 'none'}",
            "_example": {"step": example, "ahead": regions["ahead"][example], "behind": regions["behind"][example]},
            "_recording": recording}


# --- claim 4 -------------------------------------------------------------------------------
def _planning(recording, args: argparse.Namespace) -> dict[str, Any]:
    from s3ta.analysis import claims

    arrays, kw = recording.arrays, _kw(args)
    game = _game(recording.meta["source"]["env"])
    players = _labelled_boxes(recording, "player")
    player_boxes = [tuple(b[0]) if len(b) else None for b in players]
    centres = np.array([((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) if b else (np.nan, np.nan) for b in player_boxes])
    headings = claims.headings_from_motion(centres, arrays["done"])
    ghosts = _labelled_boxes(recording, "ghost")
    clear = [recording.boxes_at(t)[0] for t in range(recording.num_steps)]
    geometry = claims.action_geometry(recording.action_names)
    steps = claims.corridor_steps(arrays["obs"], arrays["attention"], player_boxes, ghosts, clear, headings,
                                  arrays["action_probs"], geometry, reach=args.reach, rows=MAZE_ROWS.get(game))
    ahead = claims.target_lift(arrays["attention"], steps.ahead, **kw)
    behind = claims.target_lift(arrays["attention"], steps.behind, **kw)
    both = steps.ahead.any((1, 2)) & steps.behind.any((1, 2))
    difference = claims.lift_difference(arrays["attention"], steps.ahead, steps.behind, both, **kw)
    away = claims.difference_of_means(np.nan_to_num(steps.away), steps.ghost_in_attended, steps.ghost_elsewhere, **kw)
    verdict, reason = claims.planning_verdict(difference, away)
    return {"method": "corridors: from the player's box along each axis direction until a line across it is >= 80% "
                      "wall (non-background, sprites cleared), at most --reach px; ahead = along the heading (its last "
                      "move), behind = the other way. Attended corridor: the open one where the heads' mean map has the "
                      "largest lift, if > 1. Away: the policy's probability of a move towards no ghost-filled corridor",
            "game": game, "ahead": ahead, "behind": behind,
            "heads_mean_lift_ahead_minus_behind": claims.as_dict(difference),
            "steps_ghost_in_attended": int(steps.ghost_in_attended.sum()),
            "steps_ghost_elsewhere": int(steps.ghost_elsewhere.sum()),
            "p_away_ghost_in_attended": _nanmean(steps.away[steps.ghost_in_attended]),
            "p_away_ghost_elsewhere": _nanmean(steps.away[steps.ghost_elsewhere]),
            "p_away_difference": claims.as_dict(away), "verdict": verdict, "reason": reason}


def _nanmean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else math.nan


# --- claim 5 -------------------------------------------------------------------------------
def _trip_wires(recording, args: argparse.Namespace) -> dict[str, Any]:
    from s3ta.analysis import claims
    from s3ta.analysis.geometry import cell_index

    arrays = recording.arrays
    attention = arrays["attention"]
    height, width = arrays["obs"].shape[-2:]
    h, w = attention.shape[-2:]
    balls = _labelled_boxes(recording, "ball")
    rows, cells = np.full(recording.num_steps, np.nan), np.full(recording.num_steps, -1)
    row_of, col_of = cell_index(height, h), cell_index(width, w)
    for t, b in enumerate(balls):
        if len(b):
            y = min(int((b[0, 1] + b[0, 3]) / 2), height - 1)
            x = min(int((b[0, 0] + b[0, 2]) / 2), width - 1)
            rows[t], cells[t] = row_of[y], row_of[y] * w + col_of[x]
    if not np.isfinite(rows).any():
        raise ValueError(f"trip wires need a ball, and no step of the recording at {recording.path} has one "
                         f"(games with a ball: breakout, pong)")
    heads = claims.trip_wires(attention, rows, cells, arrays["done"], **_kw(args))
    verdict, reason = claims.trip_wire_verdict(heads)
    return {"method": "per head: wire = its most frequent peak cell; fixed: entropy (bits) of its peak cell over the "
                      "steps, CI above which the ball's cell entropy lies; fires: mean mass on the wire cell when the "
                      "ball is in or crosses the wire's row / at the other steps with the ball on screen, its CI above "
                      "1 and above the 97.5% point of the same with the crossings shifted in time (200 shifts)",
            "game": _game(recording.meta["source"]["env"]), "ball_steps": int(np.isfinite(rows).sum()),
            "heads": heads, "verdict": verdict, "reason": reason, "_recording": recording}


# --- claim 3 -------------------------------------------------------------------------------
def _novel_objects(args: argparse.Namespace, loaded) -> dict[str, Any]:
    from s3ta.analysis import claims
    from s3ta.analysis.inject import Sprite

    agent, env_id, protocol, untrained = loaded
    game = _game(env_id)
    if args.onset[0] > args.onset[1]:
        raise UsageError(f"--onset LO HI needs LO <= HI, got {args.onset[0]} {args.onset[1]}")
    sprite = Sprite.load(args.sprite, colour=NOVEL_COLOUR if args.sprite == "invader" else None)
    probe = _ram_env(env_id, args.seed, protocol)
    names = probe.action_names
    probe.close()
    trials = claims.novel_object_trials(agent, lambda seed: _ram_env(env_id, seed, protocol), game, names, sprite,
                                        trials=args.trials, duration=args.duration, onset=tuple(args.onset),
                                        seed=args.seed, progress=sys.stderr.isatty())
    played = [t for t in trials if "skipped" not in t]
    summary = claims.summarise_insertions(played, args.window)
    verdict, reason = claims.novel_object_verdict(summary)
    return {"method": "closed loop: per insertion, play (sampled) to a random step in --onset, then branch: the novel "
                      "sprite swims along a random enemy lane for --duration steps, or a same-shape patch of the lane's "
                      "background colour, or a copy of an enemy the game drew; same frames before, same action draws "
                      "after. Attended: some head's mass on it >= 5x its area share. Reactions: the policy's "
                      "probability of moving towards / away from it and of firing, per --window steps",
            "game": game, "agent": args.agent, "untrained": untrained, "sprite": args.sprite,
            "skipped": len(trials) - len(played), "summary": summary,
            "insertions": [{k: v for k, v in t.items() if k not in claims.VARIANTS} for t in trials],
            "verdict": verdict, "reason": reason}


# --- markdown --------------------------------------------------------------------------------
def _ci(entry: dict[str, Any] | None, digits: int = 2, suffix: str = "") -> str:
    if not entry or entry.get("value") is None or not np.isfinite(entry["value"]):
        return "–"
    value = f"{entry['value']:.{digits}f}{suffix}"
    if entry.get("low") is None or not np.isfinite(entry["low"]):
        return value
    return f"{value} [{entry['low']:.{digits}f}, {entry['high']:.{digits}f}]"


def _change(change: dict[str, Any]) -> str:
    if change["mean"] is None:
        return "–"
    low, high = change["ci95"]
    return f"{change['mean']:+.3f}" + ("" if low is None else f" [{low:+.3f}, {high:+.3f}]")


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# Claim {result['claim']}: {result['title']}", "", "```", result["command"], "```", "",
             f"**Verdict: {result['verdict']}** — {result['reason']}.", "", f"Method: {result['method']}.", ""]
    if "recording" in result:
        lines += [f"Recording: {result['recording']['steps']} steps of {len(result['recording']['episodes'])} "
                  f"episode(s) ({result['recording']['path']}). Values are [95% CI].", ""]
    lines += TABLES[result["claim"]](result)
    return "\n".join(lines) + "\n"


def _table_what_where(result: dict[str, Any]) -> list[str]:
    lines = ["Share of each head's logit variance (over positions) from content: 1 = what only, 0 = where only.", "",
             "| head | content share, trained | content share, untrained (control) |", "|---|---|---|"]
    for n, (a, b) in enumerate(zip(result["content_share"], result["control_content_share"])):
        lines.append(f"| {n} | {_ci(a)} | {_ci(b)} |")
    lines.append(f"| spread (max − min) | {_ci(result['spread'])} | {_ci(result['control_spread'])} |")
    return lines


def _table_looks_at(result: dict[str, Any]) -> list[str]:
    targets = result["targets"]
    names = [n for n, e in targets.items() if e.get("steps")]
    heads = len(next(iter(targets[n]["lift"] for n in names))) if names else 0
    lines = ["Lift = attention mass on the target / the target's share of the frame (1 = chance).", "",
             "| target | box or area | steps | " + " | ".join(f"head {n}" for n in range(heads))
             + " | heads' mean | untrained, best head (control) | verdict |",
             "|---|---|---|" + "---|" * heads + "---|---|---|"]
    for name, entry in targets.items():
        where = (f"x {entry['box'][0]:.0f}–{entry['box'][2]:.0f}, y {entry['box'][1]:.0f}–{entry['box'][3]:.0f}"
                 if entry.get("box") else "not found" if "box" in entry else "per step")
        verdict = result["verdicts"].get(name, {}).get("verdict", "control")
        if not entry.get("steps"):
            dashes = " | ".join("–" for _ in range(heads))
            lines.append(f"| {name} | {where} | 0 | {dashes} | – | – | {verdict} |")
            continue
        lifts = " | ".join(_ci(e, 2, "×") for e in entry["lift"])
        control = entry.get("untrained_lift")
        best = max(control["lift"], key=lambda e: e["value"]) if control and control.get("steps") else None
        lines.append(f"| {name} | {where}, chance {entry['chance']:.4f} | {entry['steps']} | {lifts} | "
                     f"{_ci(entry['heads_mean_lift'], 2, '×')} | {_ci(best, 2, '×')} | {verdict} |")
    return lines


def _table_planning(result: dict[str, Any]) -> list[str]:
    lines = ["Lift = attention mass on the corridor / its share of the frame (1 = chance).", "",
             "| measure | value | control | ", "|---|---|---|"]
    for key, label in (("ahead", "corridor ahead"), ("behind", "corridor behind")):
        entry = result[key]
        if entry.get("steps"):
            lines.append(f"| heads' mean lift, {label} ({entry['steps']} steps) | "
                         f"{_ci(entry['heads_mean_lift'], 2, '×')} | chance 1 |")
    lines.append(f"| ahead − behind (heads' mean lift) | {_ci(result['heads_mean_lift_ahead_minus_behind'])} | 0 |")
    lines.append(f"| p(move away), ghost in the attended corridor ({result['steps_ghost_in_attended']} steps) vs in "
                 f"another ({result['steps_ghost_elsewhere']} steps) | {result['p_away_ghost_in_attended']:.3f} | "
                 f"{result['p_away_ghost_elsewhere']:.3f} |")
    lines.append(f"| difference | {_ci(result['p_away_difference'], 3)} | 0 |")
    return lines


def _table_trip_wires(result: dict[str, Any]) -> list[str]:
    lines = [f"The ball is on the screen in {result['ball_steps']} steps. Entropy in bits (max "
             f"{result['heads'][0]['max_entropy_bits']:.2f}); lift = mass on the wire cell at crossings / at other "
             "ball steps.", "",
             "| head | wire cell (row, col), share of steps | peak entropy | ball's cell entropy (control) | crossings | "
             "lift at crossings | shifted crossings (control) | verdict |", "|---|---|---|---|---|---|---|---|"]
    for h in result["heads"]:
        null = h["shifted_lift"]
        shifted = f"{null['mean']:.2f}× [{null['low']:.2f}, {null['high']:.2f}]" if np.isfinite(null["mean"]) else "–"
        lines.append(f"| {h['head']} | ({h['wire_cell'][0]}, {h['wire_cell'][1]}), {h['wire_share']:.0%} | "
                     f"{_ci(h['peak_entropy_bits'])} | {_ci(h['ball_entropy_bits'])} | {h['crossing_steps']} | "
                     f"{_ci(h['lift'], 2, '×')} | {shifted} | {h['verdict']} |")
    return lines


def _table_novel_objects(result: dict[str, Any]) -> list[str]:
    summary = result["summary"]
    lines = [f"{summary['insertions']} insertions ({result['skipped']} skipped: the episode ended first), "
             f"windows of {summary['window']} steps. Attended: some head >= {summary['factor']:g}× chance.", "",
             "| variant | attended | median steps to attend | bouts of attention / insertion | "
             "p(towards), p(away), p(fire) in window 0 |", "|---|---|---|---|---|"]
    for v, entry in summary["variants"].items():
        react = ", ".join(f"{entry['reaction_by_window'][r][0]:.3f}" for r in ("towards", "away", "fire"))
        median = entry["median_steps_to_attend"]
        lines.append(f"| {v} | {_ci(entry['attended'])} | {'–' if median is None else f'{median:.0f}'} | "
                     f"{entry['bouts_per_insertion']:.2f} | {react} |")
    lines += ["", "Paired change novel − control per window (mean [95% t CI] over insertions):", "",
              "| comparison | reaction | " + " | ".join(f"window {k}" for k in range(summary["windows"])) + " |",
              "|---|---|" + "---|" * summary["windows"]]
    for comparison, reactions in summary["effects"].items():
        for r, rows in reactions.items():
            lines.append(f"| {comparison} | {r} | " + " | ".join(_change(c) for c in rows) + " |")
    return lines


TABLES = {1: _table_what_where, 2: _table_looks_at, 3: _table_novel_objects, 4: _table_planning, 5: _table_trip_wires}


# --- pictures --------------------------------------------------------------------------------
def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    return path


def _colour(head: int) -> np.ndarray:
    from s3ta.viz.overlay import head_colour

    return np.array(head_colour(head)) / 255.0


def _bars(ax, entries: list[dict[str, float]], x: np.ndarray, colour: Any, label: str, width: float = 0.35) -> None:
    values = np.array([e["value"] if e["value"] is not None else np.nan for e in entries], float)
    low = np.array([e["low"] if e.get("low") is not None else np.nan for e in entries], float)
    high = np.array([e["high"] if e.get("high") is not None else np.nan for e in entries], float)
    errors = np.nan_to_num(np.stack([values - low, high - values]).clip(0))
    ax.bar(x, values, width, color=colour, label=label, yerr=errors, capsize=3)


def _plot_what_where(result: dict[str, Any], path: Path) -> Path:
    figure = _figure(5.0, 3.0)
    ax = figure.add_subplot(1, 1, 1)
    x = np.arange(len(result["content_share"]))
    _bars(ax, result["content_share"], x - 0.18, "tab:red", "trained")
    _bars(ax, result["control_content_share"], x + 0.18, "lightgrey", "untrained (control)")
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xticks(x, [f"head {n}" for n in x])
    ax.set_ylabel("content share of logit variance")
    ax.set_title(f"what (1) vs where (0): {result['verdict']}", fontsize=9)
    ax.legend(fontsize=7)
    return _save(figure, path)


def _frame_with_boxes(ax, frame: np.ndarray, boxes: dict[str, Any], title: str) -> None:
    from matplotlib.patches import Rectangle

    ax.imshow(frame, interpolation="nearest")
    colours = iter(["yellow", "cyan", "lime", "magenta", "orange", "white"])
    for name, box in boxes.items():
        if box is None:
            continue
        colour = next(colours)
        x0, y0, x1, y1 = box
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=colour, lw=1.2))
        ax.text(x0, max(y0 - 2, 6), name, color=colour, fontsize=6)
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_title(title, fontsize=8)


def _plot_looks_at(result: dict[str, Any], path: Path) -> Path:
    recording, example = result["_recording"], result["_example"]
    boxes = {name: entry.get("box") for name, entry in result["targets"].items() if "box" in entry}
    boxes.update(ahead=example["ahead"], behind=example["behind"])
    figure = _figure(8.0, 3.4)
    grid = figure.add_gridspec(1, 3)
    _frame_with_boxes(figure.add_subplot(grid[0, 0]), recording.frames[example["step"]], boxes,
                      f"targets (step {example['step']})")
    ax = figure.add_subplot(grid[0, 1:])
    names = [n for n, e in result["targets"].items() if e.get("steps")]
    heads = len(result["targets"][names[0]]["lift"]) if names else 0
    width = 0.8 / max(heads, 1)
    for n in range(heads):
        _bars(ax, [result["targets"][t]["lift"][n] for t in names], np.arange(len(names)) + (n - (heads - 1) / 2) * width,
              _colour(n), f"head {n}", width)
    ax.axhline(1, color="grey", lw=0.8, ls="--")
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(names)), [n.replace("_", " ") for n in names], fontsize=7)
    ax.set_ylabel("lift (mass / area share)")
    ax.set_title(f"what the heads look at: {result['verdict']}", fontsize=9)
    ax.legend(fontsize=6, ncol=heads)
    return _save(figure, path)


def _plot_trip_wires(result: dict[str, Any], path: Path) -> Path:
    from matplotlib.patches import Rectangle

    from s3ta.analysis.geometry import cell_footprint

    recording, heads = result["_recording"], result["heads"]
    height, width = recording.arrays["obs"].shape[-2:]
    h, w = recording.arrays["attention"].shape[-2:]
    figure = _figure(8.5, 3.4)
    grid = figure.add_gridspec(1, 3)
    ax = figure.add_subplot(grid[0, 0])
    ax.imshow(recording.frames[recording.num_steps // 2], interpolation="nearest")
    for head in heads:
        x0, y0, x1, y1 = cell_footprint(*head["wire_cell"], height, width, h, w)
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=_colour(head["head"]),
                               lw=1.5))
        ax.axhline(y0 - 0.5, color=_colour(head["head"]), lw=0.5, ls=":")
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_title("each head's wire cell", fontsize=8)
    x = np.arange(len(heads))
    ax = figure.add_subplot(grid[0, 1])
    _bars(ax, [hd["peak_entropy_bits"] for hd in heads], x, [_colour(n) for n in x], "peak cell", 0.6)
    ball = heads[0]["ball_entropy_bits"]
    ax.axhspan(ball["low"], ball["high"], color="lightgrey", alpha=0.6, label="ball's cell (control)")
    ax.set_xticks(x, [f"head {n}" for n in x], fontsize=7)
    ax.set_ylabel("entropy (bits)")
    ax.legend(fontsize=6)
    ax = figure.add_subplot(grid[0, 2])
    _bars(ax, [hd["lift"] for hd in heads], x, [_colour(n) for n in x], "crossings", 0.6)
    for n, hd in enumerate(heads):
        ax.plot([n - 0.3, n + 0.3], [hd["shifted_lift"]["high"]] * 2, color="black", lw=1)
    ax.axhline(1, color="grey", lw=0.8, ls="--")
    ax.set_xticks(x, [f"head {n}" for n in x], fontsize=7)
    ax.set_ylabel("mass on wire: crossing / other")
    ax.set_title(f"trip wires: {result['verdict']} (bar: shifted 97.5%)", fontsize=8)
    return _save(figure, path)


def _plot_planning(result: dict[str, Any], path: Path) -> Path:
    figure = _figure(7.0, 3.0)
    ax = figure.add_subplot(1, 2, 1)
    missing = {"value": np.nan, "low": np.nan, "high": np.nan}
    entries = [result[k]["heads_mean_lift"] if result[k].get("steps") else missing for k in ("ahead", "behind")]
    _bars(ax, entries, np.arange(2), ["tab:green", "lightgrey"], "", 0.6)
    ax.axhline(1, color="grey", lw=0.8, ls="--")
    ax.set_xticks([0, 1], ["corridor ahead", "behind (control)"], fontsize=7)
    ax.set_ylabel("heads' mean lift")
    ax = figure.add_subplot(1, 2, 2)
    ax.bar([0, 1], [np.nan_to_num(result["p_away_ghost_in_attended"]), np.nan_to_num(result["p_away_ghost_elsewhere"])],
           0.6, color=["tab:green", "lightgrey"])
    ax.set_xticks([0, 1], ["ghost in attended\ncorridor", "ghost elsewhere\n(control)"], fontsize=7)
    ax.set_ylabel("p(move away)")
    figure.suptitle(f"planning: {result['verdict']}", fontsize=9)
    return _save(figure, path)


def _plot_novel_objects(result: dict[str, Any], path: Path) -> Path:
    summary = result["summary"]
    figure = _figure(9.0, 3.0)
    ax = figure.add_subplot(1, 4, 1)
    variants = list(summary["variants"])
    colours = {"novel": "magenta", "patch": "lightgrey", "copy": "tab:blue"}
    _bars(ax, [summary["variants"][v]["attended"] for v in variants], np.arange(len(variants)),
          [colours[v] for v in variants], "", 0.6)
    ax.set_xticks(np.arange(len(variants)), variants, fontsize=7)
    ax.set_ylabel(f"attended (>= {summary['factor']:g}x chance)")
    for i, r in enumerate(("towards", "away", "fire")):
        ax = figure.add_subplot(1, 4, i + 2)
        for v in variants:
            ax.plot(summary["variants"][v]["reaction_by_window"][r], marker="o", color=colours[v], label=v)
        ax.set_xlabel(f"window ({summary['window']} steps)")
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_title(f"p({r})", fontsize=8)
        if i == 0:
            ax.legend(fontsize=6)
    figure.suptitle(f"novel objects: {result['verdict']}", fontsize=9)
    return _save(figure, path)


PLOTS = {1: _plot_what_where, 2: _plot_looks_at, 3: _plot_novel_objects, 4: _plot_planning, 5: _plot_trip_wires}
