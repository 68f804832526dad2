"""``python -m css.evaluate RUN_OR_CHECKPOINT [--steps 0-5] [key.sub=value ...]``

Recomputes the test metrics of finished steps: from a run folder (every finished step, or
``--steps``), from a css step checkpoint (``RUN/step3/model.pt``), or from a reference LGKD/PLOP/MiB
checkpoint (then ``--config`` and ``--steps`` say which task and step it belongs to). Prints the
bg/old/new/all/hIoU table; ``--json FILE`` also writes the numbers. Overrides change the
evaluation only (e.g. ``data.root=/elsewhere data.eval_mode=whole``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from css import checkpoint as ck
from css.cli import run_cli
from css.config import apply_overrides, from_dict, load_config
from css.errors import CSSError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m css.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", help="run folder, css step checkpoint (model.pt) or reference checkpoint")
    p.add_argument("--config", help="config of the run (needed for reference checkpoints)")
    p.add_argument("--steps", help="steps to evaluate (default: every finished step / the checkpoint's step)")
    p.add_argument("--json", metavar="FILE", help="also write the metrics to FILE")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value")
    return p


def _targets(args) -> tuple[object, list[tuple[int, Path, bool]]]:
    """(config, [(step, checkpoint path, is_css_checkpoint)])."""
    from css.controller import parse_steps

    target = Path(args.target)
    if target.is_dir():
        cfg_file = target / "config.yaml"
        if not cfg_file.is_file():
            raise CSSError(f"{target} is not a run folder (no config.yaml); pass a run folder or a checkpoint")
        cfg = load_config(args.config or cfg_file, args.overrides)
        done = sorted(int(p.parent.name[4:]) for p in target.glob("step*/model.pt"))
        if not done:
            raise CSSError(f"run folder {target} has no finished step (no step*/model.pt)")
        steps = parse_steps(args.steps, max(done) + 1) if args.steps else done
        missing = [s for s in steps if s not in done]
        if missing:
            raise CSSError(f"steps {missing} of {target} are not finished; finished: {done}")
        return cfg, [(s, ck.model_path(target, s), True) for s in steps]
    obj = ck.load_file(target)
    if isinstance(obj, dict) and obj.get("format") == ck.FORMAT:
        if args.config:
            cfg = load_config(args.config, args.overrides)
        else:
            cfg = from_dict(apply_overrides(obj["config"], args.overrides), source=str(target))
        return cfg, [(int(obj["step"]), target, True)]
    if not args.config or args.steps is None or not args.steps.isdigit():
        raise CSSError(f"{target} is not a css checkpoint: give --config (the task and model it was trained "
                       f"with) and --steps N (the step it finished)")
    return load_config(args.config, args.overrides), [(int(args.steps), target, False)]


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cfg, targets = _targets(args)
    from css.controller import step_summary
    from css.distributed import init_distributed
    from css.handover import load_step
    from css.methods import resolve_method
    from css.modality import get_modality
    from css.reports import format_table

    env = init_distributed(cfg.device)
    modality = get_modality(cfg.modality)
    cfg.method = resolve_method(cfg.method, dataset=cfg.data.dataset, protocol=cfg.protocol, modality=cfg.modality)
    task = modality.task(cfg)
    keys = ("bg", "old", "new", "all", "hiou", "oa")
    rows, out = [], []
    for step, path, ours in targets:
        if step >= task.num_steps:
            raise CSSError(f"step {step} is outside task {task.name} (steps 0..{task.num_steps - 1})")
        if ours:
            model, _ = load_step(modality, cfg, task, step, path, env)
        else:
            model = modality.build_model(cfg, task.classes_per_step(step), env)
            modality.import_weights(model, str(path))
        model.to(env.device)
        test_set = modality.dataset(cfg, task, step, "test")
        cm = modality.evaluate(model, test_set, cfg, task, step, env)
        summary = step_summary(cm, task, task.num_classes(0))
        iou = [float(v) if p else None for v, p in zip(cm.iou().tolist(), cm.present().tolist())]
        rows.append({"run": f"step {step}", **{k: summary[k] for k in keys}})
        out.append({"step": step, "checkpoint": str(path), "num_test": getattr(cm, "samples", len(test_set)),
                    "summary": {k: summary[k] for k in keys}, "iou": iou,
                    "class_names": task.channel_names(step)})
    if env.is_main:
        print(format_table(rows))
        if args.json:
            from css.reports import dumps_json
            from css.utils import atomic_write_text

            atomic_write_text(args.json, dumps_json(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
