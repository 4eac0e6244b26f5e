"""Configuration: the typed schema (`schema.py`, docs/config.md), YAML loading with
`section.key=value` overrides (`loading.py`) and the family names (`families.py`). Prompt sources live
with the tasks (rlalign.tasks)."""

from rlalign.config.loading import ConfigError, to_dict
from rlalign.config.schema import (
    Config,
    GrpoConfig,
    LoggingConfig,
    LoraConfig,
    PolicyConfig,
    PromptsConfig,
    RewardsConfig,
    RewardSpec,
    RolloutConfig,
    TrainConfig,
    derived_sizes,
    load_config,
)

__all__ = [
    "Config", "ConfigError", "GrpoConfig", "LoggingConfig", "LoraConfig", "PolicyConfig", "PromptsConfig",
    "RewardSpec", "RewardsConfig", "RolloutConfig", "TrainConfig", "derived_sizes", "load_config", "to_dict",
]
