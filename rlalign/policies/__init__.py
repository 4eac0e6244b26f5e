"""Generator families as StepPolicies (docs/architecture.md, "The families").

`load_policy(config.policy)` builds the family `policy.kind` names (registry.py: a registered name or
`module:Class`); the protocol, the Rollout and the prefix-length helpers are in base.py. The built-in
families live in `next_scale/`, `insertion/`, `edit_flow/` and `infinity/`, and import only base.py,
lora.py, weights.py and shared.py of this package.
"""

from rlalign.config.families import FAMILIES
from rlalign.policies.base import (
    Generators,
    Rollout,
    RolloutState,
    StepPolicy,
    concat_rollouts,
    outputs_to_host,
    parse_prefix_steps,
    resolve_prefix_steps,
)
from rlalign.policies.registry import declared_num_steps, load_policy, resolved_config

__all__ = [
    "FAMILIES",
    "Generators",
    "Rollout",
    "RolloutState",
    "StepPolicy",
    "concat_rollouts",
    "declared_num_steps",
    "load_policy",
    "resolved_config",
    "outputs_to_host",
    "parse_prefix_steps",
    "resolve_prefix_steps",
]
