"""CarRacing-v3 with faster rendering: pixel-identical by default, approximate on request.

Rendering is ~97% of a stock CarRacing step: every frame Gymnasium transforms each vertex of ~800
polygons in Python, draws them on a fresh 1000x800 canvas and builds a new Font. `FastCarRacing`
keeps the physics, rewards and drawing calls of the stock env and only removes work that cannot
change a pixel:

- all road and grass polygons are transformed at once with numpy, using the cos/sin that pygame's
  `Vector2.rotate_rad` would use, so the coordinates handed to gfxdraw are bit-identical;
- polygons that cannot touch a visible pixel (off the canvas, or wholly under the opaque dashboard
  bar) are not drawn; the culling is conservative (anti-aliasing margin, int16 / int32 overflow);
- the playfield background is a `fill` when its polygon provably covers the canvas;
- the canvas, the font and the rendered reward text are reused.

`FastCarRacing(approx=True)` gives up exactness for speed: it draws the road on a canvas
`approx_factor` (default 4) times smaller, the car at full size on a small patch that is then
area-averaged onto it, before the same smoothscale to 96x96. Use it for data generation and
training only; its deviation from stock is reported by `bench/bench_car_racing.py`.
"""

from __future__ import annotations

import math

import numpy as np
import pygame
from gymnasium.envs.box2d.car_dynamics import SIZE, WHEEL_R, WHEEL_W, WHEEL_WHITE, Car
from gymnasium.envs.box2d.car_racing import (
    GRASS_DIM,
    MAX_SHAPE_DIM,
    PLAYFIELD,
    SCALE,
    STATE_H,
    STATE_W,
    VIDEO_H,
    VIDEO_W,
    WINDOW_H,
    WINDOW_W,
    ZOOM,
    CarRacing,
)
from gymnasium.utils import EzPickle
from pygame import gfxdraw

# Pixels an anti-aliased gfxdraw polygon may touch outside the bounding box of its integer vertices
# (Wu lines spill 1 px); 2 leaves a margin.
AA_MARGIN = 2
# gfxdraw stores coordinates as int16 and computes scanline intersections in int32 as 65536 * x;
# beyond this magnitude a polygon may wrap or overflow onto the canvas, so it is never culled.
SAFE_COORD = 16000
# Half-size in full-size pixels of the patch the approximate mode draws the car on: the car reaches
# ~2.6 m from its hull's origin, ~42 px at the full zoom of 16.2 px/m.
CAR_PATCH_HALF = 64

# Fonts by size, shared by all envs. A font dies when pygame's font module quits (pygame.quit(),
# e.g. from a human-mode env's close()); `_render_label` then builds a new one.
_FONT_CACHE: dict[int, pygame.font.Font] = {}


def _render_label(label: str, size: int) -> pygame.Surface:
    """`label` in the default font at `size` points, white on black, as stock renders the reward."""
    for attempt in range(2):
        font = _FONT_CACHE.get(size)
        if font is None:
            font = _FONT_CACHE[size] = pygame.font.Font(pygame.font.get_default_font(), size)
        try:
            return font.render(label, True, (255, 255, 255), (0, 0, 0))
        except pygame.error:  # "font module quit since font created"
            if attempt:
                raise
            _FONT_CACHE.clear()
    raise AssertionError("unreachable")


def _grass_polygons() -> np.ndarray:
    """The stock grass patches, `(400, 4, 2)` world coordinates, in stock drawing order."""
    grass = []
    for x in range(-20, 20, 2):
        for y in range(-20, 20, 2):
            grass.append(
                [
                    (GRASS_DIM * x + GRASS_DIM, GRASS_DIM * y + 0),
                    (GRASS_DIM * x + 0, GRASS_DIM * y + 0),
                    (GRASS_DIM * x + 0, GRASS_DIM * y + GRASS_DIM),
                    (GRASS_DIM * x + GRASS_DIM, GRASS_DIM * y + GRASS_DIM),
                ]
            )
    return np.array(grass, dtype=np.float64)


GRASS_POLYGONS = _grass_polygons()
# The playfield background polygon, in stock order.
FIELD_CORNERS = (
    (PLAYFIELD, PLAYFIELD),
    (PLAYFIELD, -PLAYFIELD),
    (-PLAYFIELD, -PLAYFIELD),
    (-PLAYFIELD, PLAYFIELD),
)


def _to_screen(
    points: np.ndarray, zoom: float, translation: tuple[float, float], angle: float
) -> tuple[np.ndarray, np.ndarray]:
    """World points `(..., 2)` to canvas x and y, each `(...)`, bit-identical to the stock path.

    Stock does `Vector2(p).rotate_rad(angle)` then `c * zoom + translation` per vertex. pygame
    reduces the angle and special-cases multiples of 90 degrees, so cos/sin come from pygame itself;
    numpy then performs the same IEEE operations in the same order.
    """
    cos, sin = pygame.math.Vector2(1, 0).rotate_rad(angle)
    x, y = points[..., 0], points[..., 1]
    sx = (cos * x - sin * y) * zoom + translation[0]
    sy = (sin * x + cos * y) * zoom + translation[1]
    return sx, sy


class FastCarRacing(CarRacing):
    """Gymnasium's CarRacing with the same observations, rewards and infos, rendered faster.

    Args: those of `gymnasium.envs.box2d.car_racing.CarRacing`, plus
        approx: render on a canvas `approx_factor` times smaller (not pixel-identical to stock; for
            generation and training only). The default, False, is pixel-identical to stock.
        approx_factor: canvas reduction of the approximate mode (4 -> 250x200 instead of 1000x800);
            must divide 1000 and 800.

    Observations are `(96, 96, 3)` uint8 as in stock.
    """

    def __init__(
        self,
        render_mode: str | None = None,
        verbose: bool = False,
        lap_complete_percent: float = 0.95,
        domain_randomize: bool = False,
        continuous: bool = True,
        approx: bool = False,
        approx_factor: int = 4,
    ):
        super().__init__(
            render_mode=render_mode,
            verbose=verbose,
            lap_complete_percent=lap_complete_percent,
            domain_randomize=domain_randomize,
            continuous=continuous,
        )
        # Stock registered only its own five arguments for pickling/copying.
        EzPickle.__init__(
            self,
            render_mode,
            verbose,
            lap_complete_percent,
            domain_randomize,
            continuous,
            approx,
            approx_factor,
        )
        if approx and (approx_factor < 1 or WINDOW_W % approx_factor or WINDOW_H % approx_factor):
            raise ValueError(
                f"approx_factor must be a positive divisor of {WINDOW_W} and {WINDOW_H}, got {approx_factor}"
            )
        self.approx = approx
        # False: step() keeps the previous state pixels instead of drawing new ones (physics, reward and
        # everything else unchanged); envs.spec.ActionRepeat sets it for the frames the agent never sees,
        # and calls draw_state() when an episode ends on one of them.
        self.render_state = True
        self.approx_factor = approx_factor if approx else 1
        self._scale = 1.0 / self.approx_factor
        self._canvas_w = WINDOW_W // self.approx_factor
        self._canvas_h = WINDOW_H // self.approx_factor
        # The dashboard bar is drawn opaque over the bottom 5/40 of the flipped canvas, i.e. over
        # these rows of the canvas before the vertical flip (checked in the tests).
        self._bar_rows = int(self._canvas_h * 5 / 40)
        self._canvas: pygame.Surface | None = None
        self._flipped: pygame.Surface | None = None
        # World polygons (grass then road) and the road_poly list they were built from.
        self._polys: np.ndarray | None = None
        self._polys_source: list | None = None
        self._text_cache: dict[str, tuple[pygame.Surface, pygame.Rect]] = {}
        self._gfx_color_key: tuple[float, ...] | None = None
        self._gfx_color_value = pygame.Color(0, 0, 0)

    # ------------------------------------------------------------------------------------------
    # rendering
    # ------------------------------------------------------------------------------------------
    def _render(self, mode: str):
        """Same drawing calls in the same order as `CarRacing._render`, minus invisible work."""
        assert mode in self.metadata["render_modes"]

        pygame.font.init()
        if self.screen is None and mode == "human":
            pygame.display.init()
            self.screen = pygame.display.set_mode((WINDOW_W, WINDOW_H))
        if self.clock is None:
            self.clock = pygame.time.Clock()

        if "t" not in self.__dict__:
            return  # reset() not called yet
        if mode == "state_pixels" and not self.render_state and getattr(self, "state", None) is not None:
            self._skipped_reward = self.reward  # what the frame's label shows (step subtracts 0.1 after)
            return self.state  # a frame nobody looks at (see render_state)

        if self._canvas is None:
            # Same flags and depth as stock's per-frame `pygame.Surface((WINDOW_W, WINDOW_H))`.
            self._canvas = pygame.Surface((self._canvas_w, self._canvas_h))
        canvas = self._canvas

        assert self.car is not None
        angle = -self.car.hull.angle
        zoom = 0.1 * SCALE * max(1 - self.t, 0) + ZOOM * SCALE * min(self.t, 1)
        scroll_x = -(self.car.hull.position[0]) * zoom
        scroll_y = -(self.car.hull.position[1]) * zoom
        trans = pygame.math.Vector2((scroll_x, scroll_y)).rotate_rad(angle)
        trans = (WINDOW_W / 2 + trans[0], WINDOW_H / 4 + trans[1])
        draw_particles = mode not in ["state_pixels_list", "state_pixels"]

        if not self.approx:
            self._render_road(zoom, trans, angle)
            self.car.draw(canvas, zoom, trans, angle, draw_particles)
        else:
            # gfxdraw truncates coordinates: at full size that shifts edges by 0.5 px on average, on
            # the small canvas by 0.5 small px = approx_factor / 2 full px. The offset restores the
            # stock average.
            offset = 0.5 - 0.5 * self._scale
            small_trans = (trans[0] * self._scale + offset, trans[1] * self._scale + offset)
            self._render_road(zoom * self._scale, small_trans, angle)
            self._draw_car_approx(zoom, trans, angle, draw_particles)

        self.surf = self._flip(canvas)

        self._render_indicators(self._canvas_w, self._canvas_h)

        text, text_rect = self._reward_text(f"{self.reward:04.0f}")
        self.surf.blit(text, text_rect)

        if mode == "human":
            pygame.event.pump()
            self.clock.tick(self.metadata["render_fps"])
            assert self.screen is not None
            self.screen.fill(0)
            surf = self.surf
            if surf.get_size() != (WINDOW_W, WINDOW_H):
                surf = pygame.transform.scale(surf, (WINDOW_W, WINDOW_H))
            self.screen.blit(surf, (0, 0))
            pygame.display.flip()
        elif mode == "rgb_array":
            return self._create_image_array(self.surf, (VIDEO_W, VIDEO_H))
        elif mode == "state_pixels":
            return self._create_image_array(self.surf, (STATE_W, STATE_H))
        else:
            return self.isopen

    def draw_state(self) -> np.ndarray:
        """Draw the state pixels of the current frame (those a step with ``render_state`` False kept
        from before): the same pixels step() would have returned, since drawing changes nothing."""
        after, self.reward = self.reward, self._skipped_reward
        skip, self.render_state = self.render_state, True
        try:
            self.state = self._render("state_pixels")
        finally:
            self.reward, self.render_state = after, skip
        return self.state

    def _draw_car_approx(
        self, zoom: float, translation: tuple[float, float], angle: float, draw_particles: bool
    ) -> None:
        """Draw the car at full resolution on a patch and area-average it onto the small canvas.

        `zoom` and `translation` are the full-size ones. Drawn directly on a small canvas the car,
        a few pixels wide, would lose its shape to pixel rounding (its wheels are ~1 px), and it
        is the part of the frame a controller looks at most.
        """
        canvas, k, car = self._canvas, self.approx_factor, self.car
        assert canvas is not None and car is not None
        if draw_particles:  # skid marks, under the car, drawn directly on the small canvas
            small_zoom = zoom * self._scale
            small_trans = (translation[0] * self._scale, translation[1] * self._scale)
            for particle in car.particles:
                points = [pygame.math.Vector2(c).rotate_rad(angle) for c in particle.poly]
                points = [
                    (c[0] * small_zoom + small_trans[0], c[1] * small_zoom + small_trans[1]) for c in points
                ]
                pygame.draw.lines(canvas, color=particle.color, points=points, width=1, closed=False)
        # The camera follows the car, so it sits near (WINDOW_W / 2, WINDOW_H / 4) before the flip;
        # the patch is located from its actual position anyway.
        cx, cy = _to_screen(np.array(car.hull.position, dtype=np.float64), zoom, translation, angle)
        half = -(-CAR_PATCH_HALF // k)  # small pixels, rounded up
        rect = pygame.Rect(int(cx) // k - half, int(cy) // k - half, 2 * half, 2 * half).clip(
            canvas.get_rect()
        )
        if rect.w == 0 or rect.h == 0:
            return
        big = pygame.transform.scale(canvas.subsurface(rect), (rect.w * k, rect.h * k))
        _draw_car_bodies(big, car, zoom, (translation[0] - rect.x * k, translation[1] - rect.y * k), angle)
        canvas.blit(pygame.transform.smoothscale(big, rect.size), rect)

    def _flip(self, canvas: pygame.Surface) -> pygame.Surface:
        """`pygame.transform.flip(canvas, False, True)` into a reused surface (half the time)."""
        if self._flipped is None or self._flipped.get_size() != canvas.get_size():
            self._flipped = pygame.Surface(canvas.get_size())
        # Views lock their surfaces, so they live only for the copy.
        # Canvas rows under the dashboard bar are painted over after the flip, so they are not copied
        # (the flipped surface keeps stale rows there until the bar covers them).
        src, dst = pygame.surfarray.pixels2d(canvas), pygame.surfarray.pixels2d(self._flipped)
        h = canvas.get_height()
        np.copyto(dst[:, : h - self._bar_rows], src[:, self._bar_rows :][:, ::-1])
        del src, dst
        return self._flipped

    def _reward_text(self, label: str) -> tuple[pygame.Surface, pygame.Rect]:
        """The rendered reward label and its placement; cached because the label rarely changes."""
        # Rendered labels are plain surfaces and outlive their font.
        cached = self._text_cache.get(label)
        if cached is None:
            text = _render_label(label, round(42 * self._scale))
            text_rect = text.get_rect()
            text_rect.center = (60 * self._scale, (WINDOW_H - WINDOW_H * 2.5 / 40.0) * self._scale)
            if len(self._text_cache) > 512:  # labels are integers; bound memory on long runs anyway
                self._text_cache.clear()
            cached = self._text_cache[label] = (text, text_rect)
        return cached

    def _create_image_array(self, screen: pygame.Surface, size: tuple[int, int]) -> np.ndarray:
        """Stock's smoothscale to `size`, as a writeable `(H, W, 3)` uint8 array read in one call.

        Same values and layout (C-contiguous) as stock's copy of a transposed `pixels3d` view, in
        less than half the time.
        """
        scaled = pygame.transform.smoothscale(screen, size)
        pixels = np.frombuffer(pygame.image.tobytes(scaled, "RGB"), dtype=np.uint8)
        return pixels.reshape(size[1], size[0], 3).copy()

    def _world_polygons(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """Grass then road polygons `(N, 4, 2)`, their centres `(N, 2)`, radii `(N,)` and reach.

        N = 400 + len(road_poly); reach bounds the distance of any vertex from the world origin.
        Rebuilt when reset() makes a new track.
        """
        if (
            self._polys is None
            or self._polys_source is not self.road_poly
            or len(self._polys[0]) != len(GRASS_POLYGONS) + len(self.road_poly)
        ):
            road = np.array([[(p[0], p[1]) for p in poly] for poly, _ in self.road_poly], dtype=np.float64)
            polys = np.concatenate([GRASS_POLYGONS, road.reshape(-1, 4, 2)])
            centres = polys.mean(axis=1)
            radii = np.sqrt(((polys - centres[:, None, :]) ** 2).sum(axis=2)).max(axis=1)
            reach = float(np.sqrt((polys**2).sum(axis=2)).max())
            self._polys = (polys, centres, radii, reach)
            self._polys_source = self.road_poly
        return self._polys

    def _render_road(self, zoom: float, translation: tuple[float, float], angle: float) -> None:
        """Background, grass and road, as stock `_render_road` would leave the visible pixels."""
        canvas = self._canvas
        assert canvas is not None
        w, h = self._canvas_w, self._canvas_h
        bar_rows = self._bar_rows
        # pygame reduces the angle and special-cases multiples of 90 degrees; see _to_screen.
        cos, sin = pygame.math.Vector2(1, 0).rotate_rad(angle)
        tx, ty = translation

        # Background: a fill when the playfield polygon covers the canvas with margin, else the
        # stock polygon on a cleared canvas (during the first second's zoom-in it does not cover).
        field = [((cos * x - sin * y) * zoom + tx, (sin * x + cos * y) * zoom + ty) for x, y in FIELD_CORNERS]
        if _covers_canvas(field, w, h):
            # Rows under the dashboard bar are never seen, so they are not painted.
            canvas.fill(self._gfx_color(self.bg_color), (0, bar_rows, w, h - bar_rows))
        else:
            canvas.fill((0, 0, 0))
            gfxdraw.aapolygon(canvas, field, self.bg_color)
            gfxdraw.filled_polygon(canvas, field, self.bg_color)

        polys, centres, radii, reach = self._world_polygons()
        # Whether some coordinate could be too large for the culling to reason about (never in play:
        # the car ends the episode when it leaves the playfield).
        huge_possible = reach * zoom + max(abs(tx), abs(ty)) + AA_MARGIN > SAFE_COORD

        if huge_possible:
            candidates = np.arange(len(polys))
        else:
            # Coarse pass on centres, in few numpy calls: rotation and zoom keep distances, so every
            # vertex lies within radius * zoom of the transformed centre; 2 px more cover the
            # anti-aliasing and rounding. Centre of the visible area relative to the translation:
            half = np.array([(w - 1) / 2, (h - 1 - bar_rows) / 2])
            offset = np.array([tx - half[0], ty - bar_rows - half[1]])
            rotation = np.array([[cos, sin], [-sin, cos]]) * zoom
            reach_px = (radii * zoom + (AA_MARGIN + 2))[:, None] + half
            candidates = np.flatnonzero((np.abs(centres @ rotation + offset) <= reach_px).all(axis=1))

        # Exact pass: the coordinates stock would hand to gfxdraw, bit for bit.
        sx, sy = _to_screen(polys[candidates], zoom, translation, angle)
        # Stock's own cull (any vertex within MAX_SHAPE_DIM of the window); we never draw more.
        # In approx mode the window and the margin shrink with the canvas.
        margin = MAX_SHAPE_DIM * self._scale
        stock = ((sx >= -margin) & (sx <= w + margin) & (sy >= -margin) & (sy <= h + margin)).any(axis=1)
        # Ours: the truncated bounding box, grown by the anti-aliasing spill, meets a visible pixel
        # (x in [0, w), y in [bar_rows, h)); or coordinates are too large to reason about.
        ix, iy = np.trunc(sx), np.trunc(sy)
        visible = (
            (ix.max(axis=1) >= -AA_MARGIN)
            & (ix.min(axis=1) <= w - 1 + AA_MARGIN)
            & (iy.max(axis=1) >= bar_rows - AA_MARGIN)
            & (iy.min(axis=1) <= h - 1 + AA_MARGIN)
        )
        if huge_possible:
            visible |= (np.abs(ix) > SAFE_COORD).any(axis=1) | (np.abs(iy) > SAFE_COORD).any(axis=1)
        keep = stock & visible

        n_grass = len(GRASS_POLYGONS)
        grass_color = self.grass_color
        road_poly = self.road_poly
        # Stock passes float coordinates and gfxdraw truncates them; we pass the same floats.
        for i, xs, ys in zip(candidates[keep].tolist(), sx[keep].tolist(), sy[keep].tolist(), strict=True):
            poly = list(zip(xs, ys, strict=True))
            if i < n_grass:
                color = grass_color
            else:
                # Tile colours change in place on contact, so they are read every frame.
                color = [int(c) for c in road_poly[i - n_grass][1]]
            gfxdraw.aapolygon(canvas, poly, color)
            gfxdraw.filled_polygon(canvas, poly, color)

    def _gfx_color(self, color) -> pygame.Color:
        """The colour gfxdraw would paint for `color` (it truncates float components), cached."""
        key = tuple(float(c) for c in color)
        if self._gfx_color_key != key:
            probe = pygame.Surface((1, 1))
            gfxdraw.pixel(probe, 0, 0, color)
            self._gfx_color_key, self._gfx_color_value = key, probe.get_at((0, 0))
        return self._gfx_color_value

    def close(self) -> None:
        super().close()
        self._canvas = self._flipped = None
        self._text_cache.clear()


def _covers_canvas(points: list[tuple[float, float]], w: int, h: int) -> bool:
    """Whether the convex polygon `points`, truncated as gfxdraw does, contains the canvas grown by 3 px.

    Then gfxdraw's fill paints every canvas pixel and its anti-aliased outline lies off the canvas.
    Coordinates beyond SAFE_COORD could overflow gfxdraw's integer arithmetic, so they answer no.
    """
    ipoints = [(int(x), int(y)) for x, y in points]  # int() truncates toward zero, like gfxdraw
    if max(max(abs(x), abs(y)) for x, y in ipoints) > SAFE_COORD:
        return False
    m = AA_MARGIN + 1
    corners = ((-m, -m), (w - 1 + m, -m), (w - 1 + m, h - 1 + m), (-m, h - 1 + m))
    signs = set()
    for k, (x0, y0) in enumerate(ipoints):
        x1, y1 = ipoints[(k + 1) % len(ipoints)]
        for px, py in corners:
            # Cross product of the edge with (corner - edge start): one strict sign for all = inside.
            cross = (x1 - x0) * (py - y0) - (y1 - y0) * (px - x0)
            signs.add(cross > 0 if cross != 0 else None)
    return len(signs) == 1 and None not in signs


def _draw_car_bodies(
    surface: pygame.Surface, car: Car, zoom: float, translation: tuple[float, float], angle: float
) -> None:
    """What `Car.draw(..., draw_particles=False)` draws, with one composed transform per body.

    Not bit-identical to stock (different rounding), so only the approximate mode uses it; it
    spends a third of the time of stock's per-vertex Vector2 and Box2D calls.
    """
    tx, ty = translation
    cos, sin = math.cos(angle) * zoom, math.sin(angle) * zoom
    for body in car.drawlist:
        shapes = body.__dict__.get("_local_polygons")
        if shapes is None:  # fixtures never change: read their vertices once per body
            shapes = body._local_polygons = [list(f.shape.vertices) for f in body.fixtures]
        px, py = body.position
        # screen = zoom * R(angle) (R(body angle) v + p) + t = zoom * R(angle + body angle) v + offset
        ca, sa = math.cos(angle + body.angle) * zoom, math.sin(angle + body.angle) * zoom
        ox, oy = cos * px - sin * py + tx, sin * px + cos * py + ty
        color = [int(c * 255) for c in body.color]
        for poly in shapes:
            pygame.draw.polygon(
                surface, color, [(ca * x - sa * y + ox, sa * x + ca * y + oy) for x, y in poly]
            )
            if "phase" not in body.__dict__:
                continue
            # The white stripe that shows the wheel turning, as in Car.draw.
            a1, a2 = body.phase, body.phase + 1.2
            s1, s2, c1, c2 = math.sin(a1), math.sin(a2), math.cos(a1), math.cos(a2)
            if s1 > 0 and s2 > 0:
                continue
            if s1 > 0:
                c1 = float(np.sign(c1))
            if s2 > 0:
                c2 = float(np.sign(c2))
            xw, y1, y2 = WHEEL_W * SIZE, WHEEL_R * c1 * SIZE, WHEEL_R * c2 * SIZE
            stripe = [(-xw, y1), (xw, y1), (xw, y2), (-xw, y2)]
            pygame.draw.polygon(
                surface, WHEEL_WHITE, [(ca * x - sa * y + ox, sa * x + ca * y + oy) for x, y in stripe]
            )
