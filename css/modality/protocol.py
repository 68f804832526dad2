"""What a modality supplies to the modality-agnostic core (docs/architecture.md#the-modality-contract).

The core (config, methods, controller, entry points) reaches a modality only through these members,
by way of ``css.modality.registry.get_modality``. A modality class names ``Modality`` as its base to
take the defaults of the members it has nothing to add to; the members without a default are what
every modality must supply.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable, Protocol

import torch
from torch.utils.data import Dataset


class Modality(Protocol):
    name: str
    collate: Callable | None
    """The DataLoader's collate function, or None for torch's default."""
    config_sections: dict[str, type]
    """The dataclasses of this modality's ``data``, ``model`` and ``train`` sections (docs/config.md#sections)."""
    config_choices: dict[str, tuple[str, ...]] = {}
    """Keys of those sections with a fixed set of values ("model.norm": ("iabn_sync", ...))."""
    metric: str | None = None
    """The name results files give this modality's test metric ("sampled" for point clouds, with the
    overall accuracy as a last cell of results.csv); None: the reference's image layout."""
    predict_flags: tuple[str, ...] = ()
    """The ``css.predict`` options that name this modality's inputs (``add_predict_arguments``)."""

    # --- configuration ---------------------------------------------------------------------
    def metric_name(self, cfg: Any) -> str | None:
        """The name results files give the test metric of ``cfg``'s runs (by default ``metric``; point
        clouds on whole scenes: "scene", every point of every test scene)."""
        return self.metric

    def check_config(self, cfg: Any, where: str) -> None:
        """Ranges and combinations of this modality's sections; ``where`` prefixes each error."""

    def start_notes(self, cfg: Any) -> list[str]:
        """Lines the controller logs when a run of ``cfg`` starts (e.g. a preset term that does not apply)."""
        return []

    def method_extension(self) -> Any:
        """The method presets this modality adds (a ``css.methods.presets.MethodExtension``), or None."""
        return None

    # --- data and model ----------------------------------------------------------------------
    def task(self, cfg: Any) -> Any:
        """The config's ``Task``."""
        ...

    def build_model(self, cfg: Any, classes_per_step: list[int], env: Any) -> torch.nn.Module:
        """A model whose forward returns ``SegOutput(logits, logits_small, features)``, one head per step."""
        ...

    def dataset(self, cfg: Any, task: Any, step: int, split: str) -> Dataset:
        """The step's dataset of ``split``, already selected and remapped for the task. It also has
        ``shown_labels()``: the dataset labels some of its items show, by the modality's presence rule
        (what css.controller.preflight checks a step's classes against)."""
        ...

    def load_pretrained(self, model: torch.nn.Module, cfg: Any) -> None:
        """Step 0's initial weights (images: the ImageNet backbone); nothing by default."""

    def import_weights(self, model: torch.nn.Module, path: str) -> Any:
        """A foreign checkpoint loaded into ``model`` (``--init-step0``); returns a short report."""
        ...

    # --- training ----------------------------------------------------------------------------
    def eval_mode_from_epoch(self, cfg: Any) -> int | None:
        """The (0-based) epoch from which training runs norm layers and dropout in eval mode; None: never."""
        return None

    def selects_best_on_test(self, cfg: Any, num_steps: int) -> bool:
        """What a null ``train.select_best_on_test`` means for ``cfg`` and a task of ``num_steps``."""
        return False

    def prepare_old_model(self, cfg: Any, old_model: torch.nn.Module) -> None:
        """What the frozen old model needs before an incremental step trains (e.g. MC dropout)."""

    # --- evaluation and output ---------------------------------------------------------------
    def evaluate(self, model: torch.nn.Module, dataset: Dataset, cfg: Any, task: Any, step: int,
                 env: Any) -> Any:
        """The step's test metric as a ConfusionMatrix (summed over processes): the modality owns
        its evaluation (images: argmax of full-resolution logits; point clouds: sampled points)."""
        ...

    def write_samples(self, model: torch.nn.Module, dataset: Dataset, cfg: Any, task: Any, step: int, env: Any,
                      out: Any) -> dict | None:
        """A few test predictions of the step for the run report, written into the folder ``out``; returns
        their manifest ({"colours": [[r, g, b] per channel], "samples": [...]}, css.results.stepdata), or
        None when the modality has nothing to show."""
        return None

    def evaluate_full(self, model: torch.nn.Module, dataset: Dataset, cfg: Any, task: Any, step: int,
                      env: Any) -> Any:
        """The full-coverage metric (``css.evaluate --metric full``), or None when the modality has
        none (its ``evaluate`` already scores every element)."""
        return None

    def inspect(self, dataset: str, root: str | None, spec: Any, *, overlap: bool, options: dict | None,
                protocol: str, cache_dir: str | None, cfg: Any = None) -> str:
        """The report of ``python -m css.data inspect`` for ``dataset`` (``spec``: a task name or class
        groups; ``cfg``: the run config when inspection was given one)."""
        ...

    def add_predict_arguments(self, inputs: Any, parser: argparse.ArgumentParser) -> None:
        """``css.predict``'s options for this modality: its inputs in the required group ``inputs``
        (named in ``predict_flags``) and its own options in ``parser``."""

    def predict(self, args: argparse.Namespace, cfg: Any, load: Callable[[], tuple]) -> int:
        """``css.predict``: write the predictions for ``args``; ``load()`` gives the checkpoint's
        (env, task, step, model in eval mode). Returns the exit status."""
        ...
