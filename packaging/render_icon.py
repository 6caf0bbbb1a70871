"""Render VM-Desk's icon (packaging/debian/vmdesk.svg) to PNGs with Pillow, the same pixels on
Linux and macOS, with no SVG library: the macOS app's iconset (packed by `iconutil`) and the
Debian package's hicolor PNGs.

Why not rsvg-convert, qlmanage or a browser: none is installed by scripts/setup.sh (or by a
Mac out of the box: qlmanage renders through QuickLook and its output varies with the macOS
release); Pillow is (the dev extra), and its output depends only on Pillow's version. The
price: it draws only what the icon uses — ``rect`` (with ``rx``) and ``path`` made of M, H,
V, L and Z, filled with a plain colour — and refuses anything else loudly, so a richer icon
needs a real renderer (`rsvg-convert -w N -h N`, from librsvg) rather than a wrong picture.

    python render_icon.py iconset SVG DIR   # icon_16x16.png ... icon_512x512@2x.png
    python render_icon.py hicolor SVG DIR   # DIR/NxN/apps/vmdesk.png for the Linux theme
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from PIL import Image, ImageColor, ImageDraw

SVG_NS = "{http://www.w3.org/2000/svg}"
SUPERSAMPLE = 8  # drawn this much larger, then scaled down: smooth edges...
MAX_DRAWN = 4096  # ...on a canvas of at most this many pixels a side (64 MiB)
# What `iconutil -c icns` wants in NAME.iconset: each size at 1x and 2x.
ICONSET = {
    f"icon_{size}x{size}{suffix}.png": size * scale
    for size in (16, 32, 128, 256, 512)
    for suffix, scale in (("", 1), ("@2x", 2))
}
HICOLOR = (16, 24, 32, 48, 64, 128, 256, 512)
_TOKEN = re.compile(r"[MmHhVvLlZz]|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_DRAWN = {"rect", "path"}
_ALLOWED_ATTRIBUTES = {"x", "y", "width", "height", "rx", "fill", "d"}


class Unsupported(SystemExit):
    def __init__(self, what: str) -> None:
        super().__init__(f"render_icon: the icon uses {what}, which this renderer does not "
                         "draw; render it with rsvg-convert (librsvg) instead")  # fmt: skip


def _polygons(d: str) -> list[list[tuple[float, float]]]:
    """The closed outlines of an SVG path made of M, H, V, L and Z (absolute or relative)."""
    tokens = _TOKEN.findall(d)
    if "".join(tokens) != re.sub(r"[\s,]+", "", d):
        raise Unsupported(f"path data {d!r}")
    shapes: list[list[tuple[float, float]]] = []
    x = y = 0.0
    command, i = "", 0
    while i < len(tokens):
        if tokens[i].isalpha():
            command, i = tokens[i], i + 1
            if command in "Zz":
                if not shapes:
                    raise Unsupported(f"path data {d!r}")
                x, y = shapes[-1][0]
                continue
        relative, op = command.islower(), command.upper()
        if op in ("M", "L"):
            dx, dy = float(tokens[i]), float(tokens[i + 1])
            x, y = (x + dx, y + dy) if relative else (dx, dy)
            i += 2
            if op == "M":
                shapes.append([])
                command = "l" if relative else "L"  # pairs after a move are lines
        elif op in ("H", "V"):
            value = float(tokens[i])
            i += 1
            if op == "H":
                x = x + value if relative else value
            else:
                y = y + value if relative else value
        else:
            raise Unsupported(f"path data {d!r}")
        shapes[-1].append((x, y))
    return shapes


def render(svg: Path, size: int) -> Image.Image:
    """The icon as a square RGBA image, ``size`` pixels a side."""
    root = ET.parse(svg).getroot()
    _, _, width, height = (float(v) for v in root.attrib["viewBox"].split())
    big = size * max(1, min(SUPERSAMPLE, MAX_DRAWN // size))
    scale_x, scale_y = big / width, big / height
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    for element in root:
        tag = element.tag.removeprefix(SVG_NS)
        odd = set(element.attrib) - _ALLOWED_ATTRIBUTES
        if tag not in _DRAWN or odd or len(element):
            raise Unsupported(f"<{tag}> {sorted(odd)}" if odd else f"<{tag}>")
        try:
            fill = ImageColor.getrgb(element.attrib["fill"])
        except (KeyError, ValueError):
            raise Unsupported(f"<{tag}> without a plain fill colour") from None
        if tag == "rect":
            a = element.attrib
            x0, y0 = float(a["x"]) * scale_x, float(a["y"]) * scale_y
            x1 = x0 + float(a["width"]) * scale_x - 1
            y1 = y0 + float(a["height"]) * scale_y - 1
            radius = float(a.get("rx", 0)) * scale_x
            draw.rounded_rectangle((x0, y0, x1, y1), radius=radius, fill=fill)
        else:
            for shape in _polygons(element.attrib["d"]):
                draw.polygon([(px * scale_x, py * scale_y) for px, py in shape], fill=fill)
    # Scaled with premultiplied alpha, so transparent pixels lend no colour to the edges.
    return image.convert("RGBa").resize((size, size), Image.Resampling.LANCZOS).convert("RGBA")


def write(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", optimize=False)  # no time or text chunks: reproducible


def main(argv: list[str]) -> None:
    if len(argv) != 3 or argv[0] not in ("iconset", "hicolor"):
        sys.exit("usage: render_icon.py iconset|hicolor SVG DIR")
    kind, svg, out = argv[0], Path(argv[1]), Path(argv[2])
    if kind == "iconset":
        for name, pixels in ICONSET.items():
            write(render(svg, pixels), out / name)
    else:
        for pixels in HICOLOR:
            write(render(svg, pixels), out / f"{pixels}x{pixels}" / "apps" / "vmdesk.png")


if __name__ == "__main__":
    main(sys.argv[1:])
