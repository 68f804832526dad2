"""``python -m css.train --modality image --config configs/voc_15-1.yaml [key.sub=value ...]``

Runs every step of the config's task (or ``--steps 2-5``) in one command, for one process or under
``torchrun --nproc_per_node N -m css.train ...``. Re-running the same command resumes the run:
finished steps are skipped and an interrupted step continues from its last finished epoch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from css.cli import run_cli
from css.config.build import load_config
from css.errors import CheckpointError, ConfigError
from css.modality.registry import modality_names


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m css.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", "-c", required=True, help="YAML config file (may inherit with 'base:')")
    p.add_argument("--modality", choices=modality_names(), help="overrides the config's modality")
    p.add_argument("--steps", help="steps to run: all (default), one step '3', a range '2-5' or a list '0,2'")
    p.add_argument("--init-step0", metavar="PATH",
                   help="start from this step-0 checkpoint (reference LGKD/PLOP/MiB file or a css model.pt): "
                        "step 0 is evaluated instead of trained")
    p.add_argument("--redo-from", type=int, metavar="T",
                   help="retrain step T and later with this config (e.g. a lower train.lr after a divergence), "
                        "keeping the finished steps before T (docs/controller.md#redo-from)")
    p.add_argument("--replace-step0", action="store_true",
                   help="with --init-step0 on a run whose step 0 is finished: replace that step 0 (it and the "
                        "steps trained from it are moved aside as *.replaced and redone)")
    p.add_argument("--verbose", "-v", action="store_true", help="print per-iteration losses")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides, e.g. train.lr=0.01")
    return p


# What --init-step0 takes (css/image/modality.py, css/pointcloud/modality.py import_weights), for the
# messages of a path that is wrong.
INIT_STEP0_FILES = ("runs/NAME/step0/model.pt or a released step-0 file (the LGKD models linked from "
                    "https://github.com/Ze-Yang/LGKD, the 3DPC-CISS end_base_model_checkpoint.tar from "
                    "https://github.com/leolyj/3DPC-CISS)")


def check_init_step0(path: str | None) -> None:
    """The ``--init-step0`` file(s) must exist and be readable checkpoints before a run folder is made
    (docs/contracts.md#errors). Point clouds also take 'BACKBONE,CLASSIFIER', the 3DPC-CISS file pair
    (docs/pointcloud-model.md#weights): each part is checked."""
    if not path:
        return
    from css import checkpoint as ck

    parts = [path] if Path(path).is_file() else [p for p in str(path).split(",") if p] or [path]
    for part in parts:
        where = f"--init-step0 {path}" + (f" ({part})" if part != path else "")
        if Path(part).is_dir():
            raise CheckpointError(f"{where}: is a folder, not a checkpoint file; give the step-0 checkpoint "
                                  f"itself (e.g. runs/NAME/step0/model.pt)")
        if not Path(part).is_file():
            raise CheckpointError(f"{where}: file not found; check the path (relative paths start from the "
                                  f"current directory), e.g. {INIT_STEP0_FILES}")
        # Read here, not first in the importer: there the flag is unknown and the message could only
        # say the file is unreadable. peek maps the tensors, so even a large file costs little.
        try:
            ck.peek(part)
        except CheckpointError as exc:
            raise CheckpointError(
                f"{where}: cannot read checkpoint {part}: {exc}. --init-step0 takes a torch checkpoint of a "
                f"step-0 model: {INIT_STEP0_FILES}. Fix: download the file again (an interrupted download or "
                f"copy leaves it truncated), or point --init-step0 at the right file") from exc


def main(argv: list[str] | None = None) -> int:
    # Intermixed: overrides may come before, between or after the options
    # (python -m css.train --config f.yaml --steps 0 train.lr=0.1 seed=1).
    args = parser().parse_intermixed_args(argv)
    from css.controller.start import select_steps
    from css.controller.steps import run_from_config

    select_steps(args.steps)  # a bad --steps (e.g. the backwards range 2-0) stops before anything is built
    check_init_step0(args.init_step0)
    if args.replace_step0 and not args.init_step0:
        raise ConfigError("--replace-step0 replaces a finished step 0 with the model of --init-step0 PATH; give "
                          "--init-step0 too, or leave out --replace-step0")
    if args.replace_step0 and args.redo_from is not None:
        raise ConfigError("--replace-step0 redoes every step from step 0 on; leave out --redo-from")
    overrides = list(args.overrides)
    if args.modality:
        overrides.append(f"modality={args.modality}")
    cfg = load_config(args.config, overrides)
    run_from_config(cfg, steps=args.steps, init_step0=args.init_step0, verbose=args.verbose,
                    redo_from=args.redo_from, replace_step0=args.replace_step0)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
