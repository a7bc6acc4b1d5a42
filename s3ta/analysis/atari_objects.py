"""Ground-truth object boxes for Atari games, read from the emulator's 128-byte RAM, and a one-env
Atari environment that exposes the RAM (ale-py's vector env does not).

RAM addresses and pixel offsets follow OCAtari's "revised" RAM extraction (Delfosse et al. 2023,
"OCAtari: Object-Centric Atari 2600 Reinforcement Learning Environments", github.com/k4ntz/OC_Atari,
files ``ocatari/ram/{breakout,pong,seaquest,spaceinvaders,mspacman,enduro}.py``). OCAtari itself is
not a dependency: it pins numpy < 2 and pulls in pygame, OpenCV, scikit-learn and pandas. Boxes are in
pixels of the raw 210 x 160 screen, half-open (x0, y0, x1, y1) like the built-in tasks' boxes;
HUD elements (score, lives) are left out. Each decoder is checked frame by frame against the
sprites on the screen by ``atari_validation`` (per-class match rates in docs/interpretability.md);
that check found the Seaquest sharks' bob (RAM 93) and the 8 blanked columns on its left.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from s3ta.envs._common import EpisodeTracker, check_actions
from s3ta.envs.base import TimeStep

Box = tuple[str, float, float, float, float]  # label, x, y, width, height


def _box(label: str, x: float, y: float, w: float, h: float) -> Box:
    return label, float(x), float(y), float(w), float(h)


def _breakout(ram: np.ndarray) -> list[Box]:
    boxes = [_box("paddle", int(ram[72]) - 47, 189, 16, 4)]
    if ram[101] != 0 and int(ram[101]) + 9 <= 196:
        boxes.append(_box("ball", int(ram[99]) - 49, int(ram[101]) + 9, 2, 4))
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


def _pong(ram: np.ndarray) -> list[Box]:
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


def _seaquest(ram: np.ndarray) -> list[Box]:
    ram = np.asarray(ram, np.int64)
    boxes = [_box("player", ram[70], ram[97] + 32, 16, 11)]
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
            else:
                boxes.append(_box("diver", x, 141 - 24 * i, 8, 11))
    if 0 < ram[103] < 160:
        boxes.append(_box("player_missile", ram[103], ram[97] + 40, 8, 1))
    return boxes


def _space_invaders(ram: np.ndarray) -> list[Box]:
    ram = np.asarray(ram, np.int64)
    boxes = [_box("player", ram[28] - 1, 185, 7, 10)]
    rows = ram[18:24]  # alive aliens: one byte per formation row, one bit per column
    if rows.max() > 0:
        empty = 6 - int(rows.max()).bit_length()  # empty columns on one side shift the formation
        x, y = ram[26], ram[16]
        for r in range(6):
            bits = format(int(rows[r]), "06b")[empty:] + "0" * empty
            for c in range(6):
                if bits[c] == "1":  # OCAtari: bitmap (r, c) is drawn at row 5 - r, column 5 - c
                    boxes.append(_box("alien", x - 1 + (5 - c - empty) * 16, 31 + 2 * y + 18 * (5 - r), 8, 10))
    for i in range(3):  # shields, while the aliens are above them
        boxes.append(_box("shield", 42 + 32 * i, 157, 8, 18))
    return boxes


def _ms_pacman(ram: np.ndarray) -> list[Box]:
    ram = np.asarray(ram, np.int64)
    boxes = [_box("player", ram[10] - 13, ram[16] + 1, 9, 10)]
    for i in range(4):
        boxes.append(_box("ghost", ram[6 + i] - 13, ram[12 + i] + 1, 9, 10))
    if ram[11] > 0 and ram[17] > 0:
        boxes.append(_box("fruit", ram[11] - 13, ram[17] + 1, 9, 10))
    for bit, (x, y) in ((4, (148, 146)), (8, (148, 14)), (16, (8, 147)), (32, (8, 15))):
        if ram[117] & bit:
            boxes.append(_box("power_pill", x, y, 4, 7))
    return boxes


def _enduro(ram: np.ndarray) -> list[Box]:
    # The player's car only (OCAtari decodes no other car); its row is fixed on screen.
    return [_box("player", int(-0.566 * int(ram[54]) + 146), 144, 16, 10)]


DECODERS: dict[str, Callable[[np.ndarray], list[Box]]] = {
    "breakout": _breakout,
    "pong": _pong,
    "seaquest": _seaquest,
    "space_invaders": _space_invaders,
    "ms_pacman": _ms_pacman,
    "enduro": _enduro,
}


# Columns each game blanks on the left of every line (the Atari's HMOVE bar): objects there are hidden.
HIDDEN_LEFT = {"seaquest": 8}


def objects_from_ram(game: str, ram: np.ndarray, height: int = 210, width: int = 160) -> tuple[np.ndarray, list[str]]:
    """Boxes float32 [K, 4] (x0, y0, x1, y1, clipped to the visible screen, empty ones dropped) and labels."""
    if game not in DECODERS:
        raise ValueError(f"no RAM object table for {game!r}; games with one: {', '.join(DECODERS)}")
    boxes, labels = [], []
    left = float(HIDDEN_LEFT.get(game, 0))
    for label, x, y, w, h in DECODERS[game](np.asarray(ram)):
        x0, y0, x1, y1 = max(x, left), max(y, 0.0), min(x + w, width), min(y + h, height)
        if x1 > x0 and y1 > y0:
            boxes.append((x0, y0, x1, y1))
            labels.append(label)
    return np.array(boxes, np.float32).reshape(-1, 4), labels


class RamAtariEnv:
    """One Atari game through a plain ``ale_py.ALEInterface``, with the settings of
    ``s3ta.envs.atari.PROTOCOLS[protocol]`` (frame skip 4 with a max over the last two frames,
    full action set, 108k-frame cap, no-op starts or sticky actions), plus ``info["ram"]`` and,
    for games in ``DECODERS``, ``info["boxes"]`` / ``info["box_labels"]`` (lists over the batch of 1).

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
        reward, screens = 0.0, []
        for k in range(self.frames_per_step):
            reward += self._ale.act(action)
            if k >= self.frames_per_step - 2:
                screens.append(self._ale.getScreenRGB())
        screen = np.maximum(screens[0], screens[1])
        truncated = bool(self._ale.game_truncated())
        done = bool(self._ale.game_over())  # includes truncation
        if done:
            self._reset_game()
            screen = self._ale.getScreenRGB()
        info = self._info(np.array([truncated]))
        return self._episodes.step(self._obs(screen), np.array([reward], np.float32), np.array([done]), info)

    def close(self) -> None:
        pass

    @staticmethod
    def _obs(screen: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(screen.transpose(2, 0, 1))[None]  # [1, 3, 210, 160]

    def _info(self, truncated: np.ndarray) -> dict[str, Any]:
        ram = self._ale.getRAM().copy()
        info: dict[str, Any] = {"ram": ram[None], "truncated": truncated, "lives": np.array([self._ale.lives()])}
        if self.game in DECODERS:
            boxes, labels = objects_from_ram(self.game, ram)
            info["boxes"], info["box_labels"] = [boxes], [labels]
        return info
