"""Typed configuration (docs/config.md): YAML files and ``key.sub=value`` overrides validated into
dataclasses, range checks, and the identity of a run (which keys make two configs the same run)."""

from css.config.build import from_dict, load_config, save_config
from css.config.checks import check_values
from css.config.files import apply_overrides, load_yaml_tree, merge, parse_override
from css.config.identity import config_hash
from css.config.method import MethodConfig
from css.config.numbers import to_float, to_int
from css.config.schema import Config, DataConfig, StepOverride, TaskConfig, TrainConfig, step_value

__all__ = ["Config", "DataConfig", "MethodConfig", "StepOverride", "TaskConfig", "TrainConfig", "apply_overrides",
           "check_values", "config_hash", "from_dict", "load_config", "load_yaml_tree", "merge",
           "parse_override", "save_config", "step_value", "to_float", "to_int"]
