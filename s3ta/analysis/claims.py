"""The paper's five interpretability claims (Mott et al. 2019; issue 38), each as a number with a 95% CI
against a control: (1) what and where, (2) what heads look at, (3) novel objects, (4) planning, (5) trip
wires. The measures are pure functions of arrays (a recording's, or a live run's); ``novel_object_trials``
at the bottom plays the agent live for claim 3.

Intervals: steps of one recording are not independent, so CIs over steps come from a moving-block
bootstrap (blocks of ``block`` consecutive steps, ``draws`` resamples, percentile interval); CIs over
independent insertions (claim 3) are Student t intervals of the paired differences.
Shape letters: T steps, N heads, h x w attention map, C x H x W frame, A actions, D bootstrap draws,
S steps of one insertion.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import numpy as np

from s3ta.analysis.closed_loop import paired_change
from s3ta.analysis.geometry import box_mask, cell_bounds
from s3ta.analysis.grounding import peak_cells

Box = tuple[float, float, float, float]  # (x0, y0, x1, y1), half-open pixels


# --- intervals -------------------------------------------------------------------------------
class Estimate(NamedTuple):
    """A statistic on all the data and its 95% interval (floats, or arrays of one shape, e.g. [N])."""

    value: Any
    low: Any
    high: Any


def block_indices(num_steps: int, block: int, draws: int, seed: int = 0) -> np.ndarray:
    """int [D, T]: ``draws`` moving-block resamples of ``range(num_steps)``, each ``num_steps`` long,
    made of runs of ``block`` consecutive steps starting anywhere."""
    if num_steps < 1 or block < 1 or draws < 1:
        raise ValueError(f"need num_steps, block, draws >= 1, got {num_steps}, {block}, {draws}")
    block = min(block, num_steps)
    count = -(-num_steps // block)
    starts = np.random.default_rng(seed).integers(0, num_steps - block + 1, (draws, count))
    return (starts[..., None] + np.arange(block)).reshape(draws, -1)[:, :num_steps]


def bootstrap(statistic: Callable[[np.ndarray], Any], num_steps: int, *, block: int = 20, draws: int = 1000,
              seed: int = 0, basic: bool = False) -> Estimate:
    """``statistic(indices)`` on all steps, with the 2.5 and 97.5 percentiles of its values over
    moving-block resamples (NaN draws ignored). ``basic``: for a statistic that is biased on samples (an
    entropy: a sample sees fewer distinct cells than there are, so its entropy is low, and a resample's
    lower still), the bootstrap's bias-corrected value 2 v - mean(draws) and the basic (reverse-percentile)
    interval [2 v - q97.5, 2 v - q2.5]."""
    value = np.asarray(statistic(np.arange(num_steps)), np.float64)
    samples = np.stack([np.asarray(statistic(idx), np.float64) for idx in block_indices(num_steps, block, draws, seed)])
    with _quiet():
        low, high = np.nanpercentile(samples, [2.5, 97.5], axis=0)
        if basic:
            return Estimate(2 * value - np.nanmean(samples, 0), 2 * value - high, 2 * value - low)
    return Estimate(value, low, high)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence numpy's warnings (an "All-NaN slice", a division by zero) inside statistics that may be undefined."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def ratio_of_sums(numerator: np.ndarray, denominator: np.ndarray, **kwargs: Any) -> Estimate:
    """sum_t numerator[t] / sum_t denominator[t] ([T, ...] and [T] or [T, ...]) with a block-bootstrap CI."""
    numerator, denominator = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
    if numerator.shape[0] != denominator.shape[0] or numerator.shape[0] == 0:
        raise ValueError(f"need [T, ...] arrays with the same T >= 1, got {numerator.shape} and {denominator.shape}")
    if denominator.ndim < numerator.ndim:
        denominator = denominator.reshape(denominator.shape + (1,) * (numerator.ndim - denominator.ndim))

    def statistic(idx: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return numerator[idx].sum(0) / denominator[idx].sum(0)

    return bootstrap(statistic, len(numerator), **kwargs)


def difference_of_means(values: np.ndarray, group_a: np.ndarray, group_b: np.ndarray, **kwargs: Any) -> Estimate:
    """mean(values[group_a]) - mean(values[group_b]) over steps ([T], bool masks [T]), block-bootstrap CI."""
    values, a, b = np.asarray(values, np.float64), np.asarray(group_a, bool), np.asarray(group_b, bool)
    if not values.shape == a.shape == b.shape or values.ndim != 1:
        raise ValueError(f"need values and masks of one shape [T], got {values.shape}, {a.shape}, {b.shape}")

    def statistic(idx: np.ndarray) -> float:
        ia, ib = idx[a[idx]], idx[b[idx]]
        if len(ia) == 0 or len(ib) == 0:
            return math.nan
        return float(values[ia].mean() - values[ib].mean())

    return bootstrap(statistic, len(values), **kwargs)


def per_head(estimate: Estimate) -> list[dict[str, float]]:
    """An Estimate of [N] arrays as N {value, low, high} dicts (for JSON)."""
    return [{"value": float(v), "low": float(lo), "high": float(hi)}
            for v, lo, hi in zip(*(np.atleast_1d(x) for x in estimate))]


def as_dict(estimate: Estimate) -> dict[str, float]:
    return {"value": float(estimate.value), "low": float(estimate.low), "high": float(estimate.high)}


def cell_shares(mask: np.ndarray, h: int, w: int) -> np.ndarray:
    """float [..., h, w]: the share of each attention cell's pixels inside the bool mask [..., H, W]
    (cells as ``geometry.cell_index``). Attention mass on the mask = sum(attention * cell_shares),
    the same as ``geometry.pixel_mass`` summed over the mask, without building [N, H, W] maps."""
    mask = np.asarray(mask, np.float64)
    height, width = mask.shape[-2:]
    rows, cols = cell_bounds(height, h), cell_bounds(width, w)  # [h, 2], [w, 2]: each cell's pixel range
    inside = np.add.reduceat(np.add.reduceat(mask, rows[:, 0], axis=-2), cols[:, 0], axis=-1)
    return inside / np.outer(rows[:, 1] - rows[:, 0], cols[:, 1] - cols[:, 0])


# --- claim 1: what and where -----------------------------------------------------------------
class LogitVariance(NamedTuple):
    """Per step and head, the variance over positions of the logits l = c + s and its two parts:
    Cov(c, l) from content, Cov(s, l) from position (they add up to Var(l))."""

    content: np.ndarray  # [T, N]
    spatial: np.ndarray  # [T, N]
    total: np.ndarray  # [T, N]


def logit_variance(content_logits: np.ndarray, spatial_logits: np.ndarray) -> LogitVariance:
    """The decomposition Var(l) = Cov(c, l) + Cov(s, l) over the h * w positions of each map [T, N, h, w]."""
    content, spatial = np.asarray(content_logits, np.float64), np.asarray(spatial_logits, np.float64)
    if content.shape != spatial.shape or content.ndim != 4:
        raise ValueError(f"content and spatial logits must both be [T, N, h, w], got {content.shape} and {spatial.shape}")
    c = content.reshape(*content.shape[:2], -1)
    s = spatial.reshape(*spatial.shape[:2], -1)
    c = c - c.mean(-1, keepdims=True)
    s = s - s.mean(-1, keepdims=True)
    total = c + s
    return LogitVariance((c * total).mean(-1), (s * total).mean(-1), (total * total).mean(-1))


def content_share(content_logits: np.ndarray, spatial_logits: np.ndarray, **kwargs: Any) -> Estimate:
    """Per head [N], the share of its logits' variance over positions that comes from content,
    sum_t Cov(c, l) / sum_t Var(l) (1: "what" only, 0: "where" only; outside [0, 1] when the two parts
    cancel), with a block-bootstrap CI over steps."""
    parts = logit_variance(content_logits, spatial_logits)
    return ratio_of_sums(parts.content, parts.total, **kwargs)


def head_spread(content_logits: np.ndarray, spatial_logits: np.ndarray, **kwargs: Any) -> Estimate:
    """max - min over heads of the content share: how differently the heads split what and where."""
    parts = logit_variance(content_logits, spatial_logits)

    def statistic(idx: np.ndarray) -> float:
        with np.errstate(all="ignore"):
            share = parts.content[idx].sum(0) / parts.total[idx].sum(0)
        return float(share.max() - share.min())

    return bootstrap(statistic, len(parts.total), **kwargs)


def what_where_verdict(shares: Estimate, spread: Estimate, control_spread: Estimate) -> tuple[str, str]:
    """holds: one head's content share is above 1/2 and another's below, both CIs excluding 1/2;
    partly: not split so, but the heads' spread exceeds the control's (its CI above the control's);
    does not hold: neither."""
    low, high = np.atleast_1d(shares.low), np.atleast_1d(shares.high)
    what, where = np.flatnonzero(low > 0.5), np.flatnonzero(high < 0.5)
    if len(what) and len(where):
        return "holds", f"heads {what.tolist()} query by content, heads {where.tolist()} by position (CIs exclude 1/2)"
    if spread.low > control_spread.high:
        return "partly", "no head on each side of 1/2, but the heads differ more than the control's"
    return "does not hold", "no head on each side of 1/2, and the heads differ no more than the control's"


# --- claim 2: what heads look at --------------------------------------------------------------
def lasting_changes(obs: np.ndarray, steps: np.ndarray, lag: int, hold: int,
                    sprites: np.ndarray | None = None) -> np.ndarray:
    """bool [len(steps), H, W]: pixels of obs [T, C, H, W] that differ between step t and t + lag, had held
    their value for ``hold`` steps before t and keep the new one for ``hold`` steps after t + lag: a display
    that was redrawn (a digit), not a sprite passing over the pixel (there and gone again). ``sprites``
    [T, H, W] bool: pixels covered by an object (RAM boxes), left out when covered at any of those steps."""
    steps = np.asarray(steps, np.int64)
    before, after = obs[steps], obs[steps + lag]
    changed = (before != after).any(1)
    for k in range(1, hold + 1):
        changed &= (obs[steps - k] == before).all(1) & (obs[steps + lag + k] == after).all(1)
    if sprites is not None:
        for k in range(-hold, lag + hold + 1):
            changed &= ~sprites[steps + k]
    return changed


def _rate(obs: np.ndarray, steps: np.ndarray, lag: int, hold: int, sprites: np.ndarray | None,
          chunk: int = 128) -> np.ndarray:
    """Share of ``steps`` after which each pixel changes lastingly (in chunks, to bound memory)."""
    counts = np.zeros(obs.shape[-2:], np.int64)
    for start in range(0, len(steps), chunk):
        counts += lasting_changes(obs, steps[start:start + chunk], lag, hold, sprites).sum(0)
    return counts / len(steps)


def event_box(obs: np.ndarray, events: np.ndarray, starts: np.ndarray, *, sprites: np.ndarray | None = None,
              lag: int = 2, hold: int = 1, p_event: float = 0.5, p_other: float = 0.01,
              min_events: int = 2) -> Box | None:
    """The box of the pixels that change lastingly (``lasting_changes``) within ``lag`` steps after at least
    ``p_event`` of the events (and at least ``min_events`` of them) and after at most ``p_other`` of the steps
    with no event within ``lag``, outside the ``sprites`` [T, H, W] (the objects' pixels): obs [T, C, H, W],
    events [T] bool (step t's display is the old one, t + 1 .. t + lag may show the new), starts [T] bool (an
    episode starts at t: windows that cross a start are left out). A score's digits are redrawn after each
    reward and stay; a sprite that passes a pixel leaves it again; a brick goes after one reward, not most; a
    player that dies at the same place each time is an object. Lives drawn as icons, one removed per drop,
    change each pixel at one drop only and are not found. None: fewer than ``min_events`` events, or no
    such pixel."""
    obs, events, starts = np.asarray(obs), np.asarray(events, bool), np.asarray(starts, bool)
    total = len(obs)
    if obs.ndim != 4 or events.shape != (total,) or starts.shape != (total,):
        raise ValueError(f"need obs [T, C, H, W] and events, starts [T], got {obs.shape}, {events.shape}, {starts.shape}")
    if sprites is not None and np.shape(sprites) != (total, *obs.shape[-2:]):
        raise ValueError(f"sprites must be [T, H, W] = {(total, *obs.shape[-2:])}, got {np.shape(sprites)}")
    candidates = np.arange(hold, total - lag - hold)
    usable = np.array([t for t in candidates if not starts[t - hold + 1:t + lag + hold + 1].any()], np.int64)
    if len(usable) == 0:
        return None
    quiet = np.array([not events[max(t - lag, 0):t + lag].any() for t in usable])  # no event's redraw in the window
    hits, others = usable[events[usable]], usable[quiet]
    if len(hits) < min_events or len(others) == 0:
        return None
    rate_event, rate_other = _rate(obs, hits, lag, hold, sprites), _rate(obs, others, lag, hold, sprites)
    often = (rate_event >= p_event) & (rate_event * len(hits) >= min_events - 1e-9)
    ys, xs = np.nonzero(often & (rate_other <= p_other))
    if len(ys) == 0:
        return None
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def score_box(obs: np.ndarray, reward: np.ndarray, starts: np.ndarray, **kwargs: Any) -> Box | None:
    """Where the score is drawn: ``event_box`` of the steps with a reward (gains and losses found
    apart, their boxes joined: Pong's two scores change after rewards of opposite signs)."""
    reward = np.asarray(reward)
    boxes = [event_box(obs, sign * reward > 0, starts, **kwargs) for sign in (1, -1)]
    return union_box([b for b in boxes if b is not None])


def lives_box(obs: np.ndarray, lives: np.ndarray, starts: np.ndarray, **kwargs: Any) -> Box | None:
    """Where the lives are drawn: ``event_box`` of the steps after which the lives count lives [T] drops."""
    lives = np.asarray(lives, np.int64)
    lost = np.zeros(len(lives), bool)
    lost[:-1] = (lives[1:] < lives[:-1]) & ~np.asarray(starts, bool)[1:]
    return event_box(obs, lost, starts, **kwargs)


def union_box(boxes: Sequence[Box]) -> Box | None:
    if not boxes:
        return None
    array = np.array(boxes, np.float64)
    return float(array[:, 0].min()), float(array[:, 1].min()), float(array[:, 2].max()), float(array[:, 3].max())


def region_ahead(box: Box, heading: tuple[float, float], reach: float, margin: float, height: int,
                 width: int) -> Box | None:
    """The box ``reach`` pixels deep in front of ``box`` (x0, y0, x1, y1) along ``heading`` (dx, dy; its
    dominant axis), ``margin`` pixels wider than the box on each side, clipped to the frame; None if
    nothing of it is on the frame or the heading is zero/unknown."""
    dx, dy = heading
    if not (np.isfinite(dx) and np.isfinite(dy)) or (dx == 0 and dy == 0):
        return None
    x0, y0, x1, y1 = box
    if abs(dx) >= abs(dy):
        ahead = (x1, y0 - margin, x1 + reach, y1 + margin) if dx > 0 else (x0 - reach, y0 - margin, x0, y1 + margin)
    else:
        ahead = (x0 - margin, y1, x1 + margin, y1 + reach) if dy > 0 else (x0 - margin, y0 - reach, x1 + margin, y0)
    a0, b0 = max(ahead[0], 0.0), max(ahead[1], 0.0)
    a1, b1 = min(ahead[2], float(width)), min(ahead[3], float(height))
    return (a0, b0, a1, b1) if a1 > a0 and b1 > b0 else None


def headings_from_motion(centres: np.ndarray, starts: np.ndarray, max_jump: float = 20.0) -> np.ndarray:
    """float [T, 2]: the sign of each step's displacement (dx, dy) of an object's centre [T, 2] (NaN
    where absent) along its dominant axis, carried over steps where it stands still; NaN before its
    first move in an episode. Jumps over ``max_jump`` pixels (a respawn, a tunnel) carry the last heading."""
    centres, starts = np.asarray(centres, np.float64), np.asarray(starts, bool)
    out = np.full(centres.shape, np.nan)
    last = np.array([np.nan, np.nan])
    for t in range(len(centres)):
        if starts[t]:
            last = np.array([np.nan, np.nan])
        elif t > 0:
            move = centres[t] - centres[t - 1]
            if np.isfinite(move).all() and 0 < np.abs(move).max() <= max_jump:
                axis = 0 if abs(move[0]) >= abs(move[1]) else 1
                last = np.zeros(2)
                last[axis] = np.sign(move[axis])
        out[t] = last
    return out


def mass_on_masks(attention: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Attention mass [T, N] on per-step pixel masks [T, H, W] (or one mask [H, W] for every step), and
    the chance [T] a uniform map puts there (the mask's share of the frame)."""
    attention = np.asarray(attention, np.float64)
    masks = np.asarray(masks, bool)
    total, _, h, w = attention.shape
    if masks.ndim == 2:
        share = cell_shares(masks, h, w)
        return (attention * share).sum((-1, -2)), np.full(total, masks.mean())
    if masks.shape[0] != total:
        raise ValueError(f"need one mask per step ({total}), got {masks.shape[0]}")
    share = cell_shares(masks, h, w)  # [T, h, w]
    return (attention * share[:, None]).sum((-1, -2)), masks.mean((-1, -2))


def target_lift(attention: np.ndarray, masks: np.ndarray, **kwargs: Any) -> dict[str, Any]:
    """Each head's and the heads' mean map's lift on a target (mass / chance, pooled over the steps) with CIs.
    masks: [T, H, W], or [H, W] for a fixed target; steps whose mask is empty are left out."""
    mass, chance = mass_on_masks(attention, masks)
    keep = chance > 0
    if not keep.any():
        return {"steps": 0}
    mass, chance = mass[keep], chance[keep]
    heads = ratio_of_sums(mass, chance, **kwargs)
    mean = ratio_of_sums(mass.mean(1), chance, **kwargs)
    return {"steps": int(keep.sum()), "chance": float(chance.mean()), "mean_mass": mass.mean(0).tolist(),
            "lift": per_head(heads), "heads_mean_lift": as_dict(mean)}


def lift_difference(attention: np.ndarray, masks_a: np.ndarray, masks_b: np.ndarray, keep: np.ndarray,
                    **kwargs: Any) -> Estimate:
    """The heads' mean map's lift on masks_a [T, H, W] minus its lift on masks_b, pooled over the steps
    ``keep`` [T] (where both are non-empty), with a block-bootstrap CI (both lifts from the same resample)."""
    keep = np.asarray(keep, bool)
    if not keep.any():
        return Estimate(math.nan, math.nan, math.nan)
    attention = np.asarray(attention)[keep]
    mass_a, chance_a = mass_on_masks(attention, np.asarray(masks_a)[keep])
    mass_b, chance_b = mass_on_masks(attention, np.asarray(masks_b)[keep])
    mass_a, mass_b = mass_a.mean(1), mass_b.mean(1)

    def statistic(idx: np.ndarray) -> float:
        return float(mass_a[idx].sum() / chance_a[idx].sum() - mass_b[idx].sum() / chance_b[idx].sum())

    return bootstrap(statistic, int(keep.sum()), **kwargs)


def looks_at_verdict(lift: dict[str, Any], control: dict[str, Any] | None = None,
                     untrained: dict[str, Any] | None = None) -> tuple[str, str]:
    """holds: some head's lift CI is above 1 and above every head's lift in ``untrained`` (the same target
    under an untrained agent's maps: what the architecture alone puts there, e.g. on the frame's border),
    and, given a control region, that head's lift is above its lift there; partly: above that bar but not
    above the control region; does not hold: no head's CI above the bar. ``target_lift`` results."""
    if not lift.get("steps"):
        return "not measured", "the target is never on the screen"
    bar = max([1.0] + ([e["value"] for e in untrained["lift"]] if untrained and untrained.get("steps") else []))
    above = [n for n, e in enumerate(lift["lift"]) if e["low"] > bar]
    if not above:
        return "does not hold", f"no head's lift CI is above {bar:.2f} (chance, or the untrained agent's best head)"
    if control and control.get("steps"):
        beats = [n for n in above if lift["lift"][n]["value"] > control["lift"][n]["value"]]
        if not beats:
            return "partly", f"heads {above} are above {bar:.2f}, but no more on it than on the control region"
        return "holds", f"heads {beats} are above {bar:.2f} and above the control region"
    return "holds", f"heads {above} are above {bar:.2f} (chance, or the untrained agent's best head)"


# --- claim 5: trip wires -------------------------------------------------------------------
def cell_entropy(cells: np.ndarray, num_cells: int) -> float:
    """Entropy in bits of the distribution of integer cells [S] over ``num_cells`` (0: always one cell)."""
    counts = np.bincount(np.asarray(cells, np.int64), minlength=num_cells)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum()) + 0.0


def row_crossings(rows: np.ndarray, row: int, starts: np.ndarray) -> np.ndarray:
    """bool [T]: steps where an object (its cell row rows [T], NaN where absent) is in ``row`` or has
    crossed it since the step before (in the same episode)."""
    rows, starts = np.asarray(rows, np.float64), np.asarray(starts, bool)
    here = rows == row
    before = np.concatenate([[np.nan], rows[:-1]])
    with np.errstate(invalid="ignore"):
        crossed = ((before - row) * (rows - row) < 0) & ~starts
    return here | crossed


def wire_lift(mass: np.ndarray, crossing: np.ndarray, present: np.ndarray, **kwargs: Any) -> Estimate:
    """mean mass [T] at crossing steps / mean mass at the other steps where the object is present."""
    mass, crossing, present = (np.asarray(x) for x in (mass, crossing, present))
    a, b = crossing & present, ~crossing & present

    def statistic(idx: np.ndarray) -> float:
        ia, ib = idx[a[idx]], idx[b[idx]]
        if len(ia) == 0 or len(ib) == 0 or mass[ib].mean() == 0:
            return math.nan
        return float(mass[ia].mean() / mass[ib].mean())

    return bootstrap(statistic, len(mass), **kwargs)


def shifted_lifts(mass: np.ndarray, crossing: np.ndarray, present: np.ndarray, *, shifts: int = 200,
                  min_shift: int = 10, seed: int = 0) -> np.ndarray:
    """The control of ``wire_lift``: its value with the crossing indicator rotated by random offsets
    (at least ``min_shift`` steps) among the steps where the object is present, so that crossings keep
    their number and their runs but no longer line up with the head's mass. float [shifts]."""
    mass, crossing, present = (np.asarray(x) for x in (mass, crossing, present))
    live = np.flatnonzero(present)
    m, c = mass[live], crossing[live]
    if len(live) <= 2 * min_shift or not c.any() or c.all():
        return np.full(shifts, np.nan)
    offsets = np.random.default_rng(seed).integers(min_shift, len(live) - min_shift + 1, shifts)
    out = np.empty(shifts)
    for i, k in enumerate(offsets):
        rolled = np.roll(c, k)
        out[i] = m[rolled].mean() / m[~rolled].mean() if m[~rolled].mean() > 0 else np.nan
    return out


def trip_wires(attention: np.ndarray, ball_rows: np.ndarray, ball_cells: np.ndarray, starts: np.ndarray, *,
               block: int = 20, draws: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """Claim 5 per head, on attention [T, N, h, w] and the ball's cell row [T] and flat cell [T] (NaN /
    -1 where it is not on the screen). The head's wire is its most frequent peak cell; how fixed its peak
    is: the entropy (bits) of its peak cell over the steps, against the ball's cell's entropy (a head that
    followed the ball); its mass on the wire cell at the steps where the ball crosses the wire's row over
    the other steps with the ball on screen, against the same with the crossings shifted in time."""
    attention = np.asarray(attention, np.float64)
    total, heads, h, w = attention.shape
    ball_rows, ball_cells = np.asarray(ball_rows, np.float64), np.asarray(ball_cells, np.int64)
    present = np.isfinite(ball_rows)
    peaks = peak_cells(attention)  # [T, N]
    kw = {"block": block, "draws": draws, "seed": seed}
    ball_entropy = bootstrap(lambda idx: cell_entropy(ball_cells[idx][present[idx]], h * w) if present[idx].any()
                             else math.nan, total, basic=True, **kw)
    out = []
    for n in range(heads):
        wire = int(np.bincount(peaks[:, n], minlength=h * w).argmax())
        row, col = divmod(wire, w)
        entropy = bootstrap(lambda idx: cell_entropy(peaks[idx, n], h * w), total, basic=True, **kw)
        crossing = row_crossings(ball_rows, row, starts)
        mass = attention[:, n, row, col]
        lift = wire_lift(mass, crossing, present, **kw)
        null = shifted_lifts(mass, crossing, present, seed=seed)
        with _quiet():
            null_low, null_high = (np.nanpercentile(null, [2.5, 97.5]) if np.isfinite(null).any() else (math.nan,) * 2)
        fixed = bool(entropy.high < ball_entropy.low)
        fires = bool(lift.low > max(1.0, null_high)) if np.isfinite(lift.low) else False
        verdict = "holds" if fixed and fires else "partly" if fixed or fires else "does not hold"
        out.append({"head": n, "wire_cell": [row, col], "wire_share": float((peaks[:, n] == wire).mean()),
                    "peak_entropy_bits": as_dict(entropy), "ball_entropy_bits": as_dict(ball_entropy),
                    "max_entropy_bits": math.log2(h * w), "crossing_steps": int((crossing & present).sum()),
                    "other_ball_steps": int((~crossing & present).sum()), "lift": as_dict(lift),
                    "shifted_lift": {"mean": float(np.nanmean(null)) if np.isfinite(null).any() else math.nan,
                                     "low": float(null_low), "high": float(null_high)},
                    "fixed": fixed, "fires": fires, "verdict": verdict})
    return out


def trip_wire_verdict(heads: list[dict[str, Any]]) -> tuple[str, str]:
    """holds: some head is a trip wire (fixed and fires); partly: some head is fixed or fires; else not."""
    wires = [h["head"] for h in heads if h["verdict"] == "holds"]
    if wires:
        return "holds", f"heads {wires} watch a fixed cell and fire when the ball crosses its row"
    fixed, fires = [h["head"] for h in heads if h["fixed"]], [h["head"] for h in heads if h["fires"]]
    if fixed or fires:
        return "partly", f"fixed peaks: heads {fixed}; mass lift at crossings above the shifted control: heads {fires}"
    return "does not hold", "no head's peak is more fixed than the ball's cell, and none fires at crossings"


# --- actions: which way each one moves ------------------------------------------------------
class ActionGeometry(NamedTuple):
    directions: np.ndarray  # [A, 2] float: (dx, dy) in screen coordinates (right, down), each -1, 0 or 1
    fire: np.ndarray  # [A] bool


def action_geometry(action_names: Sequence[str]) -> ActionGeometry:
    """Movement and fire of each Atari action by its name (UP, DOWNLEFTFIRE, ...)."""
    directions = np.zeros((len(action_names), 2))
    for i, name in enumerate(action_names):
        name = name.upper()
        directions[i, 0] = ("RIGHT" in name) - ("LEFT" in name)
        directions[i, 1] = ("DOWN" in name) - ("UP" in name)
    return ActionGeometry(directions, np.array(["FIRE" in n.upper() for n in action_names]))


class Reaction(NamedTuple):
    towards: np.ndarray  # [S]: probability of an action that moves towards the target
    away: np.ndarray  # [S]: ... that moves away from it
    fire: np.ndarray  # [S]: ... that fires


def reaction(action_probs: np.ndarray, player: np.ndarray, target: np.ndarray, geometry: ActionGeometry,
             tolerance: float = 4.0) -> Reaction:
    """Per step, the policy's probability [S] of moving towards the target, away from it, and of firing:
    action_probs [S, A], player and target centres [S, 2] (NaN where unknown: then NaN). An action moves
    towards it when its direction has a positive dot product with the sign of (target - player) per axis
    (an axis within ``tolerance`` pixels counts as aligned, 0)."""
    probs = np.asarray(action_probs, np.float64)
    offset = np.asarray(target, np.float64) - np.asarray(player, np.float64)  # [S, 2]
    if probs.ndim != 2 or offset.shape != (len(probs), 2) or probs.shape[1] != len(geometry.fire):
        raise ValueError(f"need action_probs [S, A={len(geometry.fire)}] and centres [S, 2], got {probs.shape}, "
                         f"{offset.shape}")
    unknown = ~np.isfinite(offset).all(1)
    sign = np.where(np.abs(np.nan_to_num(offset)) > tolerance, np.sign(np.nan_to_num(offset)), 0.0)
    dot = sign @ geometry.directions.T  # [S, A]
    towards = (probs * (dot > 0)).sum(1)
    away = (probs * (dot < 0)).sum(1)
    fire = probs[:, geometry.fire].sum(1)
    towards[unknown], away[unknown] = np.nan, np.nan
    return Reaction(towards, away, fire)


# --- claim 3: novel objects ------------------------------------------------------------------
def first_attended(mass: np.ndarray, chance: np.ndarray, factor: float = 5.0) -> int | None:
    """The first step at which some head's mass [S, N] on the object reaches ``factor`` x its chance [S]."""
    mass, chance = np.asarray(mass, np.float64), np.asarray(chance, np.float64)
    hit = np.flatnonzero((mass >= factor * chance[:, None]).any(1) & (chance > 0))
    return int(hit[0]) if len(hit) else None


def attention_bouts(mass: np.ndarray, chance: np.ndarray, factor: float = 5.0) -> int:
    """How many separate times some head's mass [S, N] rises to ``factor`` x chance [S] (rising edges)."""
    mass, chance = np.asarray(mass, np.float64), np.asarray(chance, np.float64)
    on = ((mass >= factor * chance[:, None]).any(1) & (chance > 0)).astype(int)
    return int(on[0] + np.maximum(np.diff(on), 0).sum()) if len(on) else 0


def window_means(values: np.ndarray, window: int, windows: int) -> np.ndarray:
    """float [windows]: the mean of values [S] (NaN ignored) over consecutive windows of ``window`` steps;
    NaN where a window has no value (an episode that ended)."""
    values = np.asarray(values, np.float64)
    out = np.full(windows, np.nan)
    for k in range(windows):
        part = values[k * window:(k + 1) * window]
        if np.isfinite(part).any():
            out[k] = np.nanmean(part)
    return out


def _peak_lift(mass: np.ndarray, chance: np.ndarray) -> float:
    """The highest lift (mass / chance) any head reaches on the object [S, N] / [S] over an insertion."""
    return float(np.nanmax(np.asarray(mass) / np.maximum(np.asarray(chance), 1e-12)[:, None]))


def wilson(successes: int, trials: int) -> dict[str, float]:
    """A proportion with its 95% Wilson score interval."""
    if trials == 0:
        return {"value": math.nan, "low": math.nan, "high": math.nan}
    z, p = 1.96, successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return {"value": p, "low": centre - half, "high": centre + half}


VARIANTS = ("novel", "patch", "copy")
CONTROLS = ("patch", "copy")
REACTIONS = ("towards", "away", "fire")


def summarise_insertions(trials: list[dict[str, Any]], window: int, factor: float = 5.0) -> dict[str, Any]:
    """Claim 3 over insertions. Each trial: {variant: {"mass" [S, N], "chance" [S], "towards"/"away"/"fire"
    [S]}} for the ``VARIANTS``. Per variant: the share of insertions attended (some head >= ``factor`` x
    chance) with a Wilson CI, the median step it happens, the bouts of attention; per window of ``window``
    steps, the mean probability of each reaction, and its paired change novel - control over insertions
    (t CI). Window 0 is the first reaction; later windows say whether it repeats while the sprite stays."""
    trials = [t for t in trials if all(v in t for v in VARIANTS)]
    if not trials:
        raise ValueError("no insertion has all of the variants " + ", ".join(VARIANTS))
    steps = min(len(t[v]["chance"]) for t in trials for v in VARIANTS)
    windows = max(1, max(len(t["novel"]["chance"]) for t in trials) // window)
    out: dict[str, Any] = {"insertions": len(trials), "window": window, "windows": windows, "factor": factor,
                           "min_steps": steps, "variants": {}, "effects": {}}
    means: dict[str, dict[str, np.ndarray]] = {}
    for v in VARIANTS:
        firsts = [first_attended(t[v]["mass"], t[v]["chance"], factor) for t in trials]
        hit = [f for f in firsts if f is not None]
        means[v] = {r: np.stack([window_means(t[v][r], window, windows) for t in trials]) for r in REACTIONS}
        out["variants"][v] = {
            "attended": wilson(len(hit), len(trials)),
            "median_steps_to_attend": float(np.median(hit)) if hit else None,
            "bouts_per_insertion": float(np.mean([attention_bouts(t[v]["mass"], t[v]["chance"], factor)
                                                  for t in trials])),
            "mean_peak_lift": float(np.mean([_peak_lift(t[v]["mass"], t[v]["chance"]) for t in trials])),
            "reaction_by_window": {r: np.nanmean(means[v][r], 0).tolist() for r in REACTIONS},
        }
    for control in CONTROLS:
        for r in REACTIONS:
            rows = []
            for k in range(windows):
                a, b = means["novel"][r][:, k], means[control][r][:, k]
                keep = np.isfinite(a) & np.isfinite(b)
                rows.append(paired_change(a[keep], b[keep]) if keep.sum() >= 1 else {"mean": None, "ci95": [None, None],
                                                                                      "episodes": 0})
            out["effects"][f"novel - {control}"] = out["effects"].get(f"novel - {control}", {})
            out["effects"][f"novel - {control}"][r] = rows
    return out


def _excludes_zero(change: dict[str, Any]) -> int:
    """+1 / -1 when a paired change's CI is above / below 0, else 0."""
    low, high = change["ci95"]
    if low is None:
        return 0
    return 1 if low > 0 else -1 if high < 0 else 0


def novel_object_verdict(summary: dict[str, Any]) -> tuple[str, str]:
    """holds: the novel sprite is attended more often than the background patch (Wilson CIs apart), the
    reaction in the first window differs from both controls (some reaction's CI excludes 0 against both),
    and it differs again, the same way, in a later window; partly: some of these; does not hold: none."""
    variants = summary["variants"]
    attended = variants["novel"]["attended"]["low"] > variants["patch"]["attended"]["high"]
    reacts, repeats = [], []
    for r in REACTIONS:
        signs = [_excludes_zero(summary["effects"][f"novel - {c}"][r][0]) for c in CONTROLS]
        if signs[0] and signs[0] == signs[1]:
            reacts.append(r)
            later = [_excludes_zero(summary["effects"][f"novel - {c}"][r][k]) for c in CONTROLS
                     for k in range(1, summary["windows"])]
            if signs[0] in later:
                repeats.append(r)
    parts = [f"attended more than the patch: {'yes' if attended else 'no'}",
             f"reacts against both controls: {', '.join(reacts) or 'no'}", f"repeats: {', '.join(repeats) or 'no'}"]
    if attended and reacts and repeats:
        return "holds", "; ".join(parts)
    return ("partly" if attended or reacts else "does not hold"), "; ".join(parts)


# --- claim 4: planning (Ms. Pac-Man) ---------------------------------------------------------
DIRECTIONS = {"up": (0, -1), "down": (0, 1), "left": (-1, 0), "right": (1, 0)}


def modal_colour(obs: np.ndarray) -> np.ndarray:
    """uint8 [C]: the most common colour of obs [C, H, W] (the background)."""
    flat = np.asarray(obs, np.uint8).reshape(obs.shape[0], -1).astype(np.int64)
    packed = np.zeros(flat.shape[1], np.int64)
    for channel in flat:  # one integer per colour: a 1-D unique is much faster than unique rows
        packed = packed * 256 + channel
    values, counts = np.unique(packed, return_counts=True)
    mode = int(values[counts.argmax()])
    return np.array([(mode >> (8 * k)) & 255 for k in reversed(range(flat.shape[0]))], np.uint8)


def wall_mask(obs: np.ndarray, background: np.ndarray, clear: np.ndarray | None = None,
              rows: tuple[int, int] | None = None) -> np.ndarray:
    """bool [H, W]: pixels of obs [C, H, W] not of the background colour [C] (walls; also dots, which a
    corridor ignores: ``corridor``), with the boxes ``clear`` [K, 4] (sprites) counted as open; outside
    the maze's ``rows`` [y0, y1) everything is wall."""
    walls = (obs != np.asarray(background)[:, None, None]).any(0)
    if clear is not None and len(clear):
        walls &= ~box_mask(clear, *walls.shape)
    if rows is not None:
        walls[:rows[0]] = True
        walls[rows[1]:] = True
    return walls


def corridor(walls: np.ndarray, box: Box, direction: tuple[int, int], reach: int, blocked: float = 0.8) -> np.ndarray:
    """bool [H, W]: the strip of the box's width (or height) swept from its edge along ``direction`` (a
    unit axis vector) for up to ``reach`` pixels, stopping before the first line across it that is at
    least ``blocked`` wall (a dot or a pellet covers less; a wall the whole way)."""
    height, width = walls.shape
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, x1, y0, y1 = max(x0, 0), min(x1, width), max(y0, 0), min(y1, height)
    mask = np.zeros_like(walls)
    if x1 <= x0 or y1 <= y0:
        return mask
    dx, dy = direction
    for k in range(reach):
        if dx:
            x = x1 + k if dx > 0 else x0 - 1 - k
            if not 0 <= x < width or walls[y0:y1, x].mean() >= blocked:
                break
            mask[y0:y1, x] = True
        else:
            y = y1 + k if dy > 0 else y0 - 1 - k
            if not 0 <= y < height or walls[y, x0:x1].mean() >= blocked:
                break
            mask[y, x0:x1] = True
    return mask


def away_probability(action_probs: np.ndarray, threats: Sequence[tuple[int, int]], geometry: ActionGeometry) -> float:
    """The policy's probability of a move that heads towards none of the ``threats`` (unit directions):
    a turn or a reversal away from every ghost-filled corridor (standing still is not away)."""
    moves = np.abs(geometry.directions).sum(1) > 0
    safe = moves.copy()
    for d in threats:
        safe &= geometry.directions @ np.asarray(d, np.float64) <= 0
    return float(np.asarray(action_probs, np.float64)[safe].sum())


@dataclass(frozen=True)
class Corridors:
    """Per step, what claim 4 measures (from ``corridor_steps``)."""

    ahead: np.ndarray  # [T, H, W] bool: the corridor along the heading
    behind: np.ndarray  # [T, H, W] bool: the corridor the other way
    attended: np.ndarray  # [T] int: index into DIRECTIONS of the most attended open corridor, -1 none
    ghost_in_attended: np.ndarray  # [T] bool
    ghost_elsewhere: np.ndarray  # [T] bool: a ghost in an open corridor, none in the attended one
    away: np.ndarray  # [T] float: probability of moving away from the ghost-filled corridors (NaN: no ghost)


def corridor_steps(obs: np.ndarray, attention: np.ndarray, players: Sequence[Box | None],
                   ghosts: Sequence[np.ndarray], clear: Sequence[np.ndarray], headings: np.ndarray,
                   action_probs: np.ndarray, geometry: ActionGeometry, *, reach: int = 48,
                   rows: tuple[int, int] | None = None, background: np.ndarray | None = None) -> Corridors:
    """The corridors of each step: obs [T, C, H, W], attention [T, N, h, w], the player's box (None where
    absent), the ghosts' boxes [K, 4], the sprites' boxes to clear from the walls, headings [T, 2] (NaN
    unknown), action_probs [T, A]. The attended corridor is the open one (of the four around the player)
    on which the heads' mean map has the largest lift, if that lift is above 1."""
    total, _, height, width = obs.shape
    h, w = attention.shape[-2:]
    names = list(DIRECTIONS)
    ahead = np.zeros((total, height, width), bool)
    behind = np.zeros_like(ahead)
    attended = np.full(total, -1)
    in_attended, elsewhere = np.zeros(total, bool), np.zeros(total, bool)
    away = np.full(total, np.nan)
    mean_map = np.asarray(attention, np.float64).mean(1)  # [T, h, w]
    for t in range(total):
        if players[t] is None:
            continue
        back = modal_colour(obs[t] if rows is None else obs[t][:, rows[0]:rows[1]]) if background is None else background
        walls = wall_mask(obs[t], back, clear[t], rows)
        lanes = [corridor(walls, players[t], DIRECTIONS[d], reach) for d in names]
        heading = headings[t]
        if np.isfinite(heading).all() and np.abs(heading).sum() > 0:
            d = (int(heading[0]), int(heading[1]))
            ahead[t] = lanes[names.index(_name_of(d))]
            behind[t] = lanes[names.index(_name_of((-d[0], -d[1])))]
        lifts = [(mean_map[t] * cell_shares(lane, h, w)).sum() / lane.mean() if lane.any() else -np.inf for lane in lanes]
        best = int(np.argmax(lifts))
        if lifts[best] > 1:
            attended[t] = best
        ghost_mask = box_mask(ghosts[t], height, width) if len(ghosts[t]) else np.zeros((height, width), bool)
        filled = [k for k, lane in enumerate(lanes) if (lane & ghost_mask).any()]
        if filled:
            in_attended[t] = attended[t] in filled
            elsewhere[t] = not in_attended[t]
            away[t] = away_probability(action_probs[t], [DIRECTIONS[names[k]] for k in filled], geometry)
    return Corridors(ahead, behind, attended, in_attended, elsewhere, away)


def _name_of(direction: tuple[int, int]) -> str:
    return next(name for name, d in DIRECTIONS.items() if d == direction)


def planning_verdict(ahead_minus_behind: Estimate, away_difference: Estimate) -> tuple[str, str]:
    """holds: the heads' mean lift ahead exceeds that behind, and the ghost-in-attended-corridor steps turn away
    more than the ghost-elsewhere steps (both CIs above 0); partly: one of the two; does not hold: neither."""
    looks = bool(np.isfinite(ahead_minus_behind.low) and ahead_minus_behind.low > 0)
    avoids = bool(np.isfinite(away_difference.low) and away_difference.low > 0)
    text = f"looks ahead more than behind: {'yes' if looks else 'no'}; turns away from attended ghosts more: " \
           f"{'yes' if avoids else 'no'}"
    return ("holds" if looks and avoids else "partly" if looks or avoids else "does not hold"), text


# --- claim 3, played live ------------------------------------------------------------------
LANES = {"seaquest": (69, 93, 117, 141)}
"""Per game, the rows (top pixel) where its enemies swim: Seaquest's four lanes (``atari_objects._seaquest``)."""
ENEMY_LABELS = {"seaquest": ("shark", "enemy_submarine")}
"""Per game, the RAM labels of the objects the "copy" control copies."""
PLAYER_LABELS = {"breakout": "paddle"}
"""The RAM label of the player where it is not "player"."""


def box_centre(boxes: np.ndarray, labels: Sequence[str], label: str) -> np.ndarray:
    """(x, y) centre of the first box labelled ``label``, NaN if there is none."""
    for box, name in zip(np.asarray(boxes).reshape(-1, 4), labels):
        if name == label:
            return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    return np.array([np.nan, np.nan])


def crop_object(obs: np.ndarray, box: Box, background: np.ndarray):
    """An ``inject.Sprite`` of the pixels in ``box`` of obs [C, H, W] that are not the background colour
    (None if there are none)."""
    from s3ta.analysis.inject import Sprite

    x0, y0, x1, y1 = (int(round(v)) for v in box)
    region = obs[:, max(y0, 0):y1, max(x0, 0):x1]
    if region.size == 0:
        return None
    mask = (region != np.asarray(background)[:, None, None]).any(0)
    if not mask.any():
        return None
    return Sprite(mask, region.transpose(1, 2, 0).copy())


def patch_like(sprite, colour: np.ndarray):
    """The control of the same size and shape as ``sprite``, filled with ``colour`` (the background's)."""
    from s3ta.analysis.inject import Sprite

    return Sprite(sprite.mask.copy(), np.broadcast_to(np.asarray(colour, np.uint8), (*sprite.mask.shape, 3)).copy())


def swim_path(steps: int, sprite_width: int, lane: int, direction: int, speed: int,
              columns: tuple[int, int]) -> list[tuple[int, int]]:
    """Top-left (x, y) per step of a sprite swimming along ``lane`` from one side (``direction`` +1: from
    the left) at ``speed`` px a step, wrapping round the visible ``columns`` [x0, x1): it never leaves."""
    left, right = columns
    span = max(right - left - sprite_width, 0) + 1  # the top-left x takes ``span`` values, left .. right - width
    start = 0 if direction > 0 else span - 1
    return [(left + (start + direction * speed * k) % span, lane) for k in range(steps)]


@dataclass
class _Prefix:
    actions: list[int]
    state: Any
    prev_action: Any
    obs: np.ndarray
    copy: Any  # a Sprite cropped from the last enemy seen, or None


def _play_prefix(agent, make_env, seed: int, steps: int, game: str) -> _Prefix | None:
    import torch

    from s3ta.analysis.forward import unroll
    from s3ta.rollout import sample_actions, step_inputs

    env = make_env(seed)
    try:
        timestep = env.reset(seed=seed)
        state, prev_action = agent.initial_state(1), torch.zeros(1, dtype=torch.int64)
        generator = torch.Generator().manual_seed(seed)
        actions, copy = [], None
        for _ in range(steps):
            output, state = unroll(agent, step_inputs(timestep, prev_action), state)
            prev_action = sample_actions(output.policy_logits[0], generator)
            timestep = env.step(prev_action.numpy())
            if timestep.done[0]:
                return None
            actions.append(int(prev_action[0]))
            for box, label in zip(np.asarray(timestep.info.get("boxes", [np.zeros((0, 4))])[0]).reshape(-1, 4),
                                  timestep.info.get("box_labels", [[]])[0]):
                if label in ENEMY_LABELS.get(game, ()):
                    y0, y1 = int(box[1]), int(box[3])
                    found = crop_object(timestep.obs[0], tuple(box), modal_colour(timestep.obs[0][:, y0:y1]))
                    copy = found if found is not None else copy
        return _Prefix(actions, state, prev_action, timestep.obs.copy(), copy)
    finally:
        env.close()


def _play_variant(agent, make_env, seed: int, prefix: _Prefix, sprite, path: list[tuple[int, int]],
                  geometry: ActionGeometry, player_label: str) -> dict[str, np.ndarray]:
    import torch

    from s3ta.analysis.forward import unroll
    from s3ta.analysis.inject import paste
    from s3ta.rollout import sample_actions, step_inputs

    env = make_env(seed)
    try:
        timestep = env.reset(seed=seed)
        for action in prefix.actions:  # the same frames again (the env is deterministic for a seed)
            timestep = env.step(np.array([action]))
        if not np.array_equal(timestep.obs, prefix.obs):
            raise RuntimeError("replaying the prefix's actions did not reproduce its frames (is the env deterministic?)")
        state, prev_action = prefix.state, prefix.prev_action
        generator = torch.Generator().manual_seed(seed + 1_000_003)  # the same draws in every variant
        mass, chance, probs, player, target = [], [], [], [], []
        for x, y in path:
            obs, covered = paste(timestep.obs[0], sprite, x, y)
            output, state = unroll(agent, step_inputs(timestep._replace(obs=obs[None]), prev_action), state)
            attention = output.attention[0, 0].double().numpy()  # [N, h, w]
            mass.append((attention * cell_shares(covered, *attention.shape[-2:])).sum((-1, -2)))
            chance.append(covered.mean())
            logits = output.policy_logits[0]
            probs.append(torch.softmax(logits.double(), -1)[0].numpy())
            info = timestep.info
            boxes, labels = info.get("boxes", [np.zeros((0, 4))])[0], info.get("box_labels", [[]])[0]
            player.append(box_centre(boxes, labels, player_label))
            target.append(np.array([x + sprite.mask.shape[1] / 2, y + sprite.mask.shape[0] / 2]))
            prev_action = sample_actions(logits, generator)
            timestep = env.step(prev_action.numpy())
            if timestep.done[0]:
                break
        moves = reaction(np.array(probs), np.array(player), np.array(target), geometry)
        return {"mass": np.array(mass), "chance": np.array(chance), "towards": moves.towards, "away": moves.away,
                "fire": moves.fire}
    finally:
        env.close()


def novel_object_trials(agent, make_env: Callable[[int], Any], game: str, action_names: Sequence[str], sprite, *,
                        trials: int, duration: int, onset: tuple[int, int] = (30, 150), speed: int = 2,
                        lanes: Sequence[int] | None = None, seed: int = 0,
                        progress: bool = False) -> list[dict[str, Any]]:
    """Claim 3 live: per insertion, play the agent (actions sampled) from a seeded reset for a random
    number of steps in ``onset``, then branch three ways from that state: the ``sprite`` (novel) swims
    along a random lane from a random side for ``duration`` steps, or in its place a patch of the
    background colour of its size and shape, or a copy of an enemy the game drew during the prefix (the
    built-in shark if none). The branches see the same frames up to the insertion and share their action
    draws. ``make_env(seed)`` builds a one-env Atari env with RAM boxes (``RamAtariEnv``). Returns per
    insertion its settings and, per variant, the arrays ``summarise_insertions`` reads (or "skipped")."""
    import torch

    if trials < 1 or duration < 1:
        raise ValueError(f"trials and duration must be >= 1, got {trials} and {duration}")
    lanes = tuple(lanes or LANES.get(game, ()))
    if not lanes:
        raise ValueError(f"no enemy lanes known for {game!r} (known: {', '.join(LANES)}); give them")
    agent.eval()
    geometry = action_geometry(action_names)
    rng = np.random.default_rng(seed)
    jobs = range(trials)
    if progress:
        from tqdm import tqdm

        jobs = tqdm(jobs, desc="insertions", unit="insertion")
    out = []
    for i in jobs:
        settings = {"trial": i, "seed": seed + i, "onset": int(rng.integers(onset[0], onset[1] + 1)),
                    "lane": int(rng.choice(lanes)), "direction": int(rng.choice([-1, 1]))}
        with torch.no_grad():
            out.append(_insertion(agent, make_env, game, sprite, geometry, settings, duration, speed))
    return out


def _insertion(agent, make_env, game: str, sprite, geometry: ActionGeometry, settings: dict[str, int],
               duration: int, speed: int) -> dict[str, Any]:
    """One insertion of ``novel_object_trials``: its prefix, then the three branches."""
    from s3ta.analysis.atari_objects import VISIBLE_COLUMNS
    from s3ta.analysis.inject import Sprite

    seed, lane = settings["seed"], settings["lane"]
    prefix = _play_prefix(agent, make_env, seed, settings["onset"], game)
    if prefix is None:
        return {**settings, "skipped": "the episode ended before the insertion"}
    frame = prefix.obs[0]
    columns = VISIBLE_COLUMNS.get(game, (0, frame.shape[-1]))
    background = modal_colour(frame[:, lane:lane + sprite.mask.shape[0]])
    copy = prefix.copy if prefix.copy is not None else Sprite.load("shark")
    variants = {"novel": sprite, "patch": patch_like(sprite, background), "copy": copy}
    record: dict[str, Any] = {**settings, "copy_source": "game" if prefix.copy is not None else "built-in shark"}
    for name, shown in variants.items():
        path = swim_path(duration, shown.mask.shape[1], lane, settings["direction"], speed, columns)
        record[name] = _play_variant(agent, make_env, seed, prefix, shown, path, geometry,
                                     PLAYER_LABELS.get(game, "player"))
    return record
