"""`python -m gateway.simulator --host 127.0.0.1 --port 8100` (port 0 picks a free one)."""

from __future__ import annotations

import argparse

from gateway.simulator.server import run
from gateway.simulator.shapes import SHAPES


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway.simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--record-limit", type=int, default=200, help="request bodies kept for /_sim/requests")
    parser.add_argument("--shape", choices=SHAPES, default="openai", help="whose chunk bytes chat streams copy")
    args = parser.parse_args()
    run(args.host, args.port, record_limit=args.record_limit, shape=args.shape)


if __name__ == "__main__":
    main()
