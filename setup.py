"""Packaging beside pyproject.toml: only the package list lives here, because the top-level folders
`rewards/` and `rollouts/` install as `rlalign.rewards` and `rlalign.rollouts` (a mapping pyproject's
automatic discovery cannot express), so that no user module named `rewards` or `rollouts` shadows them."""

from setuptools import find_packages, setup

MAPPED = {"rlalign.rewards": "rewards", "rlalign.rollouts": "rollouts"}

setup(packages=find_packages(include=["rlalign", "rlalign.*"]) + list(MAPPED), package_dir=MAPPED)
