"""Write the synthetic demo assets (room RGB-D + sneaker) into examples/assets/ or --out.

    python examples/make_assets.py [--out DIR] [--width 1280 --height 704] [--points 250000]

Deterministic and fast (numpy ray casting); see objvid.testing.assets for what is drawn.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from objvid.testing.assets import write_assets


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "assets")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=704)
    parser.add_argument("--points", type=int, default=250_000, help="points sampled on the sneaker")
    args = parser.parse_args()
    paths = write_assets(args.out, args.width, args.height, args.points)
    for name, path in paths.items():
        print(f"{name:<11} {path}")


if __name__ == "__main__":
    main()
