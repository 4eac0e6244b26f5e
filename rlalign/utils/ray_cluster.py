"""Joining or starting Ray for a run's actors (rollout workers, reward workers), with a resource check.

Ray is imported inside the functions: `import ray` takes seconds, and most runs never use it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping

logger = logging.getLogger(__name__)

ActorNeeds = Mapping[str, tuple[int, float, float]]
"""Config section ("rollout", "rewards") -> (num_workers, cpus_per_worker, gpus_per_worker) of its actors."""


def connect(address: str, needs: ActorNeeds) -> bool:
    """Join or start Ray; returns True when this call started a local Ray (its caller shuts it down).

    An already initialised Ray (a trainer's, a script's or a test's) is used as it is. A local Ray gets
    enough logical CPUs for all the actors in `needs` even when they oversubscribe the machine (threads
    then share the cores; an actor Ray cannot schedule would only wait until its timeout).
    """
    import ray

    if ray.is_initialized():
        check_resources(needs, local=False)
        return False
    if address:
        check_reachable(address)
        ray.init(address=address, include_dashboard=False)
        check_resources(needs, local=False)
        return False
    wanted = math.ceil(sum(workers * cpus for workers, cpus, _ in needs.values()))
    ray.init(num_cpus=max(os.cpu_count() or 1, wanted), include_dashboard=False)
    check_resources(needs, local=True)
    return True


REACH_TIMEOUT_S = 10.0
"""How long to wait for a Ray head's port to answer before saying nothing is there (Ray itself retries
forever, repeating its warnings)."""


def check_reachable(address: str, timeout_s: float = REACH_TIMEOUT_S) -> None:
    """Fail with what to do when `host:port` (a Ray head's GCS address) does not accept a connection.
    `auto` and `ray://` client addresses are left to Ray."""
    import socket

    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"rollout.ray_address={address!r} must be host:port (the head's GCS address, e.g. "
                         "10.0.0.1:6379), 'auto', or ray://host:port")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as error:
        raise ValueError(f"rollout.ray_address={address!r}: nothing answers there ({error.strerror or error}, "
                         f"waited up to {timeout_s:g} s); start the head (`ray start --head`) or fix the address, "
                         "or leave rollout.ray_address empty for a local Ray") from None


def check_resources(needs: ActorNeeds, *, local: bool) -> None:
    """Fail at start, naming the keys, when the actors can never be scheduled on this cluster (on a
    cluster that may grow, only warn: an autoscaler may add the nodes)."""
    import ray

    have = ray.cluster_resources()
    for section, (workers, cpus, gpus) in needs.items():
        for key, resource, per_worker in (("cpus_per_worker", "CPU", cpus), ("gpus_per_worker", "GPU", gpus)):
            need = workers * per_worker
            if need > have.get(resource, 0.0) + 1e-9:
                message = (f"{section}.num_workers × {section}.{key} = {need:g} {resource}s, but the Ray cluster has "
                           f"{have.get(resource, 0.0):g}; lower {section}.{key} or num_workers, or add nodes")
                if local:
                    raise ValueError(message)
                logger.warning("%s (waiting for an autoscaler, if there is one)", message)


def needs_of(section: str, cfg) -> dict[str, tuple[int, float, float]]:
    """{section: (num_workers, cpus_per_worker, gpus_per_worker)} of a rollout or rewards config section."""
    return {section: (cfg.num_workers, cfg.cpus_per_worker, cfg.gpus_per_worker)}
