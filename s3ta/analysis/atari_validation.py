"""Checks the Atari RAM decoders (``atari_objects``) against the screen itself: for each box decoded from
an emulator frame's RAM (and the RAM of the frame before: some objects are drawn as the RAM held them
then), the pixels of its sprite are found by colour in the RGB frame of the same emulator frame, and the
box they span is compared with the decoded box (IoU). Per game and class: the share of decoded
objects whose box matches the pixel-derived box at IoU >= 0.5, over frames of random play.

The sprite of a decoded box [x0, x1) x [y0, y1) is found in a window around it (the box grown by
``margin`` px). For each colour in the box, its regions (8-connected) that touch the box and stay
inside the window are candidate sprite pixels: background, water bands, walls and the maze run on
beyond the window's sides (those that are not the screen's edges), a sprite displaced by less than
``margin`` px does not, even beside or between walls of its own colour. Rows or columns of a colour
spanning the whole window are dropped first (a band or wall a sprite touches is not part of it), and
so are the columns where the game shows no sprite (``atari_objects.VISIBLE_COLUMNS``: Breakout's side
walls, partly the ball's colour). The sprite is the colour with the most candidate pixels in the box;
no candidate (the box is on background) counts as IoU 0.

Objects the game does not draw on every frame (``Box.drawn``) are counted apart, never dropped:
- drawn False (the RAM says this frame is an off phase, e.g. Ms. Pac-Man's blinking power pills, or
  the Seaquest submarine replaced by its explosion): ``not_drawn``, or ``not_drawn_seen`` when a
  sprite matching the box is drawn there anyway (another sprite, such as the explosion, or a decoder
  hiding what is drawn: the count shows which);
- drawn None (multiplexed by a schedule the RAM snapshot does not hold, e.g. Ms. Pac-Man's ghosts):
  ``flicker_off`` when its box holds no pixel of a sprite colour (one covering < ``BACKGROUND_SHARE``
  of the frame outside the objects' boxes) and none lies within 8 px of it outside the boxes of other
  objects, or when the sprite found for it matches the box of another object of its class better than
  its own; otherwise checked like any object, so a box a few pixels off its sprite is a miss.
Objects whose box touches the box of an object of another class with the same main sprite colour are
``merged``: colour cannot tell their pixels apart (Seaquest's missile leaving the submarine, Breakout's
ball on the paddle).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two half-open boxes (x0, y0, x1, y1)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _components(mask: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """bool mask of the 8-connected components of ``mask`` that contain a pixel of ``seeds``."""
    out = mask & seeds
    while True:  # grow by one pixel (8-neighbours) within the mask until nothing changes
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        rows = grown.copy()
        grown[:, 1:] |= rows[:, :-1]
        grown[:, :-1] |= rows[:, 1:]
        grown &= mask
        if np.array_equal(grown, out):
            return out
        out = grown


def pixel_box(frame: np.ndarray, box: np.ndarray, margin: int = 8,
              visible: tuple[int, int] | None = None) -> np.ndarray | None:
    """The box (x0, y0, x1, y1) spanned by the sprite pixels of the decoded ``box`` in ``frame``
    [H, W, 3] uint8 (module docstring), or None when the box holds no sprite colour. ``visible``: the
    columns [x0, x1) where the game can show a sprite (``atari_objects.VISIBLE_COLUMNS``); pixels outside
    them (Breakout's side walls) are no sprite's, even of a sprite's colour."""
    height, width = frame.shape[:2]
    x0, y0, x1, y1 = (int(np.floor(box[0])), int(np.floor(box[1])), int(np.ceil(box[2])), int(np.ceil(box[3])))
    wx0, wy0, wx1, wy1 = max(x0 - margin, 0), max(y0 - margin, 0), min(x1 + margin, width), min(y1 + margin, height)
    codes = _codes(frame[wy0:wy1, wx0:wx1])
    if visible is not None:
        columns = np.arange(wx0, wx1)
        codes[:, (columns < visible[0]) | (columns >= visible[1])] = _HIDDEN
    inside = np.zeros(codes.shape, bool)
    inside[max(y0 - wy0, 0):y1 - wy0, max(x0 - wx0, 0):x1 - wx0] = True
    # the window's sides that are not the screen's edges: a region of one colour that reaches them runs
    # on beyond the window (background, water bands, walls, the maze), a sprite displaced by less than
    # ``margin`` px does not
    beyond = np.zeros(codes.shape, bool)
    beyond[:, 0] |= wx0 > 0
    beyond[:, -1] |= wx1 < width
    beyond[0, :] |= wy0 > 0
    beyond[-1, :] |= wy1 < height
    sprite, most = None, 0
    for colour in np.unique(codes[inside]):
        if colour == _HIDDEN:
            continue
        same = codes == colour
        same[same.all(1)] = False  # a row or column of that colour across the whole window is a band or
        same[:, same.all(0)] = False  # a wall the sprite touches, not part of it
        islands = _components(same, inside)  # the regions of that colour in the box...
        if (islands & beyond).any():  # ...less those that run on beyond the window
            islands &= ~_components(islands, beyond)
        count = int((islands & inside).sum())
        if count > most:  # the sprite's colour: the most pixels of the box in regions that stay in the window
            sprite, most = islands, count
    if sprite is None:
        return None
    ys, xs = np.nonzero(sprite)
    return np.array([xs.min() + wx0, ys.min() + wy0, xs.max() + 1 + wx0, ys.max() + 1 + wy0], np.float64)


_HIDDEN = -1
"""The colour code ``pixel_box`` gives pixels where no sprite can show (no RGB colour has it)."""


BACKGROUND_SHARE = 0.02
"""Colours covering at least this share of a frame (outside the decoded objects' boxes) are background (sprites
cover < 0.3% in every game checked)."""


def sprite_colours(frame: np.ndarray, boxes: np.ndarray | None = None) -> np.ndarray:
    """The colour codes of ``frame`` [H, W, 3] uint8 that cover less than ``BACKGROUND_SHARE`` of it outside
    ``boxes`` [K, 4] (x0, y0, x1, y1: the decoded objects), so that an object class's own pixels do not make
    its colour background (Breakout's top row of bricks has the ball's and the paddle's red, 2.6% of the frame)."""
    codes = _codes(frame)
    outside = np.ones(codes.shape, bool)
    for x0, y0, x1, y1 in np.zeros((0, 4), int) if boxes is None else np.asarray(boxes).astype(int):
        outside[y0:y1, x0:x1] = False
    values, counts = np.unique(codes[outside], return_counts=True)
    return np.setdiff1d(codes, values[counts >= BACKGROUND_SHARE * codes.size])


def _crop(frame: np.ndarray, box: np.ndarray, margin: int) -> np.ndarray:
    height, width = frame.shape[:2]
    x0, y0 = max(int(np.floor(box[0])) - margin, 0), max(int(np.floor(box[1])) - margin, 0)
    x1, y1 = min(int(np.ceil(box[2])) + margin, width), min(int(np.ceil(box[3])) + margin, height)
    return frame[y0:y1, x0:x1]


def _codes(frame: np.ndarray) -> np.ndarray:
    rgb = frame.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]  # one int per colour


def _main_sprite_colour(codes_in_box: np.ndarray, sprite: np.ndarray) -> int | None:
    values, counts = np.unique(codes_in_box[np.isin(codes_in_box, sprite)], return_counts=True)
    return int(values[counts.argmax()]) if len(values) else None


def check_frame(game: str, screen: np.ndarray, ram: np.ndarray, threshold: float = 0.5,
                ram_before: np.ndarray | None = None) -> list[tuple[str, str, float]]:
    """(label, outcome, IoU) for every object decoded from ``ram`` (and ``ram_before``, the RAM one frame
    earlier: ``decode_objects``), checked against ``screen`` [210, 160, 3] (module docstring); outcome is
    "checked" (the IoU counts), "merged", "not_drawn", "not_drawn_seen" or "flicker_off"."""
    from s3ta.analysis.atari_objects import VISIBLE_COLUMNS, decode_objects

    objects = decode_objects(game, ram, ram_before=ram_before)
    boxes = np.array([[o.x, o.y, o.x + o.w, o.y + o.h] for o in objects]).reshape(-1, 4)
    codes, sprite = _codes(screen), sprite_colours(screen, boxes)
    colours = [_main_sprite_colour(_crop(codes, box, 0), sprite) for box in boxes]
    founds = [pixel_box(screen, box, visible=VISIBLE_COLUMNS.get(game)) for box in boxes]
    claimed = np.zeros(codes.shape, bool)  # pixels inside the box of an object that may be drawn
    for obj, (x0, y0, x1, y1) in zip(objects, boxes.astype(int)):
        if obj.drawn is not False:
            claimed[y0:y1, x0:x1] = True
    out = []
    for k, (obj, box, found) in enumerate(zip(objects, boxes, founds)):
        overlap = 0.0 if found is None else iou(box, found)
        if obj.drawn is None and _drawn_elsewhere(box, found, overlap, k, objects, boxes, codes, sprite, claimed):
            out.append((obj.label, "flicker_off", overlap))
        elif obj.drawn is False:  # something drawn there anyway: another sprite (an explosion) or a decoder error
            out.append((obj.label, "not_drawn_seen" if overlap >= threshold else "not_drawn", overlap))
        elif colours[k] is not None and any(
                other.label != obj.label and colours[j] == colours[k] and _touch(box, boxes[j])
                for j, other in enumerate(objects)):
            out.append((obj.label, "merged", overlap))  # touches another class's sprite of its colour
        else:
            out.append((obj.label, "checked", overlap))
    return out


def _drawn_elsewhere(box: np.ndarray, found: np.ndarray | None, overlap: float, k: int, objects: list,
                     boxes: np.ndarray, codes: np.ndarray, sprite: np.ndarray, claimed: np.ndarray) -> bool:
    """Whether multiplexed object k is not drawn on this frame: no sprite-colour pixel in its box and none
    within 8 px of it outside the boxes of other objects, or the sprite found for it matching the box of
    another object of its class better than its own."""
    if not np.isin(_crop(codes, box, 0), sprite).any():
        claimed_by_others = claimed.copy()
        x0, y0, x1, y1 = box.astype(int)
        claimed_by_others[y0:y1, x0:x1] = False
        near = np.isin(_crop(codes, box, 8), sprite) & ~_crop(claimed_by_others, box, 8)
        return not near.any()
    return found is not None and any(other.label == objects[k].label and iou(boxes[j], found) > overlap
                                     for j, other in enumerate(objects))


def _touch(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether half-open boxes a and b (x0, y0, x1, y1) overlap or have adjacent pixels."""
    return bool(a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3])


def validate_game(game: str, frames: int = 300, seed: int = 0, frame_skip: int = 4, warmup: int = 0,
                  threshold: float = 0.5) -> dict[str, Any]:
    """Play ``frames`` agent steps of uniformly random actions (``frame_skip`` emulator frames each)
    and compare every box decoded from the RAM of the last emulator frame and of the frame before with
    its pixel-derived box on the last frame's screen. Per class:
    ``objects`` checked, their ``match_rate`` (IoU >= ``threshold``) and ``mean_iou``, and the counts
    not checked: ``not_drawn``, ``not_drawn_seen``, ``flicker_off`` and ``merged`` (module docstring)."""
    from ale_py import ALEInterface, LoggerMode, roms

    ALEInterface.setLoggerMode(LoggerMode.Error)
    ale = ALEInterface()
    ale.setInt("random_seed", seed)
    ale.setFloat("repeat_action_probability", 0.0)
    ale.loadROM(roms.get_rom_path(game))
    actions = ale.getMinimalActionSet()
    rng = np.random.default_rng(seed)
    ious: dict[str, list[float]] = {}
    left_out: dict[str, dict[str, int]] = {}
    for step in range(warmup + frames):
        action = actions[int(rng.integers(len(actions)))]
        for _ in range(frame_skip):
            ram_before = ale.getRAM().copy()
            ale.act(action)
        if ale.game_over():
            ale.reset_game()
            continue
        if step < warmup:
            continue
        for label, outcome, overlap in check_frame(game, ale.getScreenRGB(), ale.getRAM(), threshold, ram_before):
            counts = left_out.setdefault(label, {"merged": 0, "not_drawn": 0, "not_drawn_seen": 0, "flicker_off": 0})
            if outcome == "checked":
                ious.setdefault(label, []).append(overlap)
            else:
                counts[outcome] += 1
    classes = {}
    for label in sorted(left_out):
        v = np.asarray(ious.get(label, []))
        classes[label] = {"objects": len(v), "match_rate": float(np.mean(v >= threshold)) if len(v) else 0.0,
                          "mean_iou": float(np.mean(v)) if len(v) else 0.0, **left_out[label]}
    return {"game": game, "frames": frames, "seed": seed, "threshold": threshold, "classes": classes}
