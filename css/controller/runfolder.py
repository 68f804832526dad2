"""Before a run touches its folder (rank 0 only, docs/controller.md#run-folder): take the lock, clean
up after a kill, check that the checkpoints belong to this config, apply ``--redo-from``, and work
out which steps are finished and which of them lack their results entry.

- lock: ``css.controller.runlock`` (docs/controller.md#one-run-per-folder);
- orphaned temporary files of an interrupted atomic write (``.NAME.XXXX.tmp``, css/utils.py) in the
  run folder and its step folders are removed; only the lock holder does this, so no other run's
  write in progress is touched;
- a truncated or corrupt ``resume.pt`` is moved aside to ``resume.pt.corrupt`` and its step restarts
  from the beginning; a truncated ``model.pt`` is an error that names the file to delete
  (docs/controller.md#recovery);
- config identity (docs/controller.md#config-identity) and ``--redo-from`` (docs/controller.md#redo-from);
- ``--init-step0`` over a finished step 0 is refused unless ``--replace-step0`` asks for it
  (docs/controller.md#command-line);
- ``config.yaml`` is rewritten from the resolved config, with a warning when it was missing, unreadable
  or no longer matched the checkpoints;
- a finished step is one with a ``model.pt``; a corrupt ``results.json`` is moved aside and the
  entries it lacks are rebuilt by the controller (re-evaluation), ``results.csv`` from ``results.json``.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from css import checkpoint as ck
from css.config import identity
from css.config.build import save_config
from css.controller.runlock import RunLock
from css.errors import CheckpointError, ConfigError
from css.results import recording

log = logging.getLogger("css")


def clean_temp_files(run_dir: Path) -> list[Path]:
    """Remove the temporary files (css/utils.py: ``.NAME.XXXX.tmp``) a kill during a save left."""
    found = [p for folder in [run_dir, *sorted(run_dir.glob("step*"))] if folder.is_dir()
             for p in folder.glob(".*.tmp") if p.is_file()]
    for p in found:
        p.unlink(missing_ok=True)
    if found:
        log.warning("removed %d temporary file(s) left by a save that was interrupted: %s", len(found),
                    ", ".join(str(p) for p in found))
    return found


def _header(obj: dict[str, Any]) -> dict[str, Any]:
    config = obj.get("config")
    return {"config": config, "hash": identity.config_hash(config), "parent": obj.get("parent_config_hash")}


def _aside(path: Path, suffix: str) -> Path:
    target = path.with_name(path.name + suffix)
    os.replace(path, target)
    return target


def scan(run_dir: Path, redo_from: int | None) -> dict[int, dict[str, Any]]:
    """{step: {"model": header | None, "resume": header | None}} of every step folder."""
    folders = {int(p.name[4:]): p for p in run_dir.glob("step*") if p.is_dir() and p.name[4:].isdigit()}
    states: dict[int, dict[str, Any]] = {}
    for step in sorted(folders):
        model, resume = ck.model_path(run_dir, step), ck.resume_path(run_dir, step)
        state = states[step] = {"model": None, "resume": None}
        if model.is_file():
            try:
                obj = ck.peek(model)
                if obj.get("format") != ck.FORMAT:
                    raise CheckpointError(f"{model} is not a css step checkpoint (no 'format: css' key)")
            except CheckpointError as exc:
                if redo_from is not None and step >= redo_from:
                    log.warning("%s; --redo-from %d retrains step %d: moved it aside to %s", exc, redo_from, step,
                                _aside(model, ".corrupt").name)
                    if resume.is_file():
                        _aside(resume, ".replaced")
                    continue
                later = [s for s in folders if s > step and ck.model_path(run_dir, s).is_file()]
                redo = (f"; steps {later} were trained from it: to retrain them too, add --redo-from {step}"
                        if later else "")
                raise CheckpointError(f"step {step} is finished but its checkpoint cannot be used: {exc}. "
                                      f"Delete {model} to retrain step {step}{redo}") from None
            state["model"] = _header(obj)
            del obj
            if resume.is_file():  # the step finished after its last epoch was saved
                resume.unlink()
        elif resume.is_file():
            try:
                obj = ck.peek(resume)
                if "epoch" not in obj or "model" not in obj:
                    raise CheckpointError(f"{resume} is not a css resume state (no 'epoch'/'model')")
            except CheckpointError as exc:
                log.warning("%s; moved it aside to %s and restarting step %d from its beginning", exc,
                            _aside(resume, ".corrupt").name, step)
                continue
            state["resume"] = _header(obj)
            del obj
    return states


def _refuse(run_dir: Path, step: int, path: Path, diff, num_steps: int, states) -> ConfigError:
    unfinished = next((s for s in range(num_steps) if not (states.get(s) or {}).get("model")), None)
    hint = f" (here --redo-from {unfinished} keeps every finished step)" if unfinished is not None else ""
    return ConfigError(
        f"run folder {run_dir} was started with a different config ({identity.format_changes(diff)}); "
        f"{path} was trained with it. Resume with the same config (see {run_dir / 'config.yaml'}), or pick a "
        f"new run name (name=...), or, to keep the finished steps before a step T and retrain T and later "
        f"with this config, add --redo-from T{hint}")


def check(run_dir: Path, states, now: dict[str, Any], num_steps: int) -> None:
    """Every checkpoint was trained with ``now``, or is a step that a later accepted step was
    trained on top of (a step kept by an earlier --redo-from)."""
    accepted: set[int] = set()
    for step in sorted(states, reverse=True):
        head = states[step]["model"] or states[step]["resume"]
        if head is None:
            continue
        diff = identity.changes(head["config"], now)
        child = states.get(step + 1) or {}
        child = child.get("model") or child.get("resume")
        if diff and not (child and step + 1 in accepted and child["parent"] == head["hash"]):
            path = ck.model_path(run_dir, step) if states[step]["model"] else ck.resume_path(run_dir, step)
            raise _refuse(run_dir, step, path, diff, num_steps, states)
        accepted.add(step)


def redo(run_dir: Path, states, now: dict[str, Any], start: int, steps: list[int], num_steps: int) -> list[int]:
    """--redo-from ``start``: keep the finished steps before it, move aside the checkpoints of steps
    from ``start`` on that were not trained with ``now`` on top of them. Returns the steps from
    ``start`` on that will be retrained."""
    if not 0 <= start < num_steps or start not in steps:
        raise ConfigError(f"--redo-from {start}: step {start} is not among the steps to run ({steps}); give a "
                          f"step of this task (0..{num_steps - 1}) that --steps includes")
    prev = (states.get(start - 1) or {}).get("model") if start > 0 else None
    if start > 0 and prev is None:
        raise ConfigError(f"--redo-from {start} keeps steps 0..{start - 1}, but step {start - 1} is not finished "
                          f"(no {ck.model_path(run_dir, start - 1)}); redo from an earlier step")
    for step in sorted(s for s in states if s < start and states[s]["model"]):
        blockers = identity.redo_blockers(states[step]["model"]["config"], now)
        if blockers:
            raise ConfigError(
                f"--redo-from {start} may change the training keys (train.*, method.*, seed) but not "
                f"{identity.format_changes(blockers)}: step {step} ({ck.model_path(run_dir, step)}) was trained "
                f"with them. Change only training keys, or pick a new run name (name=...)")
    dropped: list[int] = []
    parent = prev["hash"] if prev else None
    for step in sorted(s for s in states if s >= start):
        head = states[step]["model"] or states[step]["resume"]
        if head is None:  # nothing to keep here, nor after it
            parent = "(gap)"
            dropped.append(step)
            continue
        if not dropped and not identity.changes(head["config"], now) and head["parent"] == parent:
            parent = head["hash"]  # already redone with this config (the same command run again)
            continue
        for kind in ("model", "resume"):
            path = ck.model_path(run_dir, step) if kind == "model" else ck.resume_path(run_dir, step)
            if states[step][kind] is not None:
                log.warning("--redo-from %d: step %d will be retrained with this config; moved %s aside to %s",
                            start, step, path, _aside(path, ".replaced").name)
                states[step][kind] = None
        dropped.append(step)
    if not dropped:
        log.info("--redo-from %d: steps %d and later already ran with this config; nothing to redo", start, start)
    return dropped


def init_step0_over_finished(ctl, states, steps: list[int]) -> bool:
    """--init-step0 on a folder whose step 0 is finished: refused, unless --replace-step0 asks for it;
    then step 0 and every step trained from it are moved aside (``.replaced``) to be redone
    (docs/controller.md#command-line). Returns whether anything was moved aside."""
    head = (states.get(0) or {}).get("model")
    if not ctl.init_step0 or 0 not in steps or head is None:
        return False
    run_dir = ctl.run_dir
    later = sorted(s for s in states if s > 0 and (states[s]["model"] or states[s]["resume"]))
    if not ctl.replace_step0:
        also = f" (steps {later} were trained from it and would be retrained too)" if later else ""
        raise ConfigError(
            f"--init-step0 {ctl.init_step0}: step 0 of run folder {run_dir} is already finished "
            f"({ck.model_path(run_dir, 0)}), so the import would be ignored. To replace that step 0 with the "
            f"imported model, add --replace-step0{also}; or pick a new run name (name=...), or leave out "
            f"--init-step0 to continue the run")
    for step in sorted(states):
        for kind in ("model", "resume"):
            path = ck.model_path(run_dir, step) if kind == "model" else ck.resume_path(run_dir, step)
            if states[step][kind] is not None:
                log.warning("--replace-step0: step 0 is imported from %s; moved %s aside to %s", ctl.init_step0,
                            path, _aside(path, ".replaced").name)
                states[step][kind] = None
    return True


def _fill_old_configs(run_dir: Path, states, yaml_cfg, problem) -> None:
    """A checkpoint of an earlier css that records no config is checked against config.yaml."""
    for step, state in states.items():
        for kind in ("model", "resume"):
            head = state[kind]
            if head is None or head["config"] is not None:
                continue
            path = ck.model_path(run_dir, step) if kind == "model" else ck.resume_path(run_dir, step)
            if yaml_cfg is None:
                raise CheckpointError(
                    f"{path} was written by an earlier css and records no config, and {problem}: nothing tells "
                    f"which config it belongs to. Restore config.yaml, or delete {path} to retrain step {step}")
            head.update(config=yaml_cfg, hash=identity.config_hash(yaml_cfg))


def _write_config_yaml(ctl, states, yaml_cfg, problem, redoing: bool) -> None:
    path = ctl.run_dir / "config.yaml"
    heads = [s["model"] or s["resume"] for _, s in sorted(states.items()) if s["model"] or s["resume"]]
    if heads and not redoing:
        recorded = heads[-1]["config"]
        if problem:
            log.warning("%s; rewrote it from the resolved config, which matches what the checkpoints record", problem)
        elif identity.identity(yaml_cfg) != identity.identity(recorded):
            log.warning("%s does not match the config the checkpoints record (edited or truncated?); rewrote it "
                        "from the resolved config, which matches them", path)
    save_config(ctl.cfg, path)


def prepare_run_folder(ctl, steps: list[int], redo_from: int | None) -> dict[str, Any]:
    """Rank 0: the plan {"finished", "missing_results", "configs"}; ``ctl.lock`` holds the lock."""
    run_dir = ctl.run_dir
    lock = RunLock(run_dir)
    lock.acquire()
    try:
        clean_temp_files(run_dir)
        now = ctl.cfg.to_dict()
        states = scan(run_dir, redo_from)
        replaced = init_step0_over_finished(ctl, states, steps)
        yaml_cfg, problem = identity.read_config_yaml(run_dir / "config.yaml")
        _fill_old_configs(run_dir, states, yaml_cfg, problem)
        if redo_from is not None:  # the steps it keeps are checked there, the others are retrained
            redo(run_dir, states, now, redo_from, steps, ctl.task.num_steps)
        else:
            check(run_dir, states, now, ctl.task.num_steps)
        _write_config_yaml(ctl, states, yaml_cfg, problem, redo_from is not None)
        entries, _ = recording.read_entries(run_dir)
        # --redo-from T: the entries of steps from T on describe the models it moved aside.
        # --replace-step0: every entry describes a model it moved aside.
        kept = [e for e in entries if (states.get(e["step"]) or {}).get("model")
                or (not replaced and (redo_from is None or e["step"] < redo_from))]
        if len(kept) != len(entries) or (kept and not recording.csv_matches(run_dir / "results.csv", kept)):
            log.info("results.json, results.csv: rewritten for steps %s", [e["step"] for e in kept])
            ctl.write_results(kept)
        finished = sorted(s for s, state in states.items() if state["model"])
        recorded = {e["step"] for e in kept}
        ctl.lock = lock
        return {"finished": finished, "missing_results": [s for s in finished if s not in recorded],
                "configs": {s: states[s]["model"]["config"] for s in finished}}
    except BaseException:
        lock.release()
        raise


# Failed starts (docs/controller.md#failed-starts): the controller removes what a start that failed
# before training made.

def first_missing(run_dir: Path) -> Path | None:
    """The outermost folder of ``run_dir`` (itself or a parent) that does not exist yet, or None."""
    run_dir = Path(run_dir).absolute()
    if run_dir.exists():
        return None
    top = run_dir
    while not top.parent.exists():
        top = top.parent
    return top


def trained_anything(run_dir: Path) -> bool:
    """Whether a step of this run saved a finished model or a resumable epoch."""
    return any(p.is_file() for pattern in ("step*/model.pt", "step*/resume.pt") for p in Path(run_dir).glob(pattern))


def remove_failed_start(run_dir: Path, created: Path) -> None:
    """Remove the run folder (config.yaml, log.txt, tb/) that a failed start made, and the parents
    it made for it; a start that failed leaves the output folder as it found it."""
    logger = logging.getLogger("css")
    for handler in [h for h in logger.handlers if isinstance(h, logging.FileHandler)]:
        handler.close()
        logger.removeHandler(handler)
    run_dir = Path(run_dir).absolute()
    shutil.rmtree(run_dir, ignore_errors=True)
    folder = run_dir.parent
    while folder != created.parent and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent
    logger.info("the run did not start; removed %s, which this command had created", run_dir)
