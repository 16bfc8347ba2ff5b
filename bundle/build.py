"""Build the Claude Desktop bundle's folder from a wheel, ready for ``mcpb pack``.

    python bundle/build.py dist/claude_mcp_bridge-0.1.0-py3-none-any.whl build/bundle
    npx @anthropic-ai/mcpb pack build/bundle dist/claude-mcp-bridge-0.1.0.mcpb

The folder holds manifest.json (server type ``uv``: Claude Desktop provides Python and
installs the dependencies), server/main.py, a pyproject.toml whose one dependency is the
wheel carried in wheels/ (so the bundle runs exactly the build it was made from, published
or not), and a generated icon.png. The wheel's version must be the manifest's.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import struct
import sys
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ICON_SIZE = 512  # what mcpb validate recommends for Claude Desktop

PYPROJECT = """\
# Read by `uv run` when Claude Desktop starts the bundle (manifest.json, server.type "uv").
[project]
name = "claude-mcp-bridge-bundle"
version = "{version}"
requires-python = ">=3.11"
dependencies = ["claude-mcp-bridge=={version}"]

[tool.uv]
package = false

[tool.uv.sources]
claude-mcp-bridge = {{ path = "wheels/{wheel}" }}
"""

MCPBIGNORE = """\
.venv/
__pycache__/
*.pyc
uv.lock
"""


def build(wheel: Path, out: Path) -> Path:
    manifest = json.loads((HERE / "manifest.json").read_text(encoding="utf-8"))
    version = wheel.name.split("-")[1]
    if manifest["version"] != version:
        sys.exit(f"bundle/manifest.json has version {manifest['version']} but the wheel "
                 f"{wheel.name} is {version}: set them equal (claude_mcp_bridge/__init__.py)")
    if out.exists():
        shutil.rmtree(out)
    (out / "server").mkdir(parents=True)
    (out / "wheels").mkdir()
    shutil.copy2(HERE / "manifest.json", out / "manifest.json")
    shutil.copy2(HERE / "server" / "main.py", out / "server" / "main.py")
    shutil.copy2(wheel, out / "wheels" / wheel.name)
    (out / "pyproject.toml").write_text(PYPROJECT.format(version=version, wheel=wheel.name),
                                        encoding="utf-8")
    (out / ".mcpbignore").write_text(MCPBIGNORE, encoding="utf-8")
    (out / "icon.png").write_bytes(icon_png(ICON_SIZE))
    return out


def icon_png(size: int) -> bytes:
    """A white bridge (arch, deck, two piers) on a rounded terracotta square, as RGBA PNG."""
    background, white, clear = (217, 119, 87, 255), (255, 255, 255, 255), (0, 0, 0, 0)
    s = size / 512
    rows = []
    for y in range(size):
        row = bytearray([0])  # filter type: none
        for x in range(size):
            if not _in_rounded_square(x, y, size, radius=96 * s):
                pixel = clear
            elif _in_bridge(x / s, y / s):
                pixel = white
            else:
                pixel = background
            row += bytes(pixel)
        rows.append(bytes(row))
    return _png(size, size, b"".join(rows))


def _in_rounded_square(x: float, y: float, size: int, radius: float) -> bool:
    cx = min(max(x, radius), size - 1 - radius)
    cy = min(max(y, radius), size - 1 - radius)
    return math.hypot(x - cx, y - cy) <= radius


def _in_bridge(x: float, y: float) -> bool:
    """In 512-unit coordinates: a deck, an arch under it and two piers."""
    deck = 96 <= x <= 416 and 232 <= y <= 264
    r = math.hypot(x - 256, y - 400)
    arch = 108 <= r <= 140 and y <= 400
    piers = (112 <= x <= 144 or 368 <= x <= 400) and 232 <= y <= 400
    return deck or arch or piers


def _png(width: int, height: int, raw: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="the claude_mcp_bridge wheel to carry")
    parser.add_argument("out", type=Path, help="folder to write (replaced if it exists)")
    args = parser.parse_args(argv)
    print(build(args.wheel, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
