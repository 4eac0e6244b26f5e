"""Ray rollout benchmark: throughput of the local and Ray backends, and what a weight sync costs.

    python scripts/bench_ray.py                    # built-in model, 8 prompts × G 8, m 3 → outputs/bench/ray.json

Contenders, each driven exactly as the trainer drives it (`sync(version, state)`, then `generate`):
  local  the trainer's own policy in this process (sync moves nothing), `--local-threads` torch threads;
  local-1t  the same with 1 thread: what one core gives, for reading the others (and a machine whose
         other core is busy: a 2-thread OpenMP region then waits for the descheduled thread);
  ray×1  one actor with `--local-threads` threads;
  ray×2  two actors with 1 thread each (one per core of this 2-core machine), half the batch each.

Reported per contender: images/s of `generate` (median over repeats after warm-up, contenders timed
in turn within each repeat so background load hits all alike), sync and step (sync + generate)
seconds and the sync's share of the step, bytes sent per sync (adapter only) against the full
model's bytes, the actors' start time, and a determinism check against the local rollout (tokens
and log-probs must be bitwise equal; decoded images may differ by float rounding across splits).

Then the reward overlap (rewards.backend=ray): the demo's trained rewards (built-in CLIP and
aesthetic) on a step cut into `--shards` shards, sample + score seconds per step for
  in-process 2t   sample, then score, in this process with `--local-threads` threads (the default setup);
  in-process 1t   the same with 1 thread;
  actors 1t+1t    sample with 1 thread here while `--reward-actors` reward actors (1 thread each) score
                  each shard as it arrives; the rewards must equal in-process 1t's bit for bit;
with the time the driver waits for the rewards after its last shard, and the overlap: the share of
the reward work (Σ reward seconds) hidden behind sampling.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import ray
import torch
from rlalign.rewards.ray_scoring import RayScorer
from rlalign.rewards.scoring import LocalScorer
from rlalign.rewards.worker import RewardWorker
from rlalign.rollouts import LocalBackend
from rlalign.rollouts.ray_backend import RayBackend

from rlalign.config import RewardsConfig, RewardSpec, RolloutConfig
from rlalign.policies import load_policy
from rlalign.policies.lora import adapter_bytes
from rlalign.shapes import eval_prompts
from rlalign.utils.files import write_json_atomic
from rlalign.utils.tables import records_table
from rlalign.utils.timing import machine_info


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="builtin:shapes-nextscale")
    parser.add_argument("--prompts", type=int, default=8, help="prompts per step")
    parser.add_argument("--group-size", type=int, default=8, help="G samples per prompt")
    parser.add_argument("--prefix-steps", type=int, default=3, help="m")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per contender (median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per contender first")
    parser.add_argument("--local-threads", type=int, default=2, help="torch threads of local and ray×1")
    parser.add_argument("--shards", type=int, default=4, help="shards per step in the reward-overlap part")
    parser.add_argument("--reward-actors", type=int, default=1, help="reward actors in the reward-overlap part")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="outputs/bench/ray.json")
    return parser.parse_args(argv)


def perturbed_adapter(policy, seed: int) -> dict[str, torch.Tensor]:
    """The policy's adapter with random LoRA B (zero at init), so the adapter really acts."""
    generator = torch.Generator().manual_seed(seed)
    state = policy.adapter_state()
    for name, tensor in state.items():
        if "lora_B" in name:
            state[name] = torch.randn(tensor.shape, generator=generator) * 0.05
    policy.load_adapter_state(state)
    return policy.adapter_state()


def model_bytes(policy) -> int:
    """Bytes of the full model without the adapter: what syncing whole weights would send."""
    return sum(t.numel() * t.element_size() for name, t in policy.model.state_dict().items() if "lora_" not in name)


def start_backends(args, policy) -> tuple[dict, dict[str, float]]:
    """local, ray×1, ray×2 (all alive at once, so they can be timed in turn), with start times."""
    policy_config = {"checkpoint": args.checkpoint}
    local = LocalBackend.sharing(policy, args.seed)
    backends, started = {"local": local, "local-1t": local}, {"local": 0.0, "local-1t": 0.0}
    for name, workers, threads in (("ray×1", 1, args.local_threads), ("ray×2", 2, 1)):
        begin = time.perf_counter()
        rollout_cfg = RolloutConfig(backend="ray", num_workers=workers, cpus_per_worker=1.0, torch_threads=threads)
        backends[name] = RayBackend(rollout_cfg, policy_config, args.seed)
        started[name] = time.perf_counter() - begin
    return backends, started


def time_steps(args, backends: dict, state: dict, prompts: list[str]) -> dict[str, dict[str, list[float]]]:
    """Per contender, the sync and generate seconds of each timed step (warm-up steps dropped)."""
    times = {name: {"sync": [], "generate": []} for name in backends}
    version = 0
    for repeat in range(args.warmup + args.repeats):
        for name, backend in backends.items():
            torch.set_num_threads(1 if name == "local-1t" else args.local_threads)  # this process's threads
            version += 1
            begin = time.perf_counter()
            backend.sync(version, None if backend.shares_policy else state)
            synced = time.perf_counter()
            backend.generate(prompts, args.group_size, args.prefix_steps, step=repeat)
            done = time.perf_counter()
            if repeat >= args.warmup:
                times[name]["sync"].append(synced - begin)
                times[name]["generate"].append(done - synced)
    return times


def determinism(args, backends: dict, prompts: list[str]) -> dict[str, dict]:
    """The same step from every backend, compared with the local rollout."""
    torch.set_num_threads(args.local_threads)
    rollouts = {name: b.generate(prompts, args.group_size, args.prefix_steps, step=10_000)
                for name, b in backends.items() if name != "local-1t"}  # the same backend as local
    reference = rollouts["local"]
    report = {}
    for name, rollout in rollouts.items():
        report[name] = {
            "tokens_equal": all(torch.equal(a, b) for a, b in zip(rollout.state.tokens, reference.state.tokens)),
            "old_logp_equal": all(torch.equal(a, b) for a, b in zip(rollout.old_logp, reference.old_logp)),
            "outputs_max_abs_diff": float((rollout.outputs - reference.outputs).abs().max()),
        }
    return report


DEMO_REWARDS = [RewardSpec(name="clip_score", label="clip", args={"architecture": "shapes-clip",
                                                                  "weights": "builtin:shapes-clip"}),
                RewardSpec(name="aesthetic", label="aesthetic", weight=0.0, args={"weights": "builtin:shapes-aesthetic"})]


def reward_overlap(args, policy, prompts: list[str]) -> list[dict]:
    """Sample + score seconds per step with the rewards in process and on reward actors (module docstring)."""
    worker = RewardWorker(DEMO_REWARDS, "normalize_then_sum")
    actors_cfg = RewardsConfig(functions=DEMO_REWARDS, backend="ray", num_workers=args.reward_actors,
                               cpus_per_worker=1.0, torch_threads=1)
    backend = LocalBackend.sharing(policy, args.seed, shards=args.shards)
    scorers = {"in-process 2t": (LocalScorer(worker), args.local_threads), "in-process 1t": (LocalScorer(worker), 1),
               "actors 1t+1t": (RayScorer(actors_cfg, worker), 1)}
    times = {name: {"step": [], "wait": [], "reward": []} for name in scorers}
    totals = {}
    for repeat in range(args.warmup + args.repeats):
        for name, (scorer, threads) in scorers.items():
            torch.set_num_threads(threads)
            begin = time.perf_counter()
            backend.generate(prompts, args.group_size, args.prefix_steps, step=repeat,
                             on_shard=lambda index, shard, scorer=scorer: scorer.submit(index, shard.prompts,
                                                                                         shard.outputs))
            sampled = time.perf_counter()
            raw = scorer.collect()
            done = time.perf_counter()
            totals[name] = worker.finish(raw).total
            if repeat >= args.warmup:
                times[name]["step"].append(done - begin)
                times[name]["wait"].append(done - sampled)
                times[name]["reward"].append(sum(raw.seconds.values()))
    scorers["actors 1t+1t"][0].close()
    torch.set_num_threads(args.local_threads)
    rows = []
    for name, series in times.items():
        step_s, reward_s = statistics.median(series["step"]), statistics.median(series["reward"])
        wait_s = statistics.median(series["wait"])
        inline = name.startswith("in-process")
        rows.append({"rewards": name, "shards": args.shards, "step_s": step_s, "reward_work_s": reward_s,
                     "driver_wait_s": wait_s, "overlap": 0.0 if inline else max(0.0, 1 - wait_s / reward_s),
                     "vs_in_process_2t": step_s / statistics.median(times["in-process 2t"]["step"]),
                     "total_equals_in_process_1t": bool(torch.equal(totals[name], totals["in-process 1t"]))})
    return rows


def summarise(args, times: dict, started: dict, sync_bytes: dict, full_bytes: int, threads: dict) -> list[dict]:
    batch = args.prompts * args.group_size
    rows = []
    for name, series in times.items():
        step_s = [s + g for s, g in zip(series["sync"], series["generate"])]
        generate_s = statistics.median(series["generate"])
        rows.append({
            "backend": name, "workers": 2 if name == "ray×2" else 1, "torch_threads": threads[name],
            "images_per_s": batch / generate_s, "generate_s": generate_s,
            "sync_s": statistics.median(series["sync"]), "step_s": statistics.median(step_s),
            "sync_share": statistics.median(s / t for s, t in zip(series["sync"], step_s)),
            "sync_bytes": sync_bytes[name], "sync_vs_full_model": sync_bytes[name] / full_bytes,
            "start_s": started[name],
        })
    return rows


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.local_threads)
    load_before = os.getloadavg()
    policy = load_policy({"checkpoint": args.checkpoint})
    state = perturbed_adapter(policy, args.seed)
    prompts = list(eval_prompts("train")[: args.prompts])
    # Logical CPUs for all contenders at once: only one of them computes at any moment.
    ray.init(num_cpus=max(os.cpu_count() or 1, 3 + args.reward_actors), include_dashboard=False)
    try:
        backends, started = start_backends(args, policy)
        times = time_steps(args, backends, state, prompts)
        checks = determinism(args, backends, prompts)
        overlap = reward_overlap(args, policy, prompts)
        sync_bytes = {name: (0 if b.shares_policy else adapter_bytes(state) * len(b.actors)) for name, b in backends.items()}
        for backend in backends.values():
            backend.close()
    finally:
        ray.shutdown()
    threads = {"local": args.local_threads, "local-1t": 1, "ray×1": args.local_threads, "ray×2": 1}
    rows = summarise(args, times, started, sync_bytes, model_bytes(policy), threads)
    for row in rows:
        row.update(checks.get(row["backend"], {}))
    report = {
        "machine": machine_info(), "load_average_before": load_before, "checkpoint": args.checkpoint,
        "prompts": args.prompts, "group_size": args.group_size, "batch_size": args.prompts * args.group_size,
        "prefix_steps": args.prefix_steps, "repeats": args.repeats, "warmup": args.warmup,
        "adapter_bytes": adapter_bytes(state), "full_model_bytes": model_bytes(policy),
        "adapter_tensors": len(state), "load_average_after": os.getloadavg(), "rows": rows,
        "reward_overlap": overlap,
    }
    print(records_table(rows, ["backend", "workers", "torch_threads", "images_per_s", "generate_s", "sync_s",
                              "step_s", "sync_share", "sync_bytes", "sync_vs_full_model", "start_s",
                              "tokens_equal", "old_logp_equal", "outputs_max_abs_diff"]))
    print(f"adapter {report['adapter_bytes']:,} bytes per replica vs full model {report['full_model_bytes']:,} bytes "
          f"({report['adapter_bytes'] / report['full_model_bytes']:.2%})")
    print(records_table(overlap, ["rewards", "shards", "step_s", "reward_work_s", "driver_wait_s", "overlap",
                                  "vs_in_process_2t", "total_equals_in_process_1t"]))
    print(f"wrote {write_json_atomic(args.out, report)}")
    return report


if __name__ == "__main__":
    main()
