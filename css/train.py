"""``python -m css.train --modality image --config configs/voc_15-1.yaml [key.sub=value ...]``

Runs every step of the config's task (or ``--steps 2-5``) in one command, for one process or under
``torchrun --nproc_per_node N -m css.train ...``. Re-running the same command resumes the run:
finished steps are skipped and an interrupted step continues from its last finished epoch.
"""

from __future__ import annotations

import argparse
import sys

from css.cli import run_cli
from css.config import load_config


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m css.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", "-c", required=True, help="YAML config file (may inherit with 'base:')")
    p.add_argument("--modality", choices=("image", "pointcloud"), help="overrides the config's modality")
    p.add_argument("--steps", help="steps to run: all (default), one step '3', a range '2-5' or a list '0,2'")
    p.add_argument("--init-step0", metavar="PATH",
                   help="start from this step-0 checkpoint (reference LGKD/PLOP/MiB file or a css model.pt): "
                        "step 0 is evaluated instead of trained")
    p.add_argument("--verbose", "-v", action="store_true", help="print per-iteration losses")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides, e.g. train.lr=0.01")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    overrides = list(args.overrides)
    if args.modality:
        overrides.append(f"modality={args.modality}")
    cfg = load_config(args.config, overrides)
    from css.controller import run_from_config

    run_from_config(cfg, steps=args.steps, init_step0=args.init_step0, verbose=args.verbose)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
