"""One log format for every daemon: one line per event on stderr."""

from __future__ import annotations

import logging
import os


def setup(name: str) -> None:
    level = logging.DEBUG if os.environ.get("PBOTVM_DEBUG") else logging.INFO
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s.%(msecs)03d {name}[%(process)d] %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
    )
