"""The insertion family's own settings (`policy.insertion` in a config), validated by the family.

The config schema holds `policy.insertion` as a plain mapping; `settings(cfg)` builds this dataclass
from it with the schema's own checks (types, bounds, unknown keys with a suggestion), naming keys as
`policy.insertion.KEY`. docs/config.md lists the fields (scripts/gen_config_docs.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlalign.config.loading import bounded, build_section


@dataclass
class InsertionSettings:
    steps: int = bounded(8, ge=1)
    """The number T of insertion steps from t = 0 to 1 (τ = 1/T; docs/insertion.md)."""


def settings(cfg: Any) -> InsertionSettings:
    """The `policy.insertion` mapping of a PolicyConfig as checked InsertionSettings."""
    return build_section(InsertionSettings, cfg.insertion, "policy.insertion")
