"""Fast parsing of whitespace-separated numeric text (the S3DIS ``X Y Z R G B`` files).

The real S3DIS release has ~270 M such rows, so a Python loop per line (or ``np.loadtxt``,
~1.3 s per million rows) is too slow. :func:`parse_plain` parses plain decimals (``-12.345``) with
numpy over the raw bytes: each token's digits form an exact integer mantissa, divided by a power of
ten; both are exact doubles, so the IEEE division gives the correctly rounded value, the same
number ``float(token)`` gives. Anything else (exponents, NUL bytes, wrong column counts) makes it
return None, and :func:`parse_lines` then checks the text line by line with ``float`` to find,
report or repair the bad rows (docs/pointcloud-data.md#s3dis).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

_CHUNK_BYTES = 1 << 22      # parse ~4 MB at a time: bounded memory, cache-friendly temporaries
_MAX_DIGITS = 15            # mantissas below 10^15 < 2^53 are exact doubles

_WS = np.zeros(256, bool)
_WS[[9, 10, 13, 32]] = True
_ALLOWED = _WS.copy()
_ALLOWED[[ord(c) for c in "0123456789.-+"]] = True
_POW10 = 10.0 ** np.arange(_MAX_DIGITS + 1)


def _parse_chunk(u: np.ndarray, ncols: int) -> np.ndarray | None:
    if not _ALLOWED[u].all():
        return None
    ws = _WS[u]
    body = ~ws
    start = body.copy()
    start[1:] &= ws[:-1]
    end = body.copy()
    end[:-1] &= ws[1:]
    starts, ends = np.flatnonzero(start), np.flatnonzero(end)
    if len(starts) == 0:
        return np.zeros((0, ncols))
    # every non-empty line must hold exactly ncols tokens
    line_of_token = np.searchsorted(np.flatnonzero(u == 10), starts)
    per_line = np.bincount(line_of_token)
    if np.any((per_line != 0) & (per_line != ncols)):
        return None
    length = ends - starts + 1
    if length.max() > _MAX_DIGITS + 2:
        return None
    # Read all tokens at once, one character position k at a time (tokens are short), Horner
    # style: the mantissa is the token's digits read as an integer, frac the digits after the dot.
    mantissa = np.zeros(len(starts), np.int64)
    frac = np.zeros(len(starts), np.int64)
    ndig = np.zeros(len(starts), np.int64)
    seen_dot = np.zeros(len(starts), bool)
    first = u[starts]
    negative = first == 45
    ok = True
    for k in range(int(length.max())):
        live = length > k
        c = u[np.minimum(starts + k, len(u) - 1)]
        digit = live & (c >= 48) & (c <= 57)
        dot = live & (c == 46)
        sign = live & ((c == 45) | (c == 43))
        if k > 0 and sign.any():
            ok = False
            break
        if np.any(dot & seen_dot):
            ok = False
            break
        mantissa = np.where(digit, mantissa * 10 + (c.astype(np.int64) - 48), mantissa)
        ndig += digit
        frac += digit & seen_dot
        seen_dot |= dot
    if not ok or np.any(ndig < 1) or np.any(ndig > _MAX_DIGITS):
        return None
    values = mantissa.astype(np.float64) / _POW10[frac]
    values[negative] *= -1.0
    return values.reshape(-1, ncols)


def parse_plain(data: bytes, ncols: int) -> np.ndarray | None:
    """(n, ncols) float64 of text made only of plain decimals, ncols per non-blank line; None
    when any part of the text is not of that form."""
    parts, begin = [], 0
    while begin < len(data):
        stop = data.find(b"\n", min(begin + _CHUNK_BYTES, len(data)) - 1)
        stop = len(data) if stop < 0 else stop + 1
        values = _parse_chunk(np.frombuffer(data, np.uint8, stop - begin, begin), ncols)
        if values is None:
            return None
        parts.append(values)
        begin = stop
    return np.concatenate(parts) if parts else np.zeros((0, ncols))


def check_row(tokens: list[bytes], ncols: int, check: Callable[[list[float]], str | None] | None) -> str | None:
    """Why a split line is not a valid row, or None."""
    if len(tokens) != ncols:
        return f"holds {len(tokens)} values, expected {ncols}"
    try:
        row = [float(t) for t in tokens]
    except ValueError:
        bad = next(t for t in tokens if not _is_float(t))
        return f"{bad.decode('latin-1')!r} is not a number"
    if not all(math.isfinite(v) for v in row):
        return "holds a NaN or infinite value"
    return check(row) if check else None


def _is_float(token: bytes) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def parse_lines(data: bytes, ncols: int, *, check: Callable[[list[float]], str | None] | None = None,
                on_bad: Callable[[int, bytes, str], bytes | None]) -> np.ndarray:
    """Parse line by line. A bad line (wrong count, not a number, NUL bytes, ``check`` failing)
    goes to ``on_bad(line_number, line, reason)``, which raises, returns a valid replacement line,
    or returns None to drop the row (the caller records what it did)."""
    rows: list[list[float]] = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        reason = "holds NUL bytes" if b"\x00" in line else None
        tokens = line.split()
        if reason is None:
            if not tokens:
                continue
            reason = check_row(tokens, ncols, check)
            if reason is None:
                rows.append([float(t) for t in tokens])
                continue
        fixed = on_bad(number, line, reason)
        if fixed is not None:
            if check_row(fixed.split(), ncols, check) is not None:
                raise ValueError(f"line {number}: the replacement {fixed!r} is not a valid row either")
            rows.append([float(t) for t in fixed.split()])
    return np.asarray(rows, dtype=np.float64).reshape(-1, ncols)
