"""``python -m css.predict --checkpoint RUN/step5/model.pt --images IMG_OR_FOLDER [...] [--out DIR]``
``python -m css.predict --checkpoint RUN/step2/model.pt --clouds FILES_OR_FOLDERS [--scenes ...] [--png] --out DIR``

Point-cloud models: coloured PLY files of the prediction, the ground truth and the errors per cloud
(css/pointcloud/predict.py, docs/pointcloud-evaluation.md#predictions).

Segments images with a css step checkpoint and writes, per image, ``<stem>_pred.png`` (a palette
PNG of dataset label ids, the format of VOC's SegmentationClass files) and ``<stem>_overlay.png``
(the prediction blended over the image). Images are evaluated whole, at their own resolution.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from css import checkpoint as ck
from css.cli import run_cli
from css.config import apply_overrides, from_dict
from css.errors import CSSError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def palette(n: int = 256) -> np.ndarray:
    """The usual segmentation colour map: label bits spread over the high bits of R, G and B."""
    out = np.zeros((n, 3), dtype=np.uint8)
    for label in range(n):
        c, r, g, b = label, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        out[label] = (r, g, b)
    return out


def collect_images(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise CSSError(f"folder {p} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise CSSError(f"image {p} does not exist")
    return files


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m css.predict", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a css step checkpoint (RUN/step{t}/model.pt)")
    inputs = p.add_mutually_exclusive_group(required=True)
    inputs.add_argument("--images", nargs="+", help="image files and/or folders of images (image models)")
    inputs.add_argument("--clouds", nargs="+", help="point clouds (point-cloud models): prepared split files "
                        "(.h5), scans (.npz, .ply, .las, .laz) and/or folders of them")
    inputs.add_argument("--split", choices=("train", "test"),
                        help="point clouds: the prepared split of the checkpoint's config (data.dataset, data.root)")
    p.add_argument("--out", default="predictions", help="output folder (default: predictions)")
    p.add_argument("--alpha", type=float, default=0.5, help="images: overlay opacity of the prediction (0..1)")
    from css.pointcloud.predict import add_arguments

    add_arguments(p)
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="e.g. device=cpu")
    return p


@torch.no_grad()
def load_for_prediction(cfg, saved: dict, checkpoint: str):
    """(env, task, step, model in eval mode) of a step checkpoint, on one process, for either modality."""
    from css.distributed import DistEnv, pick_device
    from css.handover import load_step
    from css.modality import get_modality

    env = DistEnv(rank=0, world_size=1, local_rank=0, device=pick_device(cfg.device, 0))
    modality = get_modality(cfg.modality)
    task = modality.task(cfg)
    step = int(saved["step"])
    model, _ = load_step(modality, cfg, task, step, checkpoint, env, saved=saved)
    model.to(env.device).eval()
    return env, task, step, model


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from PIL import Image

    from css.image.transforms import eval_transform

    if not Path(args.checkpoint).is_file():
        raise CSSError(f"checkpoint {args.checkpoint} does not exist; pass RUN/step<T>/model.pt of a finished step")
    saved = ck.load_step_model(args.checkpoint)
    cfg = from_dict(apply_overrides(saved["config"], args.overrides), source=args.checkpoint)
    clouds = args.images is None
    if cfg.modality != ("pointcloud" if clouds else "image"):
        given = "--clouds/--split" if clouds else "--images"
        wanted = "--images" if cfg.modality == "image" else "--clouds or --split"
        raise CSSError(f"{args.checkpoint} is a {cfg.modality} model but {given} was given; use {wanted}")
    if clouds:
        from css.pointcloud.predict import run

        return run(args, cfg, saved)
    env, task, step, model = load_for_prediction(cfg, saved, args.checkpoint)
    # channel -> dataset label id, so the PNGs use the dataset's own ids (docs/tasks.md#channels)
    to_label = np.array(task.order(step), dtype=np.int64)
    colours = palette()
    tf = eval_transform(mode="whole")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = collect_images(args.images)
    for path in files:
        try:
            image = Image.open(path).convert("RGB")
        except OSError as exc:
            raise CSSError(f"cannot read image {path}: {exc}") from exc
        x = tf(image)
        pred = model(x.unsqueeze(0).to(env.device)).logits.argmax(1)[0].cpu().numpy()
        labels = to_label[pred].clip(0, 255).astype(np.uint8)
        pred_png = Image.fromarray(labels, mode="P")
        pred_png.putpalette(colours.flatten().tolist())
        pred_png.save(out / f"{path.stem}_pred.png")
        blend = (1 - args.alpha) * np.asarray(image, dtype=np.float32) + args.alpha * colours[labels]
        Image.fromarray(blend.clip(0, 255).astype(np.uint8)).save(out / f"{path.stem}_overlay.png")
    print(f"wrote {2 * len(files)} PNG files for {len(files)} image(s) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
