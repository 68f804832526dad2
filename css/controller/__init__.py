"""The step controller (docs/controller.md): steps 0..T of a task for either modality, the checks
before they start, the hand-over between steps, and the run folder with its lock."""

from css.controller.handover import hand_over, load_step
from css.controller.runfolder import prepare_run_folder
from css.controller.runlock import RunLock
from css.controller.start import parse_steps, select_steps, setup_logging
from css.controller.steps import Controller, run_from_config

__all__ = ["Controller", "RunLock", "hand_over", "load_step", "parse_steps", "prepare_run_folder", "run_from_config",
           "select_steps", "setup_logging"]
