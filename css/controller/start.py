"""What the controller checks and sets up before the steps it runs (docs/controller.md#command-line):
the --steps selection, checked before anything is built; the logging of a run; and the --init-step0
check of a method with a parameter regulariser, before a run folder is made.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from css import checkpoint as ck
from css.distributed import DistEnv
from css.errors import CheckpointError, ConfigError


def select_steps(text: str | None) -> set[int] | None:
    """The steps '2-5', '3' or '0,2' name (None: all), syntax checked; a range must not run
    backwards ('2-0' selects nothing). The CLI calls it before anything is built."""
    if text is None or text == "":
        return None
    out: set[int] = set()
    try:
        for part in str(text).split(","):
            if "-" in part:
                a, b = (int(v) for v in part.split("-", 1))
                if a > b:
                    raise ConfigError(f"--steps {text!r}: the range {part.strip()} runs backwards and selects no "
                                      f"step; write the lower step first, e.g. --steps {b}-{a}")
                out.update(range(a, b + 1))
            else:
                out.add(int(part))
    except ValueError:
        raise ConfigError(f"--steps {text!r}: write a step, a range or a list, e.g. 2-5, 3 or 0,2") from None
    return out


def parse_steps(text: str | None, num_steps: int) -> list[int]:
    """'2-5', '3', '0,2' or None (all) -> sorted list of steps, checked against the task."""
    out = select_steps(text)
    if out is None:
        return list(range(num_steps))
    bad = [s for s in sorted(out) if s < 0 or s >= num_steps]
    if bad:
        raise ConfigError(f"--steps {text!r}: step(s) {bad} outside this task's steps 0..{num_steps - 1}")
    return sorted(out)


def setup_logging(run_dir: Path | None, env: DistEnv, verbose: bool = False) -> None:
    logger = logging.getLogger("css")
    logger.handlers.clear()
    logger.propagate = False
    if not env.is_main:
        logger.setLevel(logging.WARNING)
        logger.addHandler(logging.StreamHandler(sys.stderr))
        return
    logger.setLevel(logging.DEBUG)
    console = logging.StreamHandler(sys.stdout)
    console.setLevel(logging.DEBUG if verbose else logging.INFO)
    console.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(console)
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(run_dir / "log.txt")
        fh.setLevel(logging.DEBUG)
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(fh)


def imported_regularizer(method, init_step0: str | None) -> dict | None:
    """Before a run folder is made: a method with a parameter regulariser (EWC, RW, PI) needs the
    importance that step 0 estimates while it trains (docs/protocol-2d-losses.md#regularisers). An imported
    step-0 model carries it only when it is a css checkpoint trained with the same regulariser;
    then that state is returned (None: no regulariser, or no import), else the import is refused
    (docs/faults.md#run-folder-and-command-line)."""
    m = method
    if not init_step0 or m.regularizer in (None, "none") or (m.reg_importance or 0) <= 0:
        return None
    kind = str(m.regularizer).lower()
    found = "a file that is not a css step checkpoint"
    path = init_step0
    if "," not in path:
        try:
            obj = ck.peek(path)
        except CheckpointError:
            obj = {}
        if obj.get("format") == ck.FORMAT:
            state = obj.get("regularizer")
            if isinstance(state, dict) and state.get("kind") == kind:
                return {k: v for k, v in state.items()}
            found = (f"a css checkpoint trained with regulariser {state.get('kind')!r}" if isinstance(state, dict)
                     else "a css checkpoint trained without a regulariser")
    raise ConfigError(
        f"--init-step0 {path}: method {m.name!r} trains step 1 and later with {m.reg_importance:g} x "
        f"{kind.upper()}, whose parameter importance is estimated while step 0 trains, and the imported file "
        f"is {found}, so step 1 would train without the penalty. Fix: train step 0 here (leave out "
        f"--init-step0), import the step0/model.pt of a css run of a method with regulariser {kind}, or pick a "
        f"method without a parameter regulariser")
