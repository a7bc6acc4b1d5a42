"""`s3ta explain audit`: one table per agent of whether its attention explains it (spec section 7):
record on a fixed seed, then grounding, insertion/deletion, the sanity check and closed-loop
interventions, written as ``audit.json`` (sections grounding, faithfulness, sanity, closed_loop) and
``audit.md`` (the tables, with the command that made them). Sample sizes are ``AuditSizes``.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np


@dataclass(frozen=True)
class AuditSizes:
    """How much of each analysis the audit runs (defaults sized for a built-in task on 2 CPU cores)."""

    episodes: int = 10
    """Episodes recorded (greedy, on the fixed seed); grounding uses every recorded step."""
    states: int = 40
    """Recorded steps sampled (evenly over the episodes) for insertion/deletion."""
    random_draws: int = 5
    """Random rankings per state (the chance level)."""
    substrates: tuple[str, ...] = ("blur", "mean")
    """Substrates of insertion/deletion: "blur" (sigma 5 px) and/or "mean" (the frame's mean colour)."""
    sanity_states: int = 10
    """Recorded steps for the sanity check."""
    saliency_stride: int = 5
    """Pixels between Greydanus perturbations (faithfulness and sanity)."""
    closed_loop_episodes: int = 200
    """Live episodes per closed-loop intervention (and for the clean agent), same seeds for all."""
    max_steps: int | None = None
    """Cap on agent steps per recorded or live episode (None: play to the end)."""

    def __post_init__(self):
        for name in ("episodes", "states", "random_draws", "sanity_states", "saliency_stride", "closed_loop_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


# Atari episodes are thousands of steps and frames 210x160: smaller samples, episodes capped at 1000
# agent steps. Tens of minutes on 2 CPU cores (docs/interpretability.md has a measured audit).
ATARI_SIZES = AuditSizes(episodes=1, states=20, random_draws=3, sanity_states=4, saliency_stride=8,
                         closed_loop_episodes=3, max_steps=1000)


def env_factory(env_id: str, protocol: str) -> tuple[Callable[[int, int], Any], bool]:
    """make(num_envs, seed) for the env, and whether it runs many episodes in one batched env
    (built-in tasks) or one env per episode (Atari with RAM ground truth)."""
    from s3ta import envs

    if env_id in envs.BUILTIN_TASKS:
        return (lambda n, seed: envs.make(env_id, n, seed=seed)), True
    from s3ta.analysis.atari_objects import RamAtariEnv
    from s3ta.envs.atari import game_from_id

    game = game_from_id(env_id)
    if game is None:
        return (lambda n, seed: envs.make(env_id, n, seed=seed, protocol=protocol)), False
    return (lambda n, seed: RamAtariEnv(game, seed=seed, protocol=protocol)), False


OUTPUTS = ("audit.json", "audit.md", "faithfulness.png", "sanity.png")


def run_audit(checkpoint: str, out: str | Path, *, seed: int = 0, sizes: AuditSizes | None = None,
              command: str | None = None, replace: bool = False, progress: bool = False) -> dict[str, Any]:
    """Audit the agent of ``checkpoint`` (a checkpoint file, run directory or ``zoo:NAME``) into ``out``
    (``out/recording`` and the ``OUTPUTS``; earlier ones are replaced only with ``replace``)."""
    from s3ta import agents
    from s3ta.analysis import closed_loop, faithfulness, grounding, sanity
    from s3ta.analysis.common import select_steps, write_json
    from s3ta.analysis.recording import check_save_target, record
    from s3ta.checkpoints import load_agent
    from s3ta.outputs import refuse_to_replace

    out = Path(out)
    started = time.monotonic()
    agent, ckpt = load_agent(checkpoint)
    refuse_to_replace(out, OUTPUTS, "an audit", replace)  # before the work: a refusal costs nothing
    check_save_target(out / "recording", replace)
    env_id = ckpt.config.get("env")
    if not env_id:
        raise ValueError(f"checkpoint {ckpt.path} names no env")
    protocol = ckpt.config.get("protocol", "paper")
    make_env, batched = env_factory(env_id, protocol)
    if sizes is None:
        sizes = AuditSizes() if batched else ATARI_SIZES
    timings: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        begin = time.monotonic()
        value = fn()
        timings[name] = round(time.monotonic() - begin, 1)
        return value

    env = make_env(1, seed)
    cap = None if sizes.max_steps is None else sizes.max_steps * sizes.episodes
    recording = timed("record", lambda: record(agent, env, sizes.episodes, seed=seed, greedy=True, max_steps=cap,
                                               source={"checkpoint": str(ckpt.path), "env": env_id, "protocol": protocol}))
    env.close()
    recording.save(out / "recording", replace=replace)
    is_attention = agents.is_attention_agent(agent)
    report: dict[str, Any] = {
        "agent": agent.name, "checkpoint": str(ckpt.path), "checkpoint_arg": str(checkpoint), "env": env_id,
        "protocol": protocol, "frames": ckpt.counters.get("frames"), "seed": seed, "sizes": asdict(sizes),
        "command": command, "recording": str(out / "recording"),
        "recorded_episodes": recording.meta["episodes"],
    }
    if is_attention and recording.has_boxes:
        report["grounding"] = timed("grounding", lambda: grounding.grounding(recording))
        report["grounding"].pop("per_step", None)
    else:
        report["grounding"] = None
    steps = select_steps(recording, None, sizes.states)
    report["faithfulness"] = timed("faithfulness", lambda: faithfulness.faithfulness(
        agent, recording, steps, substrates=sizes.substrates, random_draws=sizes.random_draws,
        saliency_stride=sizes.saliency_stride, seed=seed, progress=progress))
    report["sanity"] = timed("sanity", lambda: sanity.sanity(
        agent, recording, select_steps(recording, None, sizes.sanity_states), saliency_stride=sizes.saliency_stride,
        seed=seed, progress=progress))
    heads = agent.config.num_heads if is_attention else 0
    has_boxes = recording.has_boxes
    interventions = closed_loop.default_interventions(heads, erase_objects=has_boxes)
    report["closed_loop"] = timed("closed_loop", lambda: closed_loop.closed_loop(
        agent, make_env, sizes.closed_loop_episodes, interventions, seed=seed, greedy=True,
        parallel=batched, max_steps=sizes.max_steps, progress=progress))
    timings["total"] = round(time.monotonic() - started, 1)
    report["timings_s"] = timings
    paths = [write_json(report, out / "audit.json")]
    (out / "audit.md").write_text(markdown(report))
    paths.append(out / "audit.md")
    from s3ta.viz.plots import plot_faithfulness, plot_sanity

    paths += [plot_faithfulness(report["faithfulness"], out / "faithfulness.png"),
              plot_sanity(report["sanity"], out / "sanity.png")]
    report["_paths"] = paths
    return report


# --- the markdown tables: each says what it measures and ends with a verdict ---------------------------
# The verdicts' thresholds, written into the verdict lines so that a reader can disagree with them.
ON_OBJECTS, OFF_OBJECTS = 1.5, 1 / 1.5  # a head's lift at or above: on objects; below: away from them
TIE = 0.01  # AUCs of every map within this of each other: the substrate does not move the policy
SE_MARGIN = 2.0  # a map differs from random when its mean AUC is more than this many standard errors away
SANITY_PASS = 0.5  # Spearman below this once layers are randomised: the map depends on the weights


def _f(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _pm(stats: dict[str, float]) -> str:
    se = stats.get("se")
    return _f(stats["mean"]) + ("" if se is None or not np.isfinite(se) else f" ± {se:.3f}")


def _names(items: list[str]) -> str:
    return ", ".join(items) if items else "none"


def _span(values: list[float], unit: str = "") -> str:
    low, high = min(values), max(values)
    return f"{low:.2f}{unit}" if np.isclose(low, high, atol=0.005) else f"{low:.2f}–{high:.2f}{unit}"


def grounding_table(grounding: dict[str, Any] | None) -> list[str]:
    if not grounding:
        return ["No ground-truth boxes or no attention: grounding is not measured."]
    classes = grounding["classes"]
    lines = ["What it measures: *mass on objects* is the share of a head's attention on the ground-truth object "
             "boxes, averaged over the recorded steps; *chance* is the boxes' share of the frame, what a uniform "
             "map would put there; *lift* = mass / chance (1× = chance, above 1× the head looks at objects more "
             "than at the background), also per class. *Peak on object (chance)*: the share of steps whose "
             "most-attended cell overlaps an object, and in brackets the share of the map's cells that do (where a "
             "peak at a random cell would land).", "",
             "| head | mass on objects | chance | lift | " + " | ".join(f"{c} lift" for c in classes)
             + " | peak on object (chance) |",
             "|---|---|---|---|" + "---|" * len(classes) + "---|"]
    for head in grounding["heads"]:
        lifts = " | ".join(_f(head["classes"][c]["lift"], 2) + "×" for c in classes)
        lines.append(f"| {head['head']} | {_f(head['mass_on_objects'], 4)} | {_f(head['chance'], 4)} | "
                     f"{_f(head['lift'], 2)}× | {lifts} | {_f(head['peak_on_object_rate'], 3)} "
                     f"({_f(head['peak_chance'], 3)}) |")
    lines.append(f"\n{grounding['steps_with_boxes']} recorded steps with boxes.")
    lines += ["", grounding_verdict(grounding)]
    return lines


def grounding_verdict(grounding: dict[str, Any]) -> str:
    """Which heads look at the objects, by their lift (thresholds ``ON_OBJECTS`` and ``OFF_OBJECTS``)."""
    groups: dict[str, list[dict[str, Any]]] = {"on": [], "chance": [], "off": []}
    for head in grounding["heads"]:
        lift = head["lift"]
        if lift is not None:
            groups["on" if lift >= ON_OBJECTS else "off" if lift < OFF_OBJECTS else "chance"].append(head)

    def heads(group: list[dict[str, Any]]) -> str:
        if not group:
            return "none"
        return f"{_names([str(h['head']) for h in group])} ({_span([h['lift'] for h in group], '×')})"

    peaked = [str(h["head"]) for h in grounding["heads"] if h["peak_on_object_rate"] > h["peak_chance"]]
    return (f"**Verdict:** heads on the objects (lift ≥ {ON_OBJECTS:g}×): {heads(groups['on'])}; at chance: "
            f"{heads(groups['chance'])}; away from them (lift < {OFF_OBJECTS:.2g}×): {heads(groups['off'])}. "
            f"Heads whose peak lands on an object more often than a random cell's would: {_names(peaked)}.")


def faithfulness_table(result: dict[str, Any]) -> list[str]:
    lines = ["What it measures: *deletion* removes the frame's pixels in a map's order, most-attended first, "
             "replacing them with the substrate, and follows p(a*), the probability of the action the agent took; "
             "a map that found what the policy uses makes it fall fast (low AUC). *Insertion* puts the pixels back "
             "into a frame made only of substrate in the same order (high AUC is better). *random* ranks pixels at "
             "random: the chance level every map is compared with. The KL AUCs follow KL(π_clean ‖ π) instead "
             "of p(a*)."]
    for kind, maps in result["summary"].items():
        lines += [f"\n*{kind} substrate* (p(a*) AUC: deletion lower = better, insertion higher = better; "
                  "mean ± s.e. over states; KL AUC: mean KL(π_clean ‖ π_k))\n",
                  "| map | deletion AUC | insertion AUC | deletion KL AUC | insertion KL AUC |",
                  "|---|---|---|---|---|"]
        for name, entry in maps.items():
            label = f"random ({entry['draws']} draws)" if name == "random" else name
            lines.append(f"| {label} | {_pm(entry['deletion']['auc'])} | {_pm(entry['insertion']['auc'])} | "
                         f"{_f(entry['deletion']['kl_auc']['mean'])} | {_f(entry['insertion']['kl_auc']['mean'])} |")
        lines += ["", faithfulness_verdict(kind, maps)]
    clean = [p for p in result["clean_p"] if p is not None]
    if clean:
        lines.append(f"\nClean p(a*) at these states: mean {np.mean(clean):.3f}; {len(result['steps'])} states.")
    return lines


def faithfulness_verdict(kind: str, maps: dict[str, Any]) -> str:
    """Whether the table can tell the maps apart at all (``TIE``), and which maps beat random by more than
    ``SE_MARGIN`` standard errors."""
    aucs = [entry[mode]["auc"]["mean"] for entry in maps.values() for mode in ("deletion", "insertion")]
    by_mode = {mode: [entry[mode]["auc"]["mean"] for entry in maps.values()] for mode in ("deletion", "insertion")}
    if all(max(values) - min(values) < TIE for values in by_mode.values()):
        return (f"**Verdict:** every map gives the same AUCs ({min(aucs):.3f} to {max(aucs):.3f}, each curve's "
                f"within {TIE:g}), random included: "
                f"deleting or inserting pixels in the {kind} substrate barely moves the policy, so this table "
                "cannot tell the maps apart or from random, and shows nothing about them.")
    if "random" not in maps:
        return "**Verdict:** no random ranking to compare with."
    chance = maps["random"]
    found: dict[str, list[str]] = {"better": [], "worse": []}
    for name, entry in maps.items():
        if name == "random":
            continue
        for mode, sign in (("deletion", -1.0), ("insertion", 1.0)):  # deletion: lower is better
            a, b = entry[mode]["auc"], chance[mode]["auc"]
            se = float(np.hypot(a.get("se") or 0.0, b.get("se") or 0.0))
            if not np.isfinite(se):
                continue
            gap = sign * (a["mean"] - b["mean"])
            if abs(gap) > SE_MARGIN * se:
                found["better" if gap > 0 else "worse"].append(f"{name} ({mode})")
    if not found["better"] and not found["worse"]:
        return (f"**Verdict:** no map differs from random by more than {SE_MARGIN:g} standard errors on either "
                f"curve: with these states the {kind} substrate does not show that any map finds what the "
                "policy uses.")
    return (f"**Verdict:** better than random by more than {SE_MARGIN:g} standard errors: "
            f"{_names(found['better'])}; worse than random: {_names(found['worse'])}; the rest are within "
            "the noise of random.")


def sanity_table(result: dict[str, Any]) -> list[str]:
    maps = result["maps"]
    lines = ["What it measures: each row re-initialises the agent's layers at random from the top down to the "
             "named one (cumulatively) and gives the Spearman rank correlation of each map with the trained "
             "agent's. A map that explains what the agent learned changes when its weights do (the correlation "
             "falls towards 0); one that stays near 1 is set by the input alone, not by the agent, and fails the "
             "check.", "",
             "| randomised down to | " + " | ".join(maps) + " |", "|---|" + "---|" * len(maps)]
    for row in result["stages"]:
        lines.append(f"| {row['randomised_down_to']} | " + " | ".join(_f(row["spearman"][m], 2) for m in maps) + " |")
    lines.append(f"\nSpearman rank correlation with the trained agent's map, mean over {len(result['steps'])} states.")
    lines += ["", sanity_verdict(result)]
    return lines


def sanity_verdict(result: dict[str, Any]) -> str:
    """Which maps pass (Spearman below ``SANITY_PASS`` once layers are randomised) and which fail."""
    passed, failed = [], []
    for name in result["maps"]:
        stage = next((row["randomised_down_to"] for row in result["stages"][1:]
                      if row["spearman"][name] is not None and row["spearman"][name] < SANITY_PASS), None)
        if stage is not None:
            passed.append(f"{name} (from {stage})")
        elif result["stages"]:
            last = result["stages"][-1]["spearman"][name]
            failed.append(f"{name} ({_f(last, 2)} with every layer random)")
    return (f"**Verdict:** pass (Spearman below {SANITY_PASS:g} once the layers are randomised down to the stage "
            f"named): {_names(passed)}. Fail (the map stays like the trained one whatever the weights): "
            f"{_names(failed)}.")


def closed_loop_table(result: dict[str, Any]) -> list[str]:
    lines = ["What it measures: each row plays the same live episodes as the clean agent (same env and action "
             "seeds) with the intervention at every step; *change* is its mean return minus the clean agent's, "
             "with a paired 95% t-interval over episodes. An interval that excludes 0 means the intervention "
             "changes how the agent plays. *erase-random* erases as many objects chosen at random: the control "
             "for *erase*, which erases the objects under the heads' peaks.", "",
             f"Clean agent: mean return {result['clean']['mean_return']:.3f} over {result['episodes']} episodes "
             f"(seed {result['seed']}, greedy).\n",
             "| intervention | mean return | change | 95% CI |", "|---|---|---|---|"]
    for row in result["interventions"]:
        low, high = row["change"]["ci95"]
        ci = "–" if low is None else f"[{low:+.3f}, {high:+.3f}]"
        erased = row.get("objects_erased_per_episode")
        extra = "" if erased is None else f" ({erased:.1f} objects erased / episode)"
        lines.append(f"| {row['name']}{extra} | {row['mean_return']:.3f} | {row['change']['mean']:+.3f} | {ci} |")
    lines += ["", closed_loop_verdict(result)]
    return lines


def closed_loop_verdict(result: dict[str, Any]) -> str:
    """The interventions whose 95% CI excludes 0, and whether erasing what the heads attend costs more
    than erasing as many random objects."""
    hurt, helped = [], []
    for row in result["interventions"]:
        low, high = row["change"]["ci95"]
        if low is None:
            continue
        if high < 0:
            hurt.append(f"{row['name']} ({row['change']['mean']:+.3f})")
        elif low > 0:
            helped.append(f"{row['name']} ({row['change']['mean']:+.3f})")
    verdict = (f"**Verdict:** lower the return (95% CI below 0): {_names(hurt)}; raise it: {_names(helped)}; "
               "every other row is within the noise of the clean agent.")
    changes = {row["name"]: row["change"]["mean"] for row in result["interventions"]}
    pairs = [(name[len("erase "):], changes[name], changes[f"erase-random {name[len('erase '):]}"])
             for name in changes if name.startswith("erase ") and f"erase-random {name[len('erase '):]}" in changes]
    if pairs:
        more = [f"{target} ({own:+.3f} vs {control:+.3f})" for target, own, control in pairs if own < control]
        rest = [target for target, own, control in pairs if own >= control]
        verdict += (" Erasing the objects the heads attend to costs more than erasing as many random objects "
                    f"(comparing the means) for: {_names(more)}; not for: {_names(rest)}.")
    return verdict


def markdown(report: dict[str, Any]) -> str:
    sizes = report["sizes"]
    lines = [f"# Audit of `{report['agent']}` on `{report['env']}`", "",
             f"Checkpoint `{report['checkpoint']}` ({report['frames']:,} frames), seed {report['seed']}, "
             f"protocol {report['protocol']}." if report.get("frames") is not None else
             f"Checkpoint `{report['checkpoint']}`, seed {report['seed']}.", "",
             "Four tests of whether the agent's attention explains what it does: does it fall on the objects "
             "(grounding), does it rank the pixels the policy uses first (faithfulness), does it depend on what "
             "the agent learned (sanity), and does the agent play differently when it is changed (closed loop). "
             "Each section says what it measures and ends with a verdict.", ""]
    if report.get("command"):
        lines += ["```", report["command"], "```", ""]
    timings = report["timings_s"]
    lines += [f"Sizes: {sizes['episodes']} recorded episodes, {sizes['states']} states × {sizes['random_draws']} random "
              f"draws for insertion/deletion, {sizes['sanity_states']} states for sanity, "
              f"{sizes['closed_loop_episodes']} live episodes per closed-loop intervention. "
              f"Time: {timings['total']:.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items() if k != "total")
              + ").", "",
              "## Grounding (attention mass on object boxes / the boxes' share of the frame)", ""]
    lines += grounding_table(report["grounding"])
    lines += ["", "## Faithfulness: insertion and deletion (Petsiuk et al. 2018; Huber et al. 2021)", ""]
    lines += faithfulness_table(report["faithfulness"])
    lines += ["", "## Sanity: model randomisation (Adebayo et al. 2018)", ""]
    lines += sanity_table(report["sanity"])
    lines += ["", "## Closed loop: live episodes with an intervention at every step", ""]
    lines += closed_loop_table(report["closed_loop"])
    return "\n".join(lines) + "\n"


def command_line(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def load_report(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
