"""rlalign.rewards: reward functions, their registry and the scoring runtime (docs/rewards.md).

The folder `rewards/` imports as `rlalign.rewards` (setup.py maps it), so no module of a user's
own named `rewards` can shadow it. Three kinds of module live here:

- the registry, `rlalign.rewards.registry`: short names for import strings, and `build_reward`;
- reward functions in TRL's convention (`clip`, `aesthetic`, `shapes_eval`, `shapes_detector`,
  `sums`, `examples`) and `builtin_models`, which registers the built-in CLIP with open_clip;
- the scoring runtime: `worker` (one reward worker: build, call, check, combine), `combine`,
  `scoring` (the local backend) and `ray_scoring` (reward actors).

Nothing is imported here, so `import rlalign.rewards.registry` (the config checks names) stays cheap.
"""
