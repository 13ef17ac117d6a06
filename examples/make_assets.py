"""Write the synthetic demo assets (room RGB-D + sneaker) into examples/assets/ or --out.

    python examples/make_assets.py [--out DIR] [--width 1280 --height 704] [--points 250000] [--multiview]

With --multiview also the multi-view assets (objvid.testing.assets_multiview): views.npz (two posed RGB-D
views of the room in upstream GEN3C's multi-view format), views/view_NN.png and walk.mp4, for ``--views``.

Deterministic and fast (numpy ray casting); see objvid.testing.assets for what is drawn.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from objvid.testing.assets import write_assets
from objvid.testing.assets_multiview import write_multiview_assets


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "assets")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=704)
    parser.add_argument("--points", type=int, default=250_000, help="points sampled on the sneaker")
    parser.add_argument(
        "--multiview", action="store_true", help="also views.npz, views/ and walk.mp4 (--views)"
    )
    args = parser.parse_args()
    paths = write_assets(args.out, args.width, args.height, args.points)
    if args.multiview:
        paths.update(write_multiview_assets(args.out, args.width, args.height))
    for name, path in paths.items():
        print(f"{name:<11} {path}")


if __name__ == "__main__":
    main()
