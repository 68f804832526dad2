"""``python -m css.predict --checkpoint RUN/step5/model.pt --images IMG_OR_FOLDER [...] [--out DIR]``
``python -m css.predict --checkpoint RUN/step2/model.pt --clouds FILES_OR_FOLDERS [--scenes ...] [--png] --out DIR``

Segments inputs with a css step checkpoint; the checkpoint's modality writes the outputs:

- images (css/image/predict.py): per image, ``<stem>_pred.png`` (a palette PNG of dataset label ids,
  the format of VOC's SegmentationClass files) and ``<stem>_overlay.png`` (the prediction blended
  over the image), each image evaluated whole, at its own resolution;
- point clouds (css/pointcloud/predict.py, docs/pointcloud-evaluation.md#predictions): coloured PLY
  files of the prediction, the ground truth and the errors per cloud.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from css import checkpoint as ck
from css.cli import run_cli
from css.config.build import from_dict
from css.config.files import apply_overrides
from css.controller.handover import load_step
from css.distributed import DistEnv, pick_device
from css.errors import CSSError
from css.modality.registry import get_modality, modality_names


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m css.predict", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a css step checkpoint (RUN/step{t}/model.pt)")
    inputs = p.add_mutually_exclusive_group(required=True)
    p.add_argument("--out", default="predictions", help="output folder (default: predictions)")
    for name in modality_names():
        get_modality(name).add_predict_arguments(inputs, p)
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="e.g. device=cpu")
    return p


@torch.no_grad()
def load_for_prediction(cfg, saved: dict, checkpoint: str):
    """(env, task, step, model in eval mode) of a step checkpoint, on one process, for either modality."""
    env = DistEnv(rank=0, world_size=1, local_rank=0, device=pick_device(cfg.device, 0))
    modality = get_modality(cfg.modality)
    task = modality.task(cfg)
    step = int(saved["step"])
    model, _ = load_step(modality, cfg, task, step, checkpoint, env, saved=saved)
    model.to(env.device).eval()
    return env, task, step, model


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not Path(args.checkpoint).is_file():
        raise CSSError(f"checkpoint {args.checkpoint} does not exist; pass RUN/step<T>/model.pt of a finished step")
    saved = ck.load_step_model(args.checkpoint)
    cfg = from_dict(apply_overrides(saved["config"], args.overrides), source=args.checkpoint)
    modality = get_modality(cfg.modality)
    given = next(m for m in map(get_modality, modality_names())
                 if any(getattr(args, flag[2:]) is not None for flag in m.predict_flags))
    if given.name != modality.name:
        raise CSSError(f"{args.checkpoint} is a {cfg.modality} model but {'/'.join(given.predict_flags)} was given; "
                       f"use {' or '.join(modality.predict_flags)}")
    return modality.predict(args, cfg, lambda: load_for_prediction(cfg, saved, args.checkpoint))


if __name__ == "__main__":
    sys.exit(run_cli(main))
