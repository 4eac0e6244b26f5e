"""The CLI commands other than train: sample, eval, score, showcase, probe, sweep (rlalign/cli.py
dispatches to them)."""
