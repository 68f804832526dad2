"""The image half of ``python -m css.predict`` (css/predict.py parses the arguments): per image,
``<stem>_pred.png`` (a palette PNG of dataset label ids) and ``<stem>_overlay.png`` (the prediction
blended over the image). Images are evaluated whole, at their own resolution."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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


def run(args, load) -> int:
    """Predict ``args.images`` with the model ``load()`` gives ((env, task, step, model))."""
    from PIL import Image

    from css.image.transforms import eval_transform

    env, task, step, model = load()
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
