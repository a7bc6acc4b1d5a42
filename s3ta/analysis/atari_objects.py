"""Ground-truth object boxes for Atari games, read from the emulator's 128-byte RAM, and a one-env
Atari environment that exposes the RAM (ale-py's vector env does not).

RAM addresses and pixel offsets follow OCAtari's "revised" RAM extraction (Delfosse et al. 2023,
"OCAtari: Object-Centric Atari 2600 Reinforcement Learning Environments", github.com/k4ntz/OC_Atari,
files ``ocatari/ram/{breakout,pong,seaquest,spaceinvaders,mspacman,enduro}.py``), corrected where the
screen disagreed; Alien's were derived here by experiment (OCAtari's Alien table describes another
game). OCAtari itself is not a dependency: it pins numpy < 2 and pulls in pygame, OpenCV, scikit-learn
and pandas. Boxes are in pixels of the raw 210 x 160 screen, half-open (x0, y0, x1, y1) like the
built-in tasks' boxes; HUD elements (score, lives) are left out. Each object says whether the game
draws it on the frame (``Box.drawn``): Atari games blink and multiplex sprites across frames. Each
decoder is checked frame by frame against the sprites on the screen by ``atari_validation``
(per-class match rates in docs/interpretability.md); that check found, among others, the Seaquest
sharks' bob (RAM 93), the 8 blanked columns on its left, the blink phases of Ms. Pac-Man's power
pills and of the Space Invaders cannon, Breakout's walls hiding its ball, and that Alien's player, the Space
Invaders shields and Ms. Pac-Man's player, ghosts and fruit are drawn as the RAM held them a frame before
(decoders get that RAM too: ``DECODERS``).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np

from s3ta.envs._common import EpisodeTracker, check_actions
from s3ta.envs.base import TimeStep


class Box(NamedTuple):
    """One decoded object: its label, its top-left corner and size in screen pixels, and whether the
    game draws it on the frame whose RAM it was decoded from."""

    label: str
    x: float
    y: float
    w: float
    h: float
    drawn: bool | None = True
    """True: drawn on this frame. False: in play but not drawn on this frame (a blink or flicker phase
    the RAM holds). None: multiplexed with others by a schedule the RAM snapshot does not hold, so
    it may or may not be drawn on this frame (the validator decides from the screen)."""


def _box(label: str, x: float, y: float, w: float, h: float, drawn: bool | None = True) -> Box:
    return Box(label, float(x), float(y), float(w), float(h), drawn)


def _breakout(ram: np.ndarray, ram_before: np.ndarray) -> list[Box]:
    boxes = [_box("paddle", int(ram[72]) - 47, 189, 16, 4)]
    if ram[101] != 0:
        # Nothing is drawn below row 195, and on row 195 the ball shows only left of about column 52 (the last line
        # of the kernel ends part way: drawn at x <= 46, not at x >= 58, measured on screen); the side walls hide
        # it too (``VISIBLE_COLUMNS``). Once it is below the paddle, little or nothing of it is left.
        x, y = int(ram[99]) - 49, int(ram[101]) + 9
        bottom = 196 if x < 52 else 195
        boxes.append(_box("ball", x, y, 2, min(4, bottom - y)))
    # Bricks: RAM 0..35 is a 6 x 6 bitmap (per 6-byte column group) of 6 rows x 18 bricks.
    bits = _breakout_bricks(ram)
    for row in range(6):
        col = 0
        while col < 18:
            if bits[row, col]:
                start = col
                while col < 18 and bits[row, col]:
                    col += 1
                boxes.append(_box("bricks", 8 + 8 * start, 57 + 6 * row, 8 * (col - start), 6))
            else:
                col += 1
    return boxes


def _breakout_bricks(ram: np.ndarray) -> np.ndarray:
    """bool [6 rows (top first), 18 columns (left first)] of bricks still standing."""
    array = np.asarray(ram[:36], np.int64).reshape(-1, 6)  # [6 column groups, 6 rows]
    rows = []
    for row_bytes in array.T:
        text = ""
        for j, byte in enumerate(row_bytes):
            if j == 0:
                text = format(int(byte), "06b")[::-2] + text
            elif j == 5:
                text = format(int(byte), "08b")[1::-2] + text
            else:
                text = format(int(byte), "08b")[::-2] + text
        rows.append([int(c) for c in text])
    bits = np.array(rows[::-1], bool)  # the bitmap is built bottom row first
    order = [0, 4, 3, 2, 1, 5, 6, 7, 8, 11, 12, 16, 15, 14, 13, 17, 18, 19]
    return bits[:, order]


def _pong(ram: np.ndarray, ram_before: np.ndarray) -> list[Box]:
    boxes = []
    if ram[54] != 0:
        boxes.append(_box("ball", int(ram[49]) - 49, int(ram[54]) - 14, 2, 4))
    enemy = int(ram[50])
    if enemy > 18:
        if enemy - 15 < 34:
            boxes.append(_box("enemy", 16, 34, 4, enemy - 33))
        elif enemy > 194:
            boxes.append(_box("enemy", 16, enemy - 15, 4, 209 - enemy))
        else:
            boxes.append(_box("enemy", 16, enemy - 15, 4, 15))
    player = int(ram[51])
    if player < 47:
        boxes.append(_box("player", 140, 34, 4, player - 33))
    elif player > 192:
        boxes.append(_box("player", 140, player - 13, 4, 207 - player))
    else:
        boxes.append(_box("player", 140, player - 13, 4, 15))
    return [b for b in boxes if b[3] > 0 and b[4] > 0]


# The diver's sprite (8 x 10, facing right) drawn at x < 8 shows only its columns 8 - x .. 7, right of the
# blank bar; these are the rows they cover (over its animation frames, measured on screen), by x.
_DIVER_ROWS_FROM_X = {1: (4, 5), 2: (1, 5), 3: (1, 5), 4: (0, 6), 5: (0, 7), 6: (0, 10), 7: (0, 10)}


def _seaquest(ram: np.ndarray, ram_before: np.ndarray) -> list[Box]:
    ram = np.asarray(ram, np.int64)
    y0, y1 = ram[97] + 33, ram[97] + 44
    if ram[97] <= 14:  # at the surface (13) and just under it, rows >= 53 are not drawn
        y1 = 53
    elif 20 <= ram[97] <= 23:  # and a few px lower, rows < 57
        y0 = 57
    # RAM 24 points at the player's graphics: 164, 178, 192 the submarine; while it dies, 130 and 141
    # (its explosion), then 153 (its debris, then nothing)
    boxes = [_box("player", ram[70], y0, 16, y1 - y0, drawn=bool(ram[24] >= 164))]
    submarine = [3 < ram[89 + i] % 8 < 7 for i in range(4)]
    bob = ram[93] - 4  # sharks swim up and down together: -4..3 px around their lane (checked on screen)
    for i in range(4):  # 4 lanes; up to 3 enemies each at x, x + 16, x + 32
        variation, x, y = ram[36 + i], ram[30 + i], 141 - 24 * i
        label, size = ("enemy_submarine", (8, 11)) if submarine[i] else ("shark", (8, 7))
        if label == "shark":
            y += bob
        if variation >= 4 and x < 160:
            boxes.append(_box(label, x, y, *size))
        if variation % 2 == 1 and (x + 32) % 256 < 160:
            boxes.append(_box(label, (x + 32) % 256, y, *size))
        if variation in (2, 3, 6, 7) and (x + 16) % 256 < 160:
            boxes.append(_box(label, (x + 16) % 256, y, *size))
    if ram[60] >= 2 and ram[118] < 160:
        boxes.append(_box("enemy_submarine", ram[118], 45, 8, 11))
    for i in range(4):  # divers and enemy missiles share a RAM byte per lane
        x = ram[71 + i]
        if 0 < x < 160:
            if submarine[i]:
                boxes.append(_box("enemy_missile", x + 3, 145 - 24 * i, 6, 4))
            elif x < 8:  # partly under the blank bar on the left: only its right columns show
                top, bottom = _DIVER_ROWS_FROM_X[int(x)]
                boxes.append(_box("diver", x, 141 - 24 * i + top, 8, bottom - top))
            else:
                boxes.append(_box("diver", x, 141 - 24 * i, 8, 10))
    if 0 < ram[103] < 160:  # like the submarine's, its rows 53..56 (near the surface) are not drawn
        boxes.append(_box("player_missile", ram[103], ram[97] + 40, 8, 1, drawn=bool(ram[97] + 40 > 56)))
    return boxes


def _space_invaders(ram: np.ndarray, ram_before: np.ndarray) -> list[Box]:
    ram = np.asarray(ram, np.int64)
    # after each (re)spawn (RAM 42 bit 0) the cannon blinks: drawn while bit 3 of the timer RAM 74 is set
    boxes = [_box("player", ram[28] - 1, 185, 7, 10, drawn=not ram[42] & 1 or bool(ram[74] & 8))]
    rows = ram[18:24]  # alive aliens: one byte per formation row, one bit per column
    if rows.max() > 0:
        empty = 6 - int(rows.max()).bit_length()  # empty columns on one side shift the formation
        x, y = ram[26], ram[16]
        for r in range(6):
            bits = format(int(rows[r]), "06b")[empty:] + "0" * empty
            for c in range(6):
                if bits[c] == "1":  # OCAtari: bitmap (r, c) is drawn at row 5 - r, column 5 - c
                    boxes.append(_box("alien", x - 1 + (5 - c - empty) * 16, 31 + 2 * y + 18 * (5 - r), 8, 10))
    # Shields: RAM 43..69 is their bitmap, 9 bytes a shield (top row first, each 2 px tall), a bit a column (the
    # most significant on the left); shots and aliens erode it. The screen draws it as the RAM held it a frame
    # before (equal, pixel for pixel, over 3 x 3000 steps of random play). Box: the pixels left.
    bitmap = np.unpackbits(np.asarray(ram_before[43:70], np.uint8)).reshape(3, 9, 8)  # [shield, row, column]
    for i in range(3):
        lines, columns = np.nonzero(bitmap[i])
        if len(lines):  # dropped once nothing is left
            x0, y0 = 42 + 32 * i + columns.min(), 157 + 2 * lines.min()
            boxes.append(_box("shield", x0, y0, 43 + 32 * i + columns.max() - x0, 159 + 2 * lines.max() - y0))
    return boxes


def _ms_pacman(ram: np.ndarray, ram_before: np.ndarray) -> list[Box]:
    ram, ram_before = np.asarray(ram, np.int64), np.asarray(ram_before, np.int64)
    # The screen draws the player, the ghosts and the fruit where the RAM put them a frame before, 8 x 10 px
    xs, ys = ram_before[6:12], ram_before[12:18]  # ghosts 0..3, the player, the fruit
    fruit = xs[5] > 0 and ys[5] > 0
    # the player and the fruit take turns on one sprite when their rows are less than about 20 apart (one of
    # them drawn a frame, measured on screen), by a schedule this RAM snapshot does not hold
    turns = fruit and abs(ys[4] - ys[5]) < 20
    boxes = [_box("player", xs[4] - 12, ys[4] + 1, 8, 10, drawn=None if turns else True)]
    for i in range(4):  # the game flickers ghosts that share rows, by a schedule this RAM snapshot does not hold
        boxes.append(_box("ghost", xs[i] - 12, ys[i] + 1, 8, 10, drawn=None))
    if fruit:
        boxes.append(_box("fruit", xs[5] - 12, ys[5] + 1, 8, 10, drawn=None if turns else True))
    left_pair = bool(ram[30] & 8)  # RAM 30 counts frames: the pills on the left blink on for 8, then the right
    for bit, (x, y) in ((4, (148, 146)), (8, (148, 14)), (16, (8, 147)), (32, (8, 15))):
        if ram[117] & bit:  # not yet eaten
            boxes.append(_box("power_pill", x, y, 4, 7, drawn=(x < 80) == left_pair))
    return boxes


def _enduro(ram: np.ndarray, ram_before: np.ndarray) -> list[Box]:
    # The player's car only (OCAtari decodes no other car); its row is fixed on screen.
    return [_box("player", int(-0.566 * int(ram[54]) + 146), 144, 16, 10)]


# Alien's player's sprite by the pointer to its graphics (RAM 38): the columns (from x) and rows (from y) it
# fills, facing either way, measured on screen over random play. 95, 103, 139: running (the four phases of
# its animation show 95, 103, 139, 103); 51..72 and 1..19: its other animations (11 rows and less).
_ALIEN_PLAYER_SPRITES = {95: (0, 8, 13), 103: (2, 6, 13), 139: (3, 5, 13), 51: (0, 8, 11), 58: (1, 7, 11),
                         65: (2, 6, 11), 72: (3, 5, 11), 1: (0, 8, 11), 8: (1, 7, 9), 14: (2, 6, 7), 19: (2, 6, 5)}


def _alien(ram: np.ndarray, ram_before: np.ndarray) -> list[Box]:
    # Derived by experiment (OCAtari's Alien table describes another game): four sprite slots, x in RAM
    # 50..53 and y in RAM 43..46 (0: empty), matched to the sprites found by colour on the screen over
    # random play. Slots 0 and 1 are aliens, slot 2 the player, slot 3 its flame while it fires and the
    # pulsar at the top of the maze (y byte 90) otherwise. The aliens share one hardware sprite and the
    # player and flame/pulsar the other: two slots on one sprite less than 24 rows apart take turns, by
    # bit 0 of RAM 2 (the frame counter) for the aliens and of RAM 24 for the player and its flame; the
    # player and the pulsar, less than 22 rows apart, by bit 0 of RAM 2 (even: the player). The screen draws
    # the player as the RAM held it a frame before (its position and graphics pointer), the other sprites as
    # the RAM holds them now.
    ram, ram_before = np.asarray(ram, np.int64), np.asarray(ram_before, np.int64)
    y = [196 - 2 * ram[43 + k] + (k >= 2) for k in range(4)]  # top rows; the player's sprites sit 1 row lower
    player_y = 197 - 2 * ram_before[45]  # as drawn
    aliens_turn = ram[43] and ram[44] and abs(y[0] - y[1]) < 24
    flame_turn = ram[46] not in (0, 90) and abs(y[2] - y[3]) < 24
    pulsar_turn = ram[46] == 90 and abs(player_y - y[3]) < 22
    boxes = []
    for k in range(2):
        if ram[43 + k]:
            drawn = not aliens_turn or bool(ram[2] & 1) == (k == 1)
            boxes.append(_box("alien", ram[50 + k] + 17, y[k], 8, 13, drawn=drawn))
    left, right, height = _ALIEN_PLAYER_SPRITES.get(int(ram_before[38]), (0, 8, 13))
    boxes.append(_box("player", ram_before[52] + 17 + left, player_y, right - left, height,
                      drawn=(not flame_turn or bool(ram[24] & 1)) and (not pulsar_turn or not ram[2] & 1)))
    if ram[46] == 90:
        boxes.append(_box("pulsar", ram[53] + 17, y[3], 8, 5, drawn=not pulsar_turn or bool(ram[2] & 1)))
    elif ram[46]:
        boxes.append(_box("flame", ram[53] + 17, y[3], 8, 5, drawn=not flame_turn or not ram[24] & 1))
    return boxes


DECODERS: dict[str, Callable[[np.ndarray, np.ndarray], list[Box]]] = {
    "breakout": _breakout,
    "pong": _pong,
    "seaquest": _seaquest,
    "space_invaders": _space_invaders,
    "ms_pacman": _ms_pacman,
    "enduro": _enduro,
    "alien": _alien,
}
"""Per game, ``decoder(ram, ram_before)``: the objects on the screen of the frame after which the RAM is ``ram``
(uint8 [128]); ``ram_before`` is the RAM one frame earlier, for objects the game draws as the RAM held them then."""


VISIBLE_COLUMNS = {"seaquest": (8, 160), "breakout": (8, 152)}
"""Per game, the columns [x0, x1) where objects can show: Seaquest blanks 8 on the left of every line (the
Atari's HMOVE bar); Breakout's side walls hide the ball (at x 7 only its column 8 shows, at x 151 its column
151; at x 6 or 152 none, measured on screen). Boxes are clipped to them; the validator searches no sprite pixel
outside them."""


def decode_objects(game: str, ram: np.ndarray, height: int = 210, width: int = 160,
                   ram_before: np.ndarray | None = None) -> list[Box]:
    """Every object on the screen of the frame after which the RAM is ``ram`` (uint8 [128]), drawn on it or
    not (``Box.drawn``), clipped to the visible screen (empty ones dropped). ``ram_before`` is the RAM one
    frame earlier: some objects are drawn as the RAM held them then (Alien's player, the Space Invaders
    shields, Ms. Pac-Man's player, ghosts and fruit); without it they are decoded from ``ram``, a frame ahead
    of the screen."""
    if game not in DECODERS:
        raise ValueError(f"no RAM object table for {game!r}; games with one: {', '.join(DECODERS)}")
    ram = np.asarray(ram)
    ram_before = ram if ram_before is None else np.asarray(ram_before)
    if ram.shape != (128,) or ram_before.shape != (128,):
        raise ValueError(f"expected RAM of shape (128,), got {ram.shape} and ram_before {ram_before.shape}")
    out = []
    left, right = VISIBLE_COLUMNS.get(game, (0, width))
    for label, x, y, w, h, drawn in DECODERS[game](ram, ram_before):
        x0, y0, x1, y1 = max(x, float(left)), max(y, 0.0), min(x + w, float(min(right, width))), min(y + h, height)
        if x1 > x0 and y1 > y0:
            out.append(Box(label, x0, y0, x1 - x0, y1 - y0, drawn))
    return out


def objects_from_ram(game: str, ram: np.ndarray, height: int = 210, width: int = 160,
                     previous_ram: np.ndarray | None = None,
                     earlier_ram: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
    """Boxes float32 [K, 4] (x0, y0, x1, y1, clipped to the visible screen, empty ones dropped) and labels
    of the objects that may be on this frame: those the RAM says are not drawn now are left out. With
    ``previous_ram`` (the frame before, for an observation that is the max of the two), this frame is
    decoded with it as its ``ram_before`` (``decode_objects``), and an object not drawn now but drawn then
    keeps its box from then, when both frames decode the same objects; ``earlier_ram`` (the frame before
    that) is the previous frame's ``ram_before``."""
    objects = decode_objects(game, ram, height, width, ram_before=previous_ram)
    if previous_ram is not None:
        before = decode_objects(game, previous_ram, height, width, ram_before=earlier_ram)
        if [b.label for b in before] == [o.label for o in objects]:
            objects = [b if o.drawn is False and b.drawn is not False else o for o, b in zip(objects, before)]
    kept = [b for b in objects if b.drawn is not False]
    boxes = [(b.x, b.y, b.x + b.w, b.y + b.h) for b in kept]
    return np.array(boxes, np.float32).reshape(-1, 4), [b.label for b in kept]


class RamAtariEnv:
    """One Atari game through a plain ``ale_py.ALEInterface``, with the settings of
    ``s3ta.envs.atari.PROTOCOLS[protocol]`` (frame skip 4 with a max over the last two frames,
    full action set, 108k-frame cap, no-op starts or sticky actions), plus ``info["ram"]`` and,
    for games in ``DECODERS``, ``info["boxes"]`` / ``info["box_labels"]`` (lists over the batch of 1): the
    objects drawn on either of the two frames whose maximum is the observation, each decoded with the RAM of
    the frame before it (``objects_from_ram``; it keeps the RAM of the last three frames).

    Without no-ops its frames and rewards equal ``AtariEnv``'s for the same actions (tested);
    its no-op draws come from its own generator.
    """

    num_envs = 1

    def __init__(self, game: str, seed: int | None = None, protocol: str = "paper"):
        from ale_py import ALEInterface, LoggerMode, roms

        from s3ta.envs.atari import FRAMESKIP, PROTOCOLS

        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; choose one of {tuple(PROTOCOLS)}")
        settings = PROTOCOLS[protocol]
        self.game, self.protocol = game, protocol
        self.frames_per_step = FRAMESKIP
        self.noop_max = int(settings["noop_max"])
        ALEInterface.setLoggerMode(LoggerMode.Error)
        self._ale = ALEInterface()
        self._ale.setFloat("repeat_action_probability", float(settings["repeat_action_probability"]))
        self._ale.setInt("max_num_frames_per_episode", int(settings["max_num_frames_per_episode"]))
        self._ale.setInt("frame_skip", 1)
        self._ale.setInt("random_seed", 0 if seed is None else int(seed) % (2**31))
        self._ale.loadROM(roms.get_rom_path(game))
        self._actions = self._ale.getLegalActionSet()
        self.action_names = tuple(a.name for a in self._actions)
        self.num_actions = len(self._actions)
        self.observation_shape = (3, 210, 160)
        self._rng = np.random.default_rng(seed)
        self._episodes = EpisodeTracker(1)

    def _reset_game(self) -> None:
        self._ale.reset_game()
        for _ in range(int(self._rng.integers(1, self.noop_max + 1)) if self.noop_max else 0):  # 1..noop_max
            self._ale.act(self._actions[0])
            if self._ale.game_over():
                self._ale.reset_game()

    def reset(self, seed: int | None = None) -> TimeStep:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._reset_game()
        screen = self._ale.getScreenRGB()
        return self._episodes.first(self._obs(screen), self._info(np.zeros(1, bool)))

    def step(self, actions: np.ndarray) -> TimeStep:
        action = self._actions[int(check_actions(actions, 1, self.num_actions)[0])]
        reward, screens, rams = 0.0, [], []
        for k in range(self.frames_per_step):
            reward += self._ale.act(action)
            if k >= self.frames_per_step - 2:
                screens.append(self._ale.getScreenRGB())
            if self.frames_per_step - 3 <= k < self.frames_per_step - 1:  # the RAM of the two frames before the last
                rams.append(self._ale.getRAM().copy())
        screen = np.maximum(screens[0], screens[1])
        truncated = bool(self._ale.game_truncated())
        done = bool(self._ale.game_over())  # includes truncation
        if done:
            self._reset_game()
            screen = self._ale.getScreenRGB()
        earlier_ram, previous_ram = (None, None) if done else rams  # after a reset the screen is the new game's
        info = self._info(np.array([truncated]), previous_ram, earlier_ram)
        return self._episodes.step(self._obs(screen), np.array([reward], np.float32), np.array([done]), info)

    def close(self) -> None:
        pass

    @staticmethod
    def _obs(screen: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(screen.transpose(2, 0, 1))[None]  # [1, 3, 210, 160]

    def _info(self, truncated: np.ndarray, previous_ram: np.ndarray | None = None,
              earlier_ram: np.ndarray | None = None) -> dict[str, Any]:
        ram = self._ale.getRAM().copy()
        info: dict[str, Any] = {"ram": ram[None], "truncated": truncated, "lives": np.array([self._ale.lives()])}
        if self.game in DECODERS:
            boxes, labels = objects_from_ram(self.game, ram, previous_ram=previous_ram, earlier_ram=earlier_ram)
            info["boxes"], info["box_labels"] = [boxes], [labels]
        return info


Boxes = list[list[tuple[np.ndarray, list[str]]]]
"""Per episode and step: (boxes float32 [K, 4], labels), as ``RamAtariEnv`` reports them."""


def random_play(game: str, episodes: int, steps: int, seed: int) -> tuple[np.ndarray, Boxes]:
    """``episodes`` stretches of ``steps`` uniformly random actions, one ``RamAtariEnv`` each (seeds seed,
    seed + 1, ...; episodes that end are continued by the env's reset): the observations uint8
    [steps, episodes, 3, 210, 160] and each step's RAM-decoded boxes (empty for games without a decoder)."""
    obs, boxes = [], []
    for episode in range(episodes):
        env = RamAtariEnv(game, seed=seed + episode)
        timestep = env.reset(seed=seed + episode)
        rng = np.random.default_rng(seed + episode)
        frames, episode_boxes = [], []
        for _ in range(steps):
            frames.append(timestep.obs[0].copy())
            info = timestep.info
            episode_boxes.append((info["boxes"][0], list(info["box_labels"][0])) if game in DECODERS
                                 else (np.zeros((0, 4), np.float32), []))
            timestep = env.step(rng.integers(0, env.num_actions, 1))
        obs.append(np.stack(frames))
        boxes.append(episode_boxes)
    return np.stack(obs, axis=1), boxes
