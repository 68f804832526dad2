"""One step's training and evaluation loops (docs/architecture.md#data-flow-of-one-step): the settings,
loaders, optimisers and schedules, precision and non-finite checks, the resume state and the
best-epoch selection. The engine knows nothing about steps beyond the objective it is given."""

from css.engine.best_epoch import BestOnTest, best_path, selects_best_on_test
from css.engine.loaders import SeededDataset, eval_loader, local_batch, train_loader
from css.engine.precision import autocast
from css.engine.resume import ResumeState
from css.engine.schedules import build_optimizer, build_schedule
from css.engine.settings import EpochLog, TrainSettings
from css.engine.trainer import Trainer, evaluate

__all__ = ["BestOnTest", "EpochLog", "ResumeState", "SeededDataset", "TrainSettings", "Trainer", "autocast",
           "best_path", "build_optimizer", "build_schedule", "eval_loader", "evaluate", "local_batch",
           "selects_best_on_test", "train_loader"]
