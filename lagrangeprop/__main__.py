"""``python -m lagrangeprop``: the worked example and the commands check, draw, source (see :mod:`.cli`)."""

from __future__ import annotations

import sys

from .cli import blog, blog_derivative, demo, main

__all__ = ["main", "demo", "blog", "blog_derivative"]

if __name__ == "__main__":
    sys.exit(main())
