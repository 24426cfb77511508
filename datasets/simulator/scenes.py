"""Painted scenes as stacks of paint layers (top layer first).

* :func:`still_life` — a flower piece after the Dutch 17th-century manner (a Delft vase
  on a stone ledge against a dark background, a bouquet of roses, tulips, white and
  yellow flowers, leaves and stems, a butterfly and a fly).  Under it: a chalk ground, a
  grey imprimatura, a lead-white dead-colouring of the flowers and a *pentimento* — a
  tulip and a butterfly first painted at the upper left and covered by the dark
  background.  On it: 19th-century retouchings in zinc white, chrome yellow, Prussian blue
  and barite, matched in colour to their surroundings.
* :func:`madonna` — an arched panel after Leonardo's *Virgin of the Rocks*: gesso
  (gypsum) ground, lead-white priming, an underdrawing of an earlier composition in a
  zinc-bearing material (the London panel's first design shows in the Zn map) and an
  abandoned angel painted in lead white and azurite, under a dark rocky grotto, a
  Madonna in an ultramarine/azurite mantle, two children and plants.
* :func:`portrait` — a half-length portrait after Goya's *Doña Isabel de Porcel*: red-brown
  priming, a man's portrait painted first and covered (as the X-radiograph of the London
  picture shows), then a woman in a pink dress with a black lace mantilla against a dark
  background.

All scene randomness (flower placement, textures, cracks) comes from ``rng``; geometry is
in fractions of the canvas and textures in pixels.  ``view = (zoom, x0, y0)`` renders a
detail: the canvas is ``zoom × size`` pixels wide and the image shows the part starting at
(x0, y0) (fractions of the canvas), as a scan of a detail of a painting would.
"""
from __future__ import annotations

import math

import numpy as np

from .canvas import Grid, LayerBuilder, StrokeBank, bezier, craquelure, mask, smooth_noise
from .physics import Layer

FLESH = {"lead_white": 6, "vermilion": 0.5, "yellow_ochre": 0.6}
FLESH_SHADOW = {"red_ochre": 1.5, "raw_umber": 1.0, "lead_white": 1.0}
DARK_BG = {"bone_black": 3, "raw_umber": 2, "lead_white": 0.3, "yellow_ochre": 0.4}


def _apply_cracks(layers: list[LayerBuilder], crack: np.ndarray, depth: float = 0.6) -> None:
    """Cracks go through the paint to the ground: every paint layer thins there, and the
    top layer's crack is filled with dirt (carbon: dark, no X-ray signal)."""
    for lb in layers:
        lb.t *= 1 - depth * crack
    top = layers[0]
    dirt = top.recipe_vector({"lamp_black": 1}, 0.5, top.binder)[:, None, None]
    c = 0.9 * crack[None]
    top.v = top.v * (1 - c) + dirt * c


def _ground(size, recipe, thickness_um=250.0, binder="animal_glue"):
    g = LayerBuilder("ground", size, binder=binder)
    g.paint(np.ones((size, size), np.float32), recipe, thickness_um, pvc=0.55)
    return g


def _finish(builders: list[LayerBuilder]) -> list[Layer]:
    return [b.layer() for b in builders]


# --- the still life -----------------------------------------------------------------------

FLOWER_TYPES = {
    # name: (petals, recipe, highlight, shadow, shape exponent)
    "rose": (5, {"vermilion": 3, "red_lake": 2, "lead_white": 0.5},
             {"lead_white": 2, "vermilion": 1}, {"red_lake": 2, "bone_black": 0.6}, 0.25),
    "pink_rose": (5, {"lead_white": 4, "vermilion": 1, "red_lake": 1},
                  {"lead_white": 1}, {"red_lake": 2, "vermilion": 1}, 0.25),
    "white": (11, {"lead_white": 5, "bone_black": 0.08},
              {"lead_white": 1}, {"lead_white": 2, "bone_black": 0.5, "yellow_ochre": 0.5}, 0.8),
    "yellow": (6, {"lead_tin_yellow": 3, "yellow_ochre": 1},
               {"lead_tin_yellow": 2, "lead_white": 1}, {"yellow_ochre": 2, "raw_umber": 1}, 0.6),
    "naples": (8, {"naples_yellow": 3, "lead_white": 1},
               {"naples_yellow": 1, "lead_white": 1}, {"yellow_ochre": 2, "raw_umber": 0.6}, 0.7),
    "orpiment": (6, {"orpiment": 3, "lead_tin_yellow": 0.5},
                 {"orpiment": 1, "lead_white": 1}, {"orpiment": 1, "red_ochre": 1}, 0.5),
    "orange": (6, {"red_lead": 3, "lead_tin_yellow": 1},
               {"lead_tin_yellow": 2, "red_lead": 1}, {"red_lead": 1, "red_ochre": 1}, 0.5),
    "blue": (12, {"azurite": 3, "smalt": 1, "lead_white": 0.6},
             {"azurite": 1, "lead_white": 1}, {"azurite": 2, "bone_black": 0.5}, 1.2),
    "tulip": (0, {"lead_white": 4, "lead_tin_yellow": 0.3},
              {"lead_white": 1}, {"vermilion": 2, "red_lake": 1}, 0.0),
}
GREEN = {"azurite": 0.45, "lead_tin_yellow": 2.0, "yellow_ochre": 1.2, "verdigris": 0.25, "raw_umber": 0.15}
GREEN_LIGHT = {"lead_tin_yellow": 2, "azurite": 0.6, "lead_white": 0.5}
GREEN_DARK = {"verdigris": 1.5, "raw_umber": 1.0, "azurite": 0.5}


def _flower(g: Grid, lb: LayerBuilder, strokes: StrokeBank, kind, cx, cy, r, rot, rng):
    petals, recipe, hi, sh, expo = FLOWER_TYPES[kind]
    lx, ly = g.local(cx, cy, rot)
    th = np.arctan2(ly, lx)
    rr = np.hypot(lx, ly) / g.u(r)
    if kind == "tulip":
        # a cup seen from the side: an egg shape with flames of vermilion
        sdf = g.ellipse(cx, cy, r * 0.7, r, rot)
        flames = np.sin(th * 7 + 3 * rr) * 0.6 + 0.25 * strokes.at(th + math.pi / 2)
        light = np.clip(g.dome(cx, cy, r * 0.7, r, angle=rot) * 0.5 - np.clip(flames, 0, 1), -1, 1)
        lb.paint(mask(sdf), recipe, 22 + 6 * strokes.at(th), light=light, highlight=hi, shadow=sh)
        return sdf
    shape = lambda t: r * (0.55 + 0.45 * np.abs(np.cos(petals * t / 2)) ** expo)  # noqa: E731
    sdf = g.polar(cx, cy, shape, rot)
    ridge = np.cos(petals * th) * (1 - rr)               # dark gaps between petals
    light = (0.7 * g.dome(cx, cy, r, r) + 0.35 * ridge - 0.45 * np.exp(-(rr / 0.3) ** 2) * (kind != "white")
             + 0.3 * strokes.at(th))
    thick = 20 + 6 * strokes.at(th) + 10 * np.clip(light, 0, 1)   # impasto in the lights
    lb.paint(mask(sdf), recipe, thick, light=light, highlight=hi, shadow=sh)
    if kind in ("white", "yellow", "naples", "blue", "orpiment"):  # a heart of a different colour
        heart = {"white": {"lead_tin_yellow": 2, "yellow_ochre": 1},
                 "blue": {"bone_black": 1, "raw_umber": 1}}.get(kind, {"raw_umber": 1, "red_ochre": 1})
        hr = r * 0.2
        dots = 0.6 * strokes.at(0.3) + 0.4 * g.dome(cx, cy, hr, hr)
        lb.paint(mask(g.ellipse(cx, cy, hr, hr)), heart, 25, light=dots,
                 highlight={"lead_tin_yellow": 1, "lead_white": 1}, shadow={"raw_umber": 1})
    return sdf


def _leaf(g: Grid, lb: LayerBuilder, strokes, x0, y0, length, angle, width=0.35):
    cx, cy = x0 + 0.5 * length * math.cos(angle), y0 + 0.5 * length * math.sin(angle)
    lx, ly = g.local(cx, cy, angle)
    half = g.u(length / 2)
    # lens: width tapering to points at both ends
    prof = np.clip(1 - (lx / half) ** 2, 0, 1) ** 0.8 * half * width
    sdf = np.maximum(np.abs(ly) - prof, np.abs(lx) - half)
    light = 0.6 * np.sign(ly) * np.clip(1 - np.abs(ly) / (prof + 1e-3), 0, 1) + 0.35 * strokes.at(angle + 0.5)
    lb.paint(mask(sdf), GREEN, 16 + 4 * strokes.at(angle), light=light, highlight=GREEN_LIGHT,
             shadow=GREEN_DARK)
    rib = g.polyline([(x0, y0), (x0 + length * 0.9 * math.cos(angle), y0 + length * 0.9 * math.sin(angle))], 1.2)
    lb.paint(mask(rib) * mask(sdf + 1), GREEN_DARK, 18)


def _butterfly(g: Grid, lb: LayerBuilder, cx, cy, s, rot, colours):
    wing, edge = colours
    for side in (-1, 1):
        for (dx, dy, rx, ry) in ((0.55, -0.35, 0.55, 0.42), (0.4, 0.35, 0.38, 0.3)):
            a = rot + side * 0.4
            ex = cx + side * dx * s * math.cos(rot) - dy * s * math.sin(rot)
            ey = cy + side * dx * s * math.sin(rot) + dy * s * math.cos(rot)
            sdf = g.ellipse(ex, ey, rx * s, ry * s, a)
            rim = np.clip(1 + sdf / max(g.u(0.12 * s), 1.0), 0, 1)     # dark wing border
            light = -2 * (rim < 0.5) + 0.3
            lb.paint(mask(sdf), wing, 15, light=light, shadow=edge, strength=1.0)
            for k in range(3):
                a2 = a + k * 2.1
                sx, sy = ex + 0.5 * rx * s * math.cos(a2), ey + 0.5 * ry * s * math.sin(a2)
                lb.paint(mask(g.ellipse(sx, sy, 0.09 * s, 0.09 * s)), {"lead_white": 1}, 16)
    body = g.polyline([(cx - 0.6 * s * math.sin(rot), cy - 0.6 * s * math.cos(rot) * -1),
                       (cx + 0.6 * s * math.sin(rot), cy + 0.6 * s * math.cos(rot) * -1)][::-1], max(1.5, g.u(0.12 * s)))
    lb.paint(mask(body), {"bone_black": 2, "raw_umber": 1}, 18)


def still_life(size: int, rng: np.random.Generator, view=None) -> list[Layer]:
    """A flower piece; layers top first: paint, dead-colouring/pentimento, imprimatura, ground."""
    g = Grid(size, view)
    S = g.S  # the whole canvas, in pixels (> size when the view is a detail)
    strokes = StrokeBank((size, size), rng, length=max(6.0, S / 28), width=2.5)
    ground = _ground(size, {"chalk": 1})
    prim = LayerBuilder("imprimatura", size)
    prim.paint(np.ones((size, size), np.float32), {"lead_white": 2, "raw_umber": 1, "chalk": 1}, 7,
               pvc=0.35)
    under = LayerBuilder("dead-colouring", size)
    top = LayerBuilder("paint", size)

    # background: dark, warmer and lighter towards the upper left (the light comes from there)
    glow = np.clip(1.2 - np.hypot(g.x / S - 0.25, g.y / S - 0.2) * 1.8, 0, 1)
    bgl = -0.6 + 0.5 * glow + 0.25 * strokes.at(0.9 + 0.6 * smooth_noise((size, size), rng, S / 6))
    top.paint(np.ones((size, size), np.float32), DARK_BG, 18 + 5 * strokes.at(0.9), light=bgl,
              highlight={"yellow_ochre": 2, "raw_umber": 1, "lead_white": 1}, shadow={"bone_black": 1})

    # stone ledge with a lit top face and a shadowed front
    ledge_top = g.box(-0.1, 0.80, 1.1, 0.86)
    ledge_front = g.box(-0.1, 0.86, 1.1, 1.1)
    stone = {"yellow_ochre": 2, "lead_white": 2, "raw_umber": 1}
    top.paint(mask(ledge_top), stone, 18 + 5 * strokes.at(0.02),
              light=0.2 + 0.4 * strokes.at(0.02), highlight={"lead_white": 2, "yellow_ochre": 1},
              shadow={"raw_umber": 1, "bone_black": 0.3})
    top.paint(mask(ledge_front), stone, 14 + 4 * strokes.at(0.03),
              light=-0.55 + 0.3 * strokes.at(0.05), highlight={"lead_white": 1}, shadow={"raw_umber": 2, "bone_black": 1})
    top.paint(mask(g.polyline([(0, 0.8), (1, 0.8)], max(1.2, S / 300))), {"lead_white": 2, "yellow_ochre": 1}, 22)

    # the pentimento: a tulip and a butterfly first painted at the upper left, then covered
    pent = [(0.18 + 0.04 * rng.standard_normal(), 0.22 + 0.04 * rng.standard_normal())]
    cx, cy = pent[0]
    under.paint(mask(g.ellipse(cx, cy, 0.07, 0.1, 0.3)), {"lead_white": 3, "vermilion": 1}, 25,
                light=0.8 * g.dome(cx, cy, 0.07, 0.1, angle=0.3) + 0.3 * strokes.at(0.3),
                highlight={"lead_white": 1}, shadow={"vermilion": 2, "red_lead": 1})
    under.paint(mask(g.polyline(bezier((cx, cy + 0.1), (cx + 0.05, cy + 0.3), (0.42, 0.55)), 3.0)),
                {"lead_white": 1, "azurite": 1, "lead_tin_yellow": 1}, 15)
    _butterfly(g, under, 0.12 + 0.03 * rng.standard_normal(), 0.5, 0.05, 0.4,
               ({"red_lead": 2, "lead_white": 1}, {"lead_white": 1, "bone_black": 0.2}))

    # vase: blue-and-white Delftware
    vx = 0.5 + 0.02 * rng.standard_normal()
    body = g.ellipse(vx, 0.70, 0.115, 0.105)
    neck = g.box(vx - 0.05, 0.53, vx + 0.05, 0.64, 0.01)
    lip = g.ellipse(vx, 0.535, 0.075, 0.018)
    foot = g.box(vx - 0.07, 0.78, vx + 0.07, 0.815, 0.005)
    vase = np.minimum(np.minimum(body, neck), np.minimum(lip, foot))
    vlight = 0.9 * g.dome(vx, 0.66, 0.13, 0.2) + 0.15 * strokes.at(1.57)
    top.paint(mask(vase), {"lead_white": 5, "smalt": 0.15}, 24, light=vlight,
              highlight={"lead_white": 1}, shadow={"lead_white": 1, "smalt": 1, "raw_umber": 1})
    lx, ly = g.local(vx, 0.70)
    band = (np.abs(np.sin(ly / g.u(0.012)) + 0.45 * np.sin(lx / g.u(0.02))) > 0.85) & (np.abs(ly) < g.u(0.07))
    deco = mask(vase + 1) * band * mask(g.box(vx - 0.2, 0.6, vx + 0.2, 0.8))
    top.paint(deco, {"smalt": 3, "lead_white": 0.5}, 20, light=0.6 * vlight, shadow={"smalt": 1, "bone_black": 0.3})
    top.paint(mask(g.ellipse(vx - 0.045, 0.665, 0.012, 0.03, 0.2)), {"lead_white": 1}, 30)  # window reflection

    # bouquet: stems, leaves, flowers
    rng_b = np.random.default_rng(rng.integers(2 ** 32))
    kinds = ["rose", "tulip", "white", "yellow", "pink_rose", "naples", "blue", "orange",
             "rose", "white", "orpiment", "tulip", "blue", "yellow", "pink_rose", "white", "rose"]
    centres = []
    for _ in range(400):
        if len(centres) == len(kinds):
            break
        fx, fy = vx + 0.32 * rng_b.uniform(-1, 1), 0.33 + 0.22 * rng_b.uniform(-1, 1)
        if ((fx - vx) / 0.34) ** 2 + ((fy - 0.33) / 0.24) ** 2 > 1:
            continue
        if all(math.hypot(fx - a, fy - b) > 0.075 for a, b in centres):
            centres.append((fx, fy))
    mouth = (vx, 0.54)
    for (fx, fy) in centres:
        mid = ((fx + mouth[0]) / 2 + 0.05 * rng_b.standard_normal(), (fy + mouth[1]) / 2)
        stem = g.polyline(bezier(mouth, mid, (fx, fy)), max(1.2, S / 220))
        top.paint(mask(stem), {"verdigris": 1, "yellow_ochre": 1, "lead_tin_yellow": 0.5}, 16)
    for _ in range(26):
        x0, y0 = vx + 0.3 * rng_b.uniform(-1, 1), 0.33 + 0.25 * rng_b.uniform(-0.6, 1)
        ang = rng_b.uniform(0, 2 * math.pi)
        _leaf(g, top, strokes, x0, y0, rng_b.uniform(0.07, 0.14), ang)
    order = rng_b.permutation(len(centres))
    for i in order:
        fx, fy = centres[i]
        kind = kinds[i % len(kinds)]
        r = rng_b.uniform(0.045, 0.07)
        rot = rng_b.uniform(-0.5, 0.5)
        # the dead-colouring: a lead-white sketch of the flower, a little larger
        under.paint(mask(g.ellipse(fx, fy, r * 1.1, r * 1.05, rot), soft=3.0), {"lead_white": 4, "chalk": 1}, 12)
        _flower(g, top, strokes, kind, fx, fy, r, rot, rng_b)

    # insects
    _butterfly(g, top, 0.82 + 0.03 * rng.standard_normal(), 0.2, 0.04, -0.3,
               ({"red_lead": 2, "yellow_ochre": 1}, {"bone_black": 2}))
    fly = (0.3 + 0.05 * rng.standard_normal(), 0.83)
    top.paint(mask(g.ellipse(*fly, 0.012, 0.007)), {"bone_black": 2, "raw_umber": 1}, 16)
    top.paint(mask(g.ellipse(fly[0] + 0.006, fly[1] - 0.006, 0.01, 0.004, -0.6)), {"lead_white": 1, "bone_black": 1}, 8)
    # a caterpillar on the ledge: a chain of small beads
    cx0 = 0.72 + 0.04 * rng.standard_normal()
    for k in range(9):
        bx, by = cx0 + k * 0.009, 0.825 + 0.004 * math.sin(k)
        top.paint(mask(g.ellipse(bx, by, 0.006, 0.006)), {"green_earth": 2, "lead_tin_yellow": 1}, 18,
                  light=g.dome(bx, by, 0.006, 0.006), highlight={"lead_tin_yellow": 1}, shadow={"raw_umber": 1})

    # 19th-century retouchings, mixed to match their surroundings
    for _ in range(4):
        rx0, ry0 = rng.uniform(0.05, 0.95), rng.uniform(0.05, 0.6)
        if min(math.hypot(rx0 - a, ry0 - b) for a, b in centres) < 0.09:
            continue
        blob = g.ellipse(rx0, ry0, rng.uniform(0.015, 0.04), rng.uniform(0.01, 0.03), rng.uniform(0, 3))
        blob = blob + 2.5 * smooth_noise((size, size), rng, 3)
        top.paint(mask(blob), {"bone_black": 3, "prussian_blue": 0.6, "zinc_white": 0.5, "barite": 0.5,
                               "chrome_yellow": 0.3}, 10)
    patch = g.box(0.6, 0.865, 0.66, 0.9) + 2 * smooth_noise((size, size), rng, 3)
    top.paint(mask(patch), {"zinc_white": 2, "yellow_ochre": 2, "chrome_yellow": 0.5, "raw_umber": 1}, 12)

    crack = craquelure((size, size), rng, cell_px=max(10.0, S / 16), width_px=0.55, keep=0.6)
    _apply_cracks([top, under, prim], crack)
    return _finish([top, under, prim, ground])


# --- the Madonna ----------------------------------------------------------------------------

def madonna(size: int, rng: np.random.Generator, view=None) -> list[Layer]:
    """An arched panel with a Madonna in a grotto; layers top first: paint, first design
    (pentimento and Zn underdrawing), lead-white priming, gesso."""
    g = Grid(size, view)
    S = g.S  # the whole canvas, in pixels (> size when the view is a detail)
    strokes = StrokeBank((size, size), rng, length=max(5.0, S / 40), width=2.0, fine=0.45)
    ground = _ground(size, {"gypsum": 1})
    prim = LayerBuilder("priming", size)
    prim.paint(np.ones((size, size), np.float32), {"lead_white": 1}, 6, pvc=0.4)
    first = LayerBuilder("first design", size)
    top = LayerBuilder("paint", size)
    j = lambda s=0.01: s * rng.standard_normal()  # noqa: E731

    # grotto: dark rocks with fissures; openings to the sky at the top
    rock_tex = smooth_noise((size, size), rng, S / 25)
    rock_l = -0.35 + 0.35 * rock_tex + 0.25 * strokes.at(0.8 + rock_tex)
    top.paint(np.ones((size, size), np.float32), {"raw_umber": 2, "bone_black": 1, "green_earth": 1, "verdigris": 0.4},
              16 + 4 * strokes.at(0.8), light=rock_l, highlight={"yellow_ochre": 1, "lead_white": 1, "green_earth": 1},
              shadow={"bone_black": 2, "raw_umber": 1})
    fiss = np.abs(smooth_noise((size, size), rng, S / 40)) < 0.035
    top.paint(fiss.astype(np.float32) * 0.9, {"bone_black": 2, "raw_umber": 1}, 16)
    for sx, sy in ((0.2 + j(), 0.24 + j()), (0.8 + j(), 0.26 + j())):
        sky = g.ellipse(sx, sy, 0.1, 0.15) + g.u(0.02) * smooth_noise((size, size), rng, S / 30)
        top.paint(mask(sky, 1.5), {"lead_white": 3, "azurite": 1, "ultramarine": 0.3}, 14,
                  light=(sy - g.y / S) * 4 + 0.2 * strokes.at(0.1),
                  highlight={"lead_white": 1}, shadow={"azurite": 1, "lead_white": 1})
    # the arched frame of the panel (black edge outside the arch)
    arch = np.minimum(g.ellipse(0.5, 0.5, 0.48, 0.48), g.box(0.02, 0.5, 0.98, 0.99))
    top.paint(1 - mask(arch, 1.0), {"bone_black": 1}, 20)

    # the first design: an angel at the right and a kneeling figure, drawn in a zinc-bearing
    # material, with the angel's head and robe laid in lead white and azurite
    ax, ay = 0.72 + j(), 0.42 + j()
    first.paint(mask(g.ellipse(ax, ay, 0.05, 0.065), 2.0), FLESH, 20,
                light=g.dome(ax, ay, 0.05, 0.065), highlight={"lead_white": 1}, shadow=FLESH_SHADOW)
    robe = g.polar(ax + 0.02, ay + 0.2, lambda t: 0.13 + 0.03 * np.cos(3 * t))
    first.paint(mask(robe, 2.0), {"lead_white": 2, "azurite": 2}, 22, light=0.5 * strokes.at(1.2),
                highlight={"lead_white": 1}, shadow={"azurite": 1})
    drawing = {"zinc_white": 1, "bone_black": 1}
    curves = [((ax - 0.05, ay), (ax - 0.1, ay + 0.15), (ax - 0.02, ay + 0.33)),
              ((ax + 0.05, ay), (ax + 0.14, ay + 0.15), (ax + 0.08, ay + 0.33)),
              ((ax - 0.07, ay + 0.12), (ax - 0.2, ay + 0.1), (ax - 0.26, ay + 0.02)),
              ((0.3, 0.6), (0.22, 0.7), (0.3, 0.85)), ((0.3, 0.6), (0.4, 0.72), (0.36, 0.86)),
              ((0.26, 0.52), (0.3, 0.45), (0.36, 0.52)), ((0.26, 0.52), (0.3, 0.6), (0.36, 0.52))]
    for c in curves:
        pts = bezier(*c) + 0.004 * rng.standard_normal((24, 2))
        first.paint(mask(g.polyline(pts, max(1.3, S / 350))), drawing, 6, pvc=0.5)
    for k in range(40):   # hatching of the shadows, a draughtsman's habit
        hx, hy = 0.22 + 0.12 * rng.random(), 0.6 + 0.2 * rng.random()
        first.paint(mask(g.polyline([(hx, hy), (hx + 0.02, hy - 0.025)], 1.0)), drawing, 5, pvc=0.5)

    # the Madonna: blue mantle, red dress, golden lining, head and veil, hands
    mx, my = 0.5 + j(0.005), 0.3 + j(0.005)
    mantle = g.polar(mx, my + 0.38, lambda t: 0.26 + 0.05 * np.cos(2 * t) + 0.03 * np.sin(5 * t))
    mantle = np.maximum(mantle, -(g.y - g.u(my + 0.08)))
    dress = g.ellipse(mx, my + 0.17, 0.07, 0.08)
    folds_angle = np.arctan2(g.y - g.u(my), g.x - g.u(mx))
    folds = np.sin((folds_angle * 9) + 2 * smooth_noise((size, size), rng, S / 12))
    mlight = 0.5 * folds + 0.3 * g.dome(mx - 0.05, my + 0.35, 0.3, 0.35) + 0.25 * strokes.at(folds_angle)
    top.paint(mask(mantle, 1.5), {"ultramarine": 2, "azurite": 1, "lead_white": 0.8}, 26 + 6 * folds,
              light=mlight, highlight={"lead_white": 2, "ultramarine": 1}, shadow={"ultramarine": 1, "bone_black": 0.6})
    top.paint(mask(g.polyline(bezier((mx - 0.2, my + 0.6), (mx - 0.08, my + 0.3), (mx - 0.06, my + 0.1)), 3), 1.2),
              {"lead_tin_yellow": 2, "yellow_ochre": 1}, 20, light=0.4 * strokes.at(1.2),
              highlight={"lead_tin_yellow": 1, "lead_white": 1}, shadow={"yellow_ochre": 1, "raw_umber": 1})
    top.paint(mask(dress, 1.2), {"vermilion": 2, "red_lake": 1}, 24, light=0.6 * folds * 0.7 + 0.2 * strokes.at(1.5),
              highlight={"vermilion": 1, "lead_white": 0.6}, shadow={"red_lake": 2, "bone_black": 0.4})
    head = g.ellipse(mx, my, 0.055, 0.072, 0.15)
    hlight = g.dome(mx, my, 0.055, 0.072, angle=0.15)
    veil = g.ellipse(mx, my - 0.01, 0.075, 0.095, 0.15)
    top.paint(mask(veil, 2.0), {"raw_umber": 2, "yellow_ochre": 1}, 18, light=0.5 * hlight + 0.3 * strokes.at(1.4),
              highlight={"yellow_ochre": 1, "lead_tin_yellow": 1}, shadow={"raw_umber": 1, "bone_black": 1})
    top.paint(mask(head, 2.5), FLESH, 20, light=hlight, highlight={"lead_white": 1}, shadow=FLESH_SHADOW)  # sfumato
    _face(g, top, mx, my, 0.055, 0.072, 0.15, S)
    for hxy in ((mx + 0.02, my + 0.2), (mx + 0.12, my + 0.28)):
        top.paint(mask(g.ellipse(*hxy, 0.03, 0.02, 0.5), 2.0), FLESH, 20,
                  light=g.dome(*hxy, 0.03, 0.02, angle=0.5), highlight={"lead_white": 1}, shadow=FLESH_SHADOW)
    # the children (the Baptist at the left, Christ at the lower right)
    for (cx, cy, s) in ((0.27 + j(), 0.66 + j(), 0.045), (0.68 + j(), 0.76 + j(), 0.05)):
        top.paint(mask(g.ellipse(cx, cy + 2.4 * s, 1.4 * s, 2.0 * s), 2.5), FLESH, 22,
                  light=g.dome(cx, cy + 2.4 * s, 1.4 * s, 2.0 * s), highlight={"lead_white": 1}, shadow=FLESH_SHADOW)
        top.paint(mask(g.ellipse(cx, cy, s, 1.15 * s), 2.5), FLESH, 22, light=g.dome(cx, cy, s, 1.15 * s),
                  highlight={"lead_white": 1}, shadow=FLESH_SHADOW)
        top.paint(mask(g.ellipse(cx, cy - 0.8 * s, 1.05 * s, 0.5 * s), 1.5), {"raw_umber": 2, "yellow_ochre": 2}, 18,
                  light=0.5 * strokes.at(0.2), highlight={"yellow_ochre": 1, "lead_tin_yellow": 1}, shadow={"raw_umber": 1})
        _face(g, top, cx, cy, s, 1.15 * s, 0.0, S)
    # plants in the foreground
    rng_p = np.random.default_rng(rng.integers(2 ** 32))
    for _ in range(22):
        x0 = rng_p.uniform(0.05, 0.95)
        ang = -math.pi / 2 + rng_p.uniform(-0.7, 0.7)
        _leaf(g, top, strokes, x0, 0.98, rng_p.uniform(0.06, 0.14), ang, width=0.25)
    crack = craquelure((size, size), rng, cell_px=max(10.0, S / 12), width_px=0.5, keep=0.6)
    _apply_cracks([top, first, prim], crack, depth=0.7)
    return _finish([top, first, prim, ground])


def _face(g: Grid, lb: LayerBuilder, cx, cy, rx, ry, rot, S):
    """Eyes, brows, nose shadow and mouth on a head ellipse (fractions of size)."""
    w = max(1.0, S / 400)
    c, s = math.cos(rot), math.sin(rot)
    at = lambda u, v: (cx + u * rx * c - v * ry * s, cy + u * rx * s + v * ry * c)  # noqa: E731
    for side in (-1, 1):
        ex, ey = at(0.38 * side, -0.08)
        lb.paint(mask(g.ellipse(ex, ey, 0.2 * rx, 0.09 * ry, rot), 0.8), {"lead_white": 3, "bone_black": 0.1}, 14)
        lb.paint(mask(g.ellipse(ex, ey, 0.08 * rx, 0.08 * ry, rot), 0.7), {"raw_umber": 2, "bone_black": 1}, 14)
        bx, by = at(0.38 * side, -0.27)
        lb.paint(mask(g.polyline(bezier(at(0.15 * side, -0.24), (bx, by - 0.03 * ry), at(0.62 * side, -0.2)), 1.6 * w)),
                 {"raw_umber": 2, "red_ochre": 1}, 14)
    nose = g.polyline(bezier(at(0.06, -0.05), at(0.12, 0.2), at(0.02, 0.3)), 1.6 * w)
    lb.paint(mask(nose, 1.5), FLESH_SHADOW, 16)
    mouth = g.ellipse(*at(0.0, 0.55), 0.22 * rx, 0.06 * ry, rot)
    lb.paint(mask(mouth, 1.0), {"vermilion": 2, "red_lake": 1, "lead_white": 1}, 16)


# --- the portrait -------------------------------------------------------------------------

def portrait(size: int, rng: np.random.Generator, view=None) -> list[Layer]:
    """A woman in a black lace mantilla; layers top first: paint, the man's portrait
    painted first, red-brown priming, chalk ground."""
    g = Grid(size, view)
    S = g.S  # the whole canvas, in pixels (> size when the view is a detail)
    strokes = StrokeBank((size, size), rng, length=max(8.0, S / 18), width=3.5, fine=0.5)
    ground = _ground(size, {"chalk": 1})
    prim = LayerBuilder("priming", size)
    prim.paint(np.ones((size, size), np.float32), {"red_ochre": 2, "lead_white": 1, "chalk": 1}, 10, pvc=0.4)
    man = LayerBuilder("earlier portrait", size)
    top = LayerBuilder("paint", size)
    j = lambda s=0.01: s * rng.standard_normal()  # noqa: E731

    # the man, three-quarter view, head higher and to the left; white cravat, dark coat
    hx, hy = 0.4 + j(), 0.25 + j()
    man.paint(mask(g.polar(hx + 0.05, 0.85, lambda t: 0.4 + 0.05 * np.cos(2 * t)), 2),
              {"bone_black": 2, "azurite": 1, "lead_white": 0.3}, 25, light=0.5 * strokes.at(1.3),
              highlight={"lead_white": 1, "azurite": 1}, shadow={"bone_black": 1})
    man.paint(mask(g.ellipse(hx + 0.02, hy + 0.2, 0.07, 0.06), 2), {"lead_white": 1}, 28,
              light=0.5 * strokes.at(0.3), shadow={"lead_white": 1, "bone_black": 0.3})
    man.paint(mask(g.ellipse(hx, hy, 0.085, 0.11, -0.2), 2), FLESH, 26,
              light=g.dome(hx, hy, 0.085, 0.11, angle=-0.2), highlight={"lead_white": 1}, shadow=FLESH_SHADOW)
    man.paint(mask(g.ellipse(hx - 0.02, hy - 0.07, 0.095, 0.07, -0.2), 2), {"lead_white": 2, "bone_black": 0.2}, 24,
              light=0.6 * strokes.at(0.1), highlight={"lead_white": 1}, shadow={"lead_white": 1, "bone_black": 0.5})

    # dark background, lighter (greenish grey) behind the head at the right
    glow = np.clip(1.1 - np.hypot(g.x / S - 0.62, g.y / S - 0.3) * 2.2, 0, 1)
    top.paint(np.ones((size, size), np.float32), {"bone_black": 2, "raw_umber": 2, "lead_white": 0.3}, 12 + 3 * strokes.at(0.7),
              light=-0.5 + 0.9 * glow + 0.3 * strokes.at(0.7 + 0.8 * smooth_noise((size, size), rng, S / 5)),
              highlight={"lead_white": 2, "raw_umber": 1, "azurite": 0.6, "yellow_ochre": 0.5}, shadow={"bone_black": 1})

    fx, fy = 0.55 + j(0.005), 0.34 + j(0.005)
    rot = 0.1
    # pink silk dress: shoulders and bodice, broad loaded strokes and a sheen
    dress = np.maximum(g.ellipse(fx - 0.01, 1.0, 0.46, 0.42), g.u(0.55) - g.y)
    sheen = smooth_noise((size, size), rng, S / 14)
    top.paint(mask(dress, 1.5), {"lead_white": 4, "vermilion": 1, "red_lake": 0.6}, 28 + 8 * strokes.at(1.0),
              light=0.6 * sheen + 0.45 * strokes.at(1.0 + 0.5 * sheen), highlight={"lead_white": 2},
              shadow={"red_lake": 1, "vermilion": 1, "raw_umber": 0.5})
    # neck and décolleté
    neck = np.minimum(g.box(fx - 0.06, fy + 0.08, fx + 0.065, 0.62, 0.02),
                      g.ellipse(fx, 0.64, 0.15, 0.08))
    top.paint(mask(neck, 2.0), FLESH, 22, light=0.8 * g.dome(fx + 0.02, 0.6, 0.16, 0.2) + 0.2 * strokes.at(0.2),
              highlight={"lead_white": 1}, shadow=FLESH_SHADOW)
    # hair, head
    top.paint(mask(g.ellipse(fx - 0.005, fy - 0.04, 0.125, 0.15, rot), 1.5), {"raw_umber": 2, "bone_black": 1}, 20,
              light=0.5 * strokes.at(0.4 + rot) + 0.2, highlight={"yellow_ochre": 1, "raw_umber": 1}, shadow={"bone_black": 1})
    hlight = g.dome(fx, fy, 0.1, 0.135, angle=rot)
    face = g.ellipse(fx, fy + 0.005, 0.1, 0.135, rot)
    top.paint(mask(face, 1.5), FLESH, 20, light=hlight, highlight={"lead_white": 1}, shadow=FLESH_SHADOW)
    cheeks = sum(np.exp(-(((g.x / S - (fx + d)) ** 2 + (g.y / S - fy - 0.03) ** 2) / 0.0005)) for d in (-0.05, 0.05))
    top.paint(cheeks.astype(np.float32) * 0.45 * mask(face), {"vermilion": 1, "lead_white": 3}, 20)
    _face(g, top, fx, fy + 0.005, 0.1, 0.135, rot, S)
    # black lace mantilla over the hair, falling on the shoulders: a diamond net with
    # floral motifs and a scalloped border, opaque where the lace is doubled over the hair
    lx, ly = g.local(fx, fy, rot)
    p = g.u(0.011)
    net = (np.abs(np.sin((lx + ly) / p)) < 0.22) | (np.abs(np.sin((lx - ly) / p)) < 0.22)
    motifs = smooth_noise((size, size), rng, max(1.5, S / 170)) > 1.1
    scallop = g.u(0.01) * np.cos(np.arctan2(ly, lx) * 50)       # scalloped outer border
    veil = np.maximum(g.ellipse(fx, fy + 0.1, 0.23, 0.3, rot) + scallop, -face - g.u(0.012))
    veil = np.maximum(veil, -neck - g.u(0.01))
    veil = np.maximum(veil, g.y - g.u(0.8))
    cap = mask(np.maximum(g.ellipse(fx, fy - 0.08, 0.14, 0.12, rot), -face - g.u(0.008)), 1.0)
    lace = mask(veil, 1.0) * np.maximum(np.maximum(net, motifs), cap > 0.5)
    top.paint(lace.astype(np.float32), {"bone_black": 3, "raw_umber": 0.5}, 18,
              light=0.4 * strokes.at(0.2), highlight={"bone_black": 1, "lead_white": 0.6}, shadow={"bone_black": 1})
    # a red flower (vermilion) pinned in the mantilla
    rx_, ry_ = fx + 0.11, fy - 0.12
    top.paint(mask(g.polar(rx_, ry_, lambda t: 0.022 * (0.7 + 0.3 * np.abs(np.cos(3 * t))))), {"vermilion": 2, "lead_white": 0.5}, 24,
              light=g.dome(rx_, ry_, 0.022, 0.022), highlight={"lead_white": 1}, shadow={"red_lake": 1})
    crack = craquelure((size, size), rng, cell_px=max(10.0, S / 14), width_px=0.45, keep=0.6)
    _apply_cracks([top, man, prim], crack, depth=0.45)
    return _finish([top, man, prim, ground])


SCENES = {"still_life": still_life, "madonna": madonna, "portrait": portrait}
