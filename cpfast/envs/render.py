"""RGB rendering of environment states (for inspection and GIFs; never on a hot path)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

_RC_EXTENT = 1.05  # world coordinates shown: [-extent, extent]^2
_RC_RESOURCE_COLOURS = np.array([[220, 50, 47], [60, 160, 60], [38, 110, 210]], dtype=np.float64)
_RC_LANDMARK_SIZES = (0.08, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.03)


class _Canvas:
    def __init__(self, size: int, extent: float, background=(250, 250, 245)):
        self.image = np.empty((size, size, 3), dtype=np.float64)
        self.image[:] = background
        self.scale = size / (2 * extent)
        centres = (np.arange(size) + 0.5) / self.scale - extent
        self.x = centres[None, :]
        self.y = centres[::-1, None]  # row 0 is the top of the world

    def disc(self, centre, radius, colour, ring: float = 0.0):
        """A filled disc, or with ``ring`` > 0 only its outline of that width (world units)."""
        dist = np.sqrt((self.x - centre[0]) ** 2 + (self.y - centre[1]) ** 2)
        mask = dist <= radius if ring <= 0 else np.abs(dist - radius) <= ring / 2
        self.image[mask] = colour

    def rgb(self) -> np.ndarray:
        return self.image.clip(0, 255).astype(np.uint8)


def render_resource_collection(state: dict[str, np.ndarray], size: int = 420) -> np.ndarray:
    """Home (grey), resources by type (red/green/blue = type 1/2/3), the invader (black),
    agents coloured by their skills (p1, p2, p3) as RGB with a darker rim for speed, the
    resource each carries as a centre dot, and each agent's 0.2 view radius as a ring."""
    canvas = _Canvas(size, _RC_EXTENT)
    lm_pos, lm_alive = state["lm_pos"], state["lm_alive"]
    canvas.disc(lm_pos[0], _RC_LANDMARK_SIZES[0], (150, 150, 150))
    for j in range(1, 7):
        if lm_alive[j]:
            canvas.disc(lm_pos[j], _RC_LANDMARK_SIZES[j], _RC_RESOURCE_COLOURS[(j - 1) % 3])
    if lm_alive[7]:
        canvas.disc(lm_pos[7], _RC_LANDMARK_SIZES[7], (20, 20, 20))
    for i in np.flatnonzero(state["agent_alive"]):
        pos, attr = state["agent_pos"][i], state["agent_attr"][i]
        canvas.disc(pos, 0.2, (190, 190, 210), ring=0.006)
        skill_colour = 40 + 200 * np.clip(attr[:3], 0, 1)
        canvas.disc(pos, 0.04, skill_colour * (1.0 - 0.6 * min(attr[3], 1.0)))
        canvas.disc(pos, 0.032, skill_colour)
        if state["agent_hold"][i]:
            canvas.disc(pos, 0.015, _RC_RESOURCE_COLOURS[state["agent_hold"][i] - 1])
    return canvas.rgb()


def render_rescue(state: dict[str, np.ndarray], cell: int = 40) -> np.ndarray:
    """The 10 x 10 grid (y up): intact buildings as squares whose darkness is their health, a
    burning one with an orange-to-red core sized by its intensity; agents as discs coloured by
    extinguish power (red) and speed (blue), each with its 5 x 5 view window outlined."""
    grid = 10
    size = grid * cell
    image = np.empty((size, size, 3), dtype=np.float64)
    image[:] = (250, 250, 245)
    image[::cell, :] = image[:, ::cell] = (225, 225, 220)

    def box(x, y, half, colour, outline=False):
        """Square of half-width ``half`` (cells) centred on cell (x, y); row 0 is the top (y = 9)."""
        cx, cy = (x + 0.5) * cell, (grid - y - 0.5) * cell
        r0, r1 = int(max(0, round(cy - half * cell))), int(min(size, round(cy + half * cell)))
        c0, c1 = int(max(0, round(cx - half * cell))), int(min(size, round(cx + half * cell)))
        if outline:
            image[r0:r1, [c0, c1 - 1]] = colour
            image[[r0, r1 - 1], c0:c1] = colour
        else:
            image[r0:r1, c0:c1] = colour

    for b in np.flatnonzero(state["bld_destroyed"] == 0):
        x, y = state["bld_cell"][b]
        box(x, y, 0.42, 200 - 150 * float(state["bld_health"][b]))
        if state["bld_burning"][b]:
            intensity = float(state["bld_intensity"][b])
            box(x, y, 0.12 + 0.25 * intensity, (250, 170 - 140 * intensity, 30))
    rows = (np.arange(size) + 0.5)[:, None]
    cols = (np.arange(size) + 0.5)[None, :]
    for i in np.flatnonzero(state["agent_alive"]):
        x, y = state["agent_cell"][i]
        e, s = state["agent_attr"][i]
        box(x, y, 2.5, (120, 120, 200), outline=True)
        colour = (np.clip((e - 0.05) / 0.30, 0, 1) * 200 + 40, 60, np.clip((s - 0.4) / 0.6, 0, 1) * 200 + 40)
        cx, cy = (x + 0.5) * cell, (grid - y - 0.5) * cell
        image[(rows - cy) ** 2 + (cols - cx) ** 2 <= (0.25 * cell) ** 2] = colour
    return image.clip(0, 255).astype(np.uint8)


# StarCraft unit types (envs_cpp/starcraft_micro.h): Marine, Marauder, Medivac, Stalker, Zealot.
_SC2_RADIUS = (0.375, 0.5625, 0.75, 0.625, 0.5)
_SC2_HP = (45.0, 125.0, 150.0, 80.0, 100.0)
_SC2_SHIELD = (0.0, 0.0, 0.0, 80.0, 50.0)
_SC2_SHADE = (1.0, 0.7, 0.45, 1.0, 0.7)  # lighter / darker per type within a side
_SC2_SIDE_COLOURS = (np.array([40.0, 90.0, 220.0]), np.array([215.0, 45.0, 40.0]))  # allies, enemies


def render_starcraft(state: dict[str, np.ndarray], size: int = 384) -> np.ndarray:
    """The 32 x 32 map: allies blue, enemies red (shade by unit type, Medivacs as rings), the
    dark core of a unit grows with lost health, shields as a cyan rim, dead units as grey dots,
    and a thin line from each unit with a target order to its target."""
    canvas = _Canvas(size, 16.0, background=(236, 232, 220))
    pos = state["pos"] - 16.0
    types, alive = state["unit_type"], state["alive"]
    for u in np.flatnonzero((types >= 0) & (alive == 0)):
        canvas.disc(pos[u], 0.2, (150, 150, 150))
    for u in np.flatnonzero((types >= 0) & (alive != 0)):
        t = int(types[u])
        colour = _SC2_SIDE_COLOURS[u // 8] * _SC2_SHADE[t] + 255 * (1 - _SC2_SHADE[t]) * 0.3
        r = _SC2_RADIUS[t]
        if _SC2_SHIELD[t] > 0 and state["shield"][u] > 0:
            canvas.disc(pos[u], r + 0.12, (60, 220, 230))
        if t == 2:
            canvas.disc(pos[u], r, colour, ring=0.25)
        else:
            canvas.disc(pos[u], r, colour)
        lost = 1.0 - float(np.clip(state["health"][u] / _SC2_HP[t], 0.0, 1.0))
        if lost > 0:
            canvas.disc(pos[u], r * lost, (30, 30, 30))
        target = int(state["order_target"][u])
        if target >= 0 and state["order"][u] in (2, 3, 4) and alive[target]:
            for f in np.linspace(0.0, 1.0, 24):
                canvas.disc(pos[u] + f * (pos[target] - pos[u]), 0.06, colour)
    return canvas.rgb()


def save_gif(frames: Sequence[np.ndarray], path: str | Path, fps: int = 10) -> Path:
    """Writes RGB frames to an animated GIF."""
    from PIL import Image  # matplotlib's own imaging dependency

    if not frames:
        raise ValueError("save_gif needs at least one frame")
    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
    path = Path(path)
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path


def with_caption(frame: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """The frame under a white band holding ``lines`` of text (title, step counter, score)."""
    from PIL import Image, ImageDraw

    line_height = 13
    band = Image.new("RGB", (frame.shape[1], line_height * len(lines) + 6), (255, 255, 255))
    draw = ImageDraw.Draw(band)
    for k, line in enumerate(lines):
        draw.text((4, 3 + k * line_height), line, fill=(20, 20, 20))
    return np.concatenate([np.asarray(band), np.asarray(frame, dtype=np.uint8)], axis=0)


def record_episode_gif(env, policy: Callable, path: str | Path, env_index: int = 0, fps: int = 10,
                       max_frames: int | None = None, title: str | None = None) -> Path:
    """Runs ``policy(obs) -> actions`` on ``env`` (freshly reset) for one episode of env
    ``env_index`` (or its first ``max_frames`` frames) and writes its frames to a GIF, each under
    a caption: ``title`` (default: the env's name), the step counter and the score so far; the
    last frame says how the episode ended."""
    title = title or env.spec.name
    limit = env.spec.episode_limit
    obs = env.reset()
    score, ending = 0.0, ""
    frames, captions = [env.render(env_index)], [f"step 0 / {limit}   score 0.00"]
    steps = limit if max_frames is None else min(limit, max_frames - 1)
    for step in range(1, steps + 1):
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        score += float(reward[env_index])
        if terminated[env_index] or truncated[env_index]:
            # The env has reset itself: the last frame shown gets the episode's end.
            ending = "ended" if terminated[env_index] else "time limit"
            for outcome in ("battle_won", "battle_draw", "battle_lost"):
                if outcome in info and info[outcome][env_index]:
                    ending = outcome.replace("battle_", "")
            captions[-1] = f"step {step} / {limit}   score {score:.2f}   ({ending})"
            break
        frames.append(env.render(env_index))
        captions.append(f"step {step} / {limit}   score {score:.2f}")
    return save_gif([with_caption(f, [title, c]) for f, c in zip(frames, captions)], path, fps)
