"""``python -m css.evaluate RUN_OR_CHECKPOINT [--steps 0-5] [--write] [key.sub=value ...]``

Recomputes the test metrics of finished steps: from a run folder (every finished step, or
``--steps``), from a css step checkpoint (``RUN/step3/model.pt``), or from a reference LGKD/PLOP/MiB
checkpoint (then ``--config`` and ``--steps`` say which task and step it belongs to). Prints the
bg/old/new/all/hIoU table; ``--json FILE`` also writes the numbers. Overrides change the
evaluation only (e.g. ``data.root=/elsewhere data.eval_mode=whole``).

``--metric full`` (point clouds): the full-coverage metric, every point of every test block
(docs/pointcloud-evaluation.md#full-coverage), instead of the sampled one; with ``--write`` both are
recomputed and recorded, the full figures under their own name.

``--write`` (a run folder): rebuild ``results.json``, ``results.csv`` and ``miou.png`` from the step
checkpoints, e.g. after results.json was lost or corrupted (docs/controller.md#recovery); it takes
the folder's lock, so it does not write while a training run uses the folder. A run folder whose
``config.yaml`` is missing, unreadable or no longer matches the checkpoints is evaluated with the
config its last checkpoint records (with a warning).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from css import checkpoint as ck
from css.cli import run_cli
from css.config import identity
from css.config.build import from_dict, load_config
from css.config.files import apply_overrides
from css.errors import CSSError
from css.modality.registry import get_modality

log = logging.getLogger("css")

METRIC_CHOICES = ("sampled", "full")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m css.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", help="run folder, css step checkpoint (model.pt) or reference checkpoint")
    p.add_argument("--config", help="config of the run (needed for reference checkpoints)")
    p.add_argument("--steps", help="steps to evaluate (default: every finished step / the checkpoint's step)")
    p.add_argument("--json", metavar="FILE", help="also write the metrics to FILE")
    p.add_argument("--write", action="store_true",
                   help="rebuild the run folder's results.json / results.csv from its checkpoints")
    p.add_argument("--metric", choices=METRIC_CHOICES, default="sampled",
                   help="sampled (default): the reference's random points per block; full (point clouds): every "
                        "point of every test block; with --write both are recomputed and recorded")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value")
    return p


def _targets(args) -> tuple[object, list[tuple[int, Path, bool]]]:
    """(config, [(step, checkpoint path, is_css_checkpoint)])."""
    from css.controller.start import parse_steps

    target = Path(args.target)
    if args.write and not target.is_dir():
        raise CSSError(f"--write rebuilds the results of a run folder; {target} is not a folder (pass RUN, "
                       f"not RUN/stepT/model.pt)")
    if target.is_dir():
        cfg_file = target / "config.yaml"
        done = sorted(int(p.parent.name[4:]) for p in target.glob("step*/model.pt") if p.parent.name[4:].isdigit())
        if not cfg_file.is_file() and not done:
            raise CSSError(f"{target} is not a run folder (no config.yaml); pass a run folder or a checkpoint")
        cfg = load_config(args.config, args.overrides) if args.config else _run_config(target, done, args.overrides)
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


def _run_config(run: Path, done: list[int], overrides: list[str]):
    """The config of a run folder: config.yaml, or the last checkpoint's config when config.yaml is
    missing, unreadable or does not match it (docs/controller.md#config-identity)."""
    saved, problem = identity.read_config_yaml(run / "config.yaml")
    recorded = ck.peek(ck.model_path(run, done[-1])).get("config") if done else None
    if saved is not None and (recorded is None or not identity.changes(recorded, saved)):
        return load_config(run / "config.yaml", overrides)
    if recorded is None:
        raise CSSError(f"{problem}, and no checkpoint records a config; restore it or pass --config FILE")
    log.warning("%s; evaluating with the config %s records", problem or f"{run / 'config.yaml'} does not match "
                f"the checkpoints", ck.model_path(run, done[-1]))
    return from_dict(apply_overrides(recorded, overrides), source=str(ck.model_path(run, done[-1])))


def write_run_results(run: Path, cfg, task, env, evaluated: dict) -> None:
    """``--write``: results.json / results.csv / miou.png from the checkpoints of ``run``;
    ``evaluated``: {step: (confusion matrix, num_test, checkpoint dict)}."""
    from css.results import recording
    from css.results.metadata import build_metadata

    done = sorted(int(p.parent.name[4:]) for p in run.glob("step*/model.pt") if p.parent.name[4:].isdigit())
    configs = {s: evaluated[s][2].get("config") if s in evaluated else ck.peek(ck.model_path(run, s)).get("config")
               for s in done}
    entries, metadata = recording.read_entries(run)
    entries = [e for e in entries if e["step"] in done and e["step"] not in evaluated]
    for step, (cm, num_test, saved) in sorted(evaluated.items()):
        entries.append(recording.step_entry(cm, task, step, num_test, configs[step], configs[done[0]])[0])
    if metadata is None:
        last = ck.peek(ck.model_path(run, done[-1]))
        metadata = build_metadata(last.get("config") or cfg.to_dict(), protocol=cfg.protocol, seed=cfg.seed,
                                  world_size=int(last.get("world_size") or env.world_size),
                                  global_batch=cfg.train.batch_size, precision=cfg.train.precision)
    recording.write_results(run, entries, task, metadata, method=cfg.method.name,
                            metric=get_modality(cfg.modality).metric_name(cfg))
    print(f"wrote {run / 'results.json'}, {run / 'results.csv'} (steps {sorted(e['step'] for e in entries)})")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cfg, targets = _targets(args)
    if args.metric == "full":
        if get_modality(cfg.modality).metric is None:
            raise CSSError(f"--metric full scores every point of point-cloud blocks; {args.target} is a "
                           f"{cfg.modality} run: drop --metric full")
        if get_modality(cfg.modality).metric_name(cfg) == "scene":
            raise CSSError(f"--metric full scores every point of the test blocks; {args.target} runs on whole scenes, "
                           f"whose metric already scores every point of every scene: drop --metric full")
        # --write records both metrics (the sampled one stays the run's main figure)
        cfg.data.full_coverage = True
    lock = None
    if args.write:
        from css.controller.runlock import RunLock
        from css.distributed import init_distributed, run_on_main

        lock = RunLock(args.target)
        run_on_main(init_distributed(cfg.device, cfg.train.dist_timeout), lock.acquire)
    try:
        return _evaluate(args, cfg, targets)
    finally:
        if lock is not None:
            lock.release()


def _evaluate(args, cfg, targets) -> int:
    from css.controller.handover import load_step
    from css.distributed import init_distributed
    from css.methods.resolve import resolve_method
    from css.results.stepdata import keep_step_data
    from css.results.summary import STEP_METRICS, class_ious, step_summary
    from css.results.tables import format_table

    env = init_distributed(cfg.device, cfg.train.dist_timeout)
    modality = get_modality(cfg.modality)
    # what the default evaluates: the modality's own metric ("scene" for whole-scene runs)
    metric = args.metric if args.metric == "full" else (modality.metric_name(cfg) or args.metric)
    cfg.method = resolve_method(cfg.method, dataset=cfg.data.dataset, protocol=cfg.protocol, modality=cfg.modality)
    task = modality.task(cfg)
    keys = STEP_METRICS
    rows, out, evaluated = [], [], {}
    for step, path, ours in targets:
        if step >= task.num_steps:
            raise CSSError(f"step {step} is outside task {task.name} (steps 0..{task.num_steps - 1})")
        saved = {}
        if ours:
            model, saved = load_step(modality, cfg, task, step, path, env)
        else:
            model = modality.build_model(cfg, task.classes_per_step(step), env)
            modality.import_weights(model, str(path))
        model.to(env.device)
        test_set = modality.dataset(cfg, task, step, "test")
        if args.metric == "full" and not args.write:
            cm = modality.evaluate_full(model, test_set, cfg, task, step, env)  # the sampled one is not needed
        else:
            cm = modality.evaluate(model, test_set, cfg, task, step, env)
        shown = getattr(cm, "full", cm) if args.metric == "full" else cm
        summary = step_summary(shown, task)
        iou = class_ious(shown)
        rows.append({"run": f"step {step}", **{k: summary[k] for k in keys}})
        out.append({"step": step, "checkpoint": str(path), "metric": metric,
                    "num_test": getattr(cm, "samples", len(test_set)), "summary": {k: summary[k] for k in keys},
                    "iou": iou, "class_names": task.channel_names(step)})
        if args.metric == "full":
            out[-1].update(num_points=shown.points, num_blocks=shown.blocks)
        evaluated[step] = (cm, out[-1]["num_test"], {"config": saved.get("config")})
        if env.is_main and args.write:  # the step's data for the run report (docs/report.md#what-a-run-keeps)
            keep_step_data(modality, cfg, task, step, env, cm, model, test_set, Path(path).parent)
    if env.is_main and args.write:
        write_run_results(Path(args.target), cfg, task, env, evaluated)
    if env.is_main:
        if modality.metric is not None:
            about = {"full": " (every point of every test block)", "scene": " (every point of every test scene)"}
            print(f"metric: {metric}" + about.get(metric, ""))
        print(format_table(rows))
        if args.json:
            from css.results.jsonfile import dumps_json
            from css.utils import atomic_write_text

            atomic_write_text(args.json, dumps_json(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
