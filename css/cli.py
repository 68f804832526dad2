"""Shared command-line plumbing: user errors print one line and exit with status 2
(docs/contracts.md#errors)."""

from __future__ import annotations

import sys
from typing import Callable

from css.errors import CSSError


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    try:
        return int(main(argv) or 0)
    except CSSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
