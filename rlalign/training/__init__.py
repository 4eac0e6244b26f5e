"""Training: the prefix-GRPO trainer and what keeps a run safe (checkpoints, strict resume, signals)."""
