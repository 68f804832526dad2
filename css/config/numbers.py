"""Number values of config keys (docs/config.md#numbers).

PyYAML follows YAML 1.1, which reads a float only when it has a dot and a signed exponent: ``1e-3``,
``1e6``, ``2E5`` and ``1.5e3`` reach the config as strings, while ``1.0e-3`` is a float. A number key
therefore also takes a string written in scientific notation. NaN and infinity (``.nan``, ``.inf``,
``-.inf`` as YAML floats, or the strings ``nan``, ``inf``) are refused for every number key: no
learning rate, weight or count is meaningful there, and a NaN compares false with every bound
check that follows.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any

from css.errors import ConfigError

# A number with an exponent: 1e-3, -1E+4, 2.5e3, .5e3 (YAML 1.1 leaves these as strings).
_SCIENTIFIC = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+")
_NON_FINITE = {"nan", ".nan", "inf", ".inf", "infinity"}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _refuse_non_finite(value: Any, where: str) -> None:
    text = value.strip().lower().lstrip("+-") if isinstance(value, str) else None
    if (isinstance(value, float) and not math.isfinite(value)) or text in _NON_FINITE:
        raise ConfigError(f"{where}: {value!r} is not a finite number; NaN and infinity are refused for "
                          f"number keys, give a finite value (e.g. 0.001 or 1e-3)")


def to_float(value: Any, where: str) -> float:
    """A float key: an int or float, or a string in scientific notation (``1e-3``); finite."""
    _refuse_non_finite(value, where)
    if _is_number(value):
        return float(value)
    if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
        return float(value.strip())
    raise ConfigError(f"{where}: expected a number, got {value!r} (e.g. 0.01, 1e-3)")


def to_int(value: Any, where: str) -> int:
    """An int key: an int, or a whole number in scientific notation (``1e3`` -> 1000, also the
    float YAML makes of ``1.0e+3``); ``1.5`` or ``1e-3`` is refused."""
    _refuse_non_finite(value, where)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    exact: Decimal | None = None
    if isinstance(value, float):
        exact = Decimal(value)
    elif isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
        exact = Decimal(value.strip())  # exact: 12345678901234567e0 stays that integer
    if exact is not None and exact == exact.to_integral_value():
        return int(exact)
    raise ConfigError(f"{where}: expected an integer, got {value!r} (a whole number, e.g. 30 or 1e3)")
