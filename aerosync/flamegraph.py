"""A small, dependency-free SVG flame graph renderer for collapsed stacks.

Why our own: py-spy's SVG covers one recording as a whole, but AeroSync needs one flame
graph per simulated CPU (and a merged one) cut from a single `--format raw` recording,
and a report directory must open in any browser without extra packages.  The output
follows Brendan Gregg's flamegraph.pl conventions so it reads the same way:

  * the root ("all") at the bottom, callees stacked above their callers;
  * a frame's width is proportional to its sample count; siblings sorted by name
    (a flame graph, not a flame chart: the x axis is not time);
  * every frame is one ``<rect>`` with a ``<title>`` tooltip "name (N samples, P%)";
  * colours are deterministic, picked from a warm palette by a hash of the function
    name, so the same function has the same colour in every graph; lock-wait frames
    (spin_wait, yield_wait, sleep_wait) use a blue palette so contention stands out;
  * a label is drawn, truncated with "..", only where at least a few characters fit.

Input: ``{stack: count}`` where a stack is a tuple of frame names, root first
(`parse_collapsed` reads the text form "a;b;c 12").
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

__all__ = [
    "Node",
    "LOCK_WAIT_FUNCS",
    "build_tree",
    "parse_collapsed",
    "frame_color",
    "render_svg",
    "write_svg",
]

LOCK_WAIT_FUNCS = ("spin_wait", "yield_wait", "sleep_wait")

FRAME_H = 16           # px per stack level
FONT_SIZE = 11
CHAR_W = 6.6           # approximate px per character at FONT_SIZE (monospace-ish estimate)
PAD_X = 10
PAD_TOP = 36           # room for the title
PAD_BOTTOM = 10


@dataclass
class Node:
    """One frame of the merged call tree: `value` samples passed through it."""

    name: str
    value: int = 0
    children: dict[str, Node] = field(default_factory=dict)

    def child(self, name: str) -> Node:
        node = self.children.get(name)
        if node is None:
            node = self.children[name] = Node(name)
        return node

    def depth(self) -> int:
        return 1 + max((c.depth() for c in self.children.values()), default=0)

    def count(self) -> int:
        return 1 + sum(c.count() for c in self.children.values())


def parse_collapsed(lines: Iterable[str]) -> dict[tuple[str, ...], int]:
    """Collapsed-stack text ("root;...;leaf COUNT" per line) into {stack: count}.

    The count is the last space-separated token; frames are split on ";".  Lines that
    do not end in an integer are ignored.  Process frames with ";" in their command
    line are not handled here (see aerosync.profile.split_raw_line).
    """
    out: dict[tuple[str, ...], int] = {}
    for line in lines:
        line = line.rstrip("\n")
        stack_text, _, n = line.rpartition(" ")
        if not stack_text or not n.isdigit():
            continue
        stack = tuple(stack_text.split(";"))
        out[stack] = out.get(stack, 0) + int(n)
    return out


def build_tree(stacks: Mapping[tuple[str, ...], int], root: str = "all") -> Node:
    """Merge stacks into one call tree rooted at `root`."""
    top = Node(root)
    for stack, n in stacks.items():
        if n <= 0:
            continue
        top.value += n
        node = top
        for frame in stack:
            node = node.child(frame)
            node.value += n
    return top


def _func_name(frame: str) -> str:
    """'func (file:line)' -> 'func' (the part the colour is keyed on)."""
    return frame.split(" (", 1)[0]


def frame_color(frame: str) -> str:
    """Deterministic fill colour of a frame: warm by name hash, blue for lock waits."""
    name = _func_name(frame)
    h = zlib.crc32(name.encode())
    v1, v2, v3 = (h & 0xFF) / 255, ((h >> 8) & 0xFF) / 255, ((h >> 16) & 0xFF) / 255
    if name in LOCK_WAIT_FUNCS:
        return f"rgb({int(60 + 40 * v1)},{int(110 + 60 * v2)},{int(200 + 55 * v3)})"
    if name == "all":
        return "rgb(200,200,200)"
    return f"rgb({int(205 + 50 * v3)},{int(230 * v1)},{int(55 * v2)})"


def _label(name: str, width: float) -> str:
    fit = int((width - 6) / CHAR_W)
    if fit < 3:
        return ""
    return name if len(name) <= fit else name[: fit - 2] + ".."


def _frames(node: Node, x: float, level: int, scale: float, min_width: float,
            out: list[tuple[Node, float, float, int]]) -> None:
    w = node.value * scale
    if w < min_width:
        return
    out.append((node, x, w, level))
    cx = x
    for name in sorted(node.children):
        child = node.children[name]
        _frames(child, cx, level + 1, scale, min_width, out)
        cx += child.value * scale


def render_svg(stacks: Mapping[tuple[str, ...], int], title: str = "Flame graph", width: int = 1200,
               min_width: float = 0.1, subtitle: str = "") -> str:
    """The SVG text of a flame graph of `stacks`.

    Frames narrower than `min_width` px are omitted (with their callees), as
    flamegraph.pl's --minwidth; pass 0 to draw every frame.
    """
    tree = build_tree(stacks)
    total = max(tree.value, 1)
    depth = tree.depth()
    scale = (width - 2 * PAD_X) / total
    frames: list[tuple[Node, float, float, int]] = []
    _frames(tree, PAD_X, 0, scale, min_width, frames)
    height = PAD_TOP + depth * FRAME_H + PAD_BOTTOM
    out = [
        '<?xml version="1.0" standalone="no"?>',
        f'<svg version="1.1" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'xmlns="http://www.w3.org/2000/svg" style="background-color:#f8f8f0">',
        "<style>text { font-family: monospace; font-size: " + str(FONT_SIZE) + "px; fill: #000; } "
        ".t { font-size: 15px; } .s { fill: #555; }</style>",
        f'<text class="t" x="{width / 2:.0f}" y="18" text-anchor="middle">{escape(title)}</text>',
        f'<text class="s" x="{width / 2:.0f}" y="31" text-anchor="middle">'
        f"{escape(subtitle or f'{tree.value:,} samples')}</text>",
    ]
    for node, x, w, level in frames:
        y = height - PAD_BOTTOM - (level + 1) * FRAME_H
        pct = 100.0 * node.value / total
        tip = f"{node.name} ({node.value:,} samples, {pct:.2f}%)"
        label = _label(node.name, w)
        out.append(f'<g><title>{escape(tip)}</title>'
                   f'<rect x="{x:.2f}" y="{y}" width="{w:.2f}" height="{FRAME_H - 1}" '
                   f'fill="{frame_color(node.name)}" rx="2" ry="2"/>'
                   + (f'<text x="{x + 3:.2f}" y="{y + FRAME_H - 4}">{escape(label)}</text>' if label else "")
                   + "</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_svg(path: str, stacks: Mapping[tuple[str, ...], int], title: str, **kw: object) -> None:
    """Render and write a flame graph; an empty profile still gives a valid (root-only) SVG."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(render_svg(stacks, title, **kw))  # type: ignore[arg-type]
