"""The values of ``protocol`` and what each one runs (docs/protocol.md#reference-and-fixed,
docs/protocol.md#mib-conventions).

- ``reference``: the published LGKD/PLOP code, its quirks included;
- ``fixed``: those quirks corrected;
- ``mib``: the reference code with MiB's own data and metric conventions on top (images only).
"""

from __future__ import annotations

PROTOCOLS = ("reference", "fixed", "mib")


def quirks(protocol: str) -> str:
    """The quirk set ``protocol`` runs with: "fixed", or "reference" (``mib`` keeps the reference's
    code quirks; it changes only the label conventions and the regulariser weights)."""
    return "fixed" if protocol == "fixed" else "reference"
