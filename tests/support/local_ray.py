"""A local Ray for one test module, with the driver's torch threads set to the actors' for the duration."""

from contextlib import contextmanager

import ray
import torch


@contextmanager
def local_ray(threads: int, **init_kwargs):
    """ray.init(num_cpus=2) (this machine's cores) with torch at `threads` threads; undone on exit."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    ray.init(num_cpus=2, include_dashboard=False, **init_kwargs)
    try:
        yield
    finally:
        ray.shutdown()
        torch.set_num_threads(before)
