"""The prefix-GRPO training loop (docs/grpo.md, "The loop"), read top to bottom in loop order:

    SAMPLE    G rollouts per prompt: adapter on for the first m steps, frozen base after
    REWARD    every trained reward, combined into one scalar per sample
    ADVANTAGE group-relative, per prompt
    TRAIN     inner iterations over micro-batches: clipped loss on prefix actions, AdamW on LoRA only
    LOG       metrics (JSONL + wandb): rewards/*, losses/*, charts/*, time/*, debug/*
    EVALUATE  fixed eval prompts, base and current side by side, with the eval-only verifier
    SAVE      atomic checkpoint: adapter, optimizer, scheduler, RNG, step, config, reward statistics
"""

from __future__ import annotations

import json
import math
import signal
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch

from rlalign.config import Config, derived_sizes
from rlalign.evaluation.geneval import evaluate_sets, saved_samples
from rlalign.evaluation.run_report import geneval_table
from rlalign.grpo.advantages import group_advantages, middle_value
from rlalign.grpo.update import grpo_update, rescore_old_logp
from rlalign.policies import Rollout, load_policy, resolve_prefix_steps, resolved_config
from rlalign.rewards.scoring import TimedWorker, make_scorer
from rlalign.rewards.worker import RewardActorFailure, RewardResult, RewardWorker
from rlalign.rollouts import RolloutFailure, make_backend
from rlalign.tasks import check_prompt_words, parse_prompt_source, source_task
from rlalign.training.adapter_card import card_values
from rlalign.training.checkpoint import find_checkpoint, holds_a_run, load_checkpoint, save_checkpoint
from rlalign.training.interrupts import StopRequests, TrainingInterrupted
from rlalign.training.lines import eval_headline, step_line
from rlalign.training.resume import apply_optimizer_settings, check_resume_config
from rlalign.training.run_files import check_writable, prompts_digest, supersede_records
from rlalign.training.setup import build_scheduler, start_ray, stop_ray
from rlalign.utils.failpoints import holdpoint
from rlalign.utils.metrics import MetricsLogger, check_wandb_login
from rlalign.utils.progress import Progress
from rlalign.utils.rows import prompt_text
from rlalign.utils.run_lock import RunLock
from rlalign.utils.seeding import grouped_generators
from rlalign.utils.warning_lines import RlalignWarning


class Trainer:
    """Holds the run's pieces; `run()` is the loop."""

    def __init__(self, cfg: Config, *, resume: str | None = None, accept_changes: Sequence[str] = (),
                 callables: Mapping[str, Callable] | None = None):
        """`callables`: rewards given as Python objects, by spec name (`python:LABEL`, rlalign.api)."""
        self.cfg = cfg
        self.output_dir = Path(cfg.output_dir)
        check_writable(self.output_dir)
        check_wandb_login(cfg.logging.wandb_mode)  # before any work
        self.lock = RunLock(self.output_dir)  # one writer per run directory (train, resume, sweep members)
        try:
            self._build(cfg, resume, accept_changes, callables)
        except BaseException:
            self.lock.release()
            raise

    def _build(self, cfg: Config, resume: str | None, accept_changes: Sequence[str],
               callables: Mapping[str, Callable] | None) -> None:
        torch.manual_seed(cfg.seed)
        self.policy = load_policy(cfg.policy)
        self.prefix_steps = resolve_prefix_steps(cfg.grpo.prefix_steps, self.policy.num_steps)
        self.owns_ray = start_ray(cfg)
        self.backend = make_backend(cfg.rollout, cfg.policy, self.policy, cfg.seed)
        tokenizer = self.policy.completion_tokenizer()  # text families: rewards get TRL's completion_ids
        self.rewards = RewardWorker(cfg.rewards.functions, cfg.rewards.combine, eps=cfg.grpo.advantage_eps,
                                    tokenizer=tokenizer, callables=callables)
        self.scorer = make_scorer(cfg.rewards, self.rewards, cfg.rollout.ray_address)
        self.eval_rewards = TimedWorker(RewardWorker(cfg.rewards.functions + cfg.rewards.eval, combine=None,
                                                     tokenizer=tokenizer, callables=callables), cfg.rewards.timeout_s)
        self.train_prompts = parse_prompt_source(cfg.prompts.train, cfg.prompts.task)
        eval_sources = {name: parse_prompt_source(src, cfg.prompts.task) for name, src in cfg.prompts.eval.items()}
        self.eval_prompts = {name: source.all() for name, source in eval_sources.items()}
        self.eval_tasks = {name: source_task(source) for name, source in eval_sources.items()}
        named = {f"prompts.eval.{name} ({cfg.prompts.eval[name]})": p for name, p in self.eval_prompts.items()}
        if self.train_prompts.fixed is not None:
            named[f"prompts.train ({cfg.prompts.train})"] = self.train_prompts.all()
        check_prompt_words(self.policy, named, allow_unknown=cfg.prompts.allow_unknown_words)
        self.optimizer = torch.optim.AdamW(self.policy.trainable_parameters(), lr=cfg.train.learning_rate,
                                           weight_decay=cfg.train.weight_decay)
        self.scheduler = build_scheduler(self.optimizer, cfg.train, cfg.grpo.inner_iterations)
        self.start_step, self.skipped_updates, self.base_eval, self.steps_without_signal = 0, 0, {}, 0
        self.last_evaluation: dict | None = None  # for the adapter card (rlalign.training.adapter_card)
        self.history: list[dict] = []
        if resume:
            self._resume(find_checkpoint(resume), accept_changes)
        elif holds_a_run(self.output_dir):
            raise FileExistsError(f"output_dir {self.output_dir} already holds a run; continue it with --resume "
                                  f"{self.output_dir}, or choose another output_dir (nothing was overwritten)")
        self.logger = MetricsLogger(self.output_dir, wandb_mode=cfg.logging.wandb_mode, project=cfg.logging.project,
                                    run_name=cfg.logging.run_name, config=resolved_config(cfg), resume=bool(resume))
        self.progress = Progress(cfg.train.steps, "step", enabled=cfg.logging.progress_bar, initial=self.start_step)

    # ---------------------------------------------------------------------------------------------
    # The loop
    # ---------------------------------------------------------------------------------------------

    def run(self, *, stop_after: int | None = None) -> dict:
        """Train to cfg.train.steps (or stop after step `stop_after`, for tests of resuming)."""
        cfg = self.cfg
        print(f"[rlalign] {derived_sizes(cfg)}, m = {self.prefix_steps} of T = {self.policy.num_steps}", flush=True)
        last = cfg.train.steps if stop_after is None else min(cfg.train.steps, stop_after)
        self.last_step = self.start_step  # the last finished step
        holdpoint("train:started")  # the fault suite starts a second writer here (rlalign.utils.failpoints)
        with StopRequests() as stop:
            try:
                if self.start_step == 0:
                    self.evaluate(step=0)
                self._steps(last, stop)
            except (RolloutFailure, RewardActorFailure) as failure:
                raise self._stop_on_actor_failure(failure, failed_step=self.last_step + 1) from failure
            finally:
                self.progress.close()
                self.scorer.close()  # Ray actors hold CPUs/GPUs until stopped
                self.backend.close()
                if self.owns_ray:
                    stop_ray()
                self.lock.release()  # the run writes nothing more (closing the log only flushes it)
        self.logger.close()
        return {"steps": last, "history": self.history, "base_eval": self.base_eval}

    def _steps(self, last: int, stop: StopRequests) -> None:
        """The loop over steps (module docstring); stops after a finished step on SIGINT / SIGTERM."""
        cfg = self.cfg
        if stop.received is not None:
            raise self._stop_on_signal(stop.received)
        for step in range(self.start_step + 1, last + 1):
            metrics = self.train_step(step)
            self.last_step = step
            if step % cfg.logging.log_every == 0 or step == last:
                self.logger.log(metrics, step=step)
            self.history.append(metrics)
            self._print_progress(step, metrics)
            self._watch_learning_signal(step, metrics)
            if (cfg.train.eval_every and step % cfg.train.eval_every == 0) or step == cfg.train.steps:
                self.evaluate(step)
            if (cfg.train.save_every and step % cfg.train.save_every == 0) or step == last:
                self.save(step)
            if stop.received is not None and step < last:  # SIGINT / SIGTERM: this step is done and logged
                raise self._stop_on_signal(stop.received)

    def train_step(self, step: int) -> dict[str, float]:
        cfg, started = self.cfg, time.perf_counter()
        # ---- SAMPLE: prompts of this step, G samples each, from the frozen-suffix policy ----------
        prompts = self.train_prompts.draw(cfg.train.prompts_per_step, seed=cfg.seed * 1_000_003 + step)
        sync_bytes = self.backend.sync(step, None if self.backend.shares_policy else self.policy.adapter_state())
        synced = time.perf_counter()
        # Each shard goes to the rewards as soon as it is sampled: reward actors score it meanwhile.
        state = {"trainer_state": self.trainer_state(step - 1)}  # TRL's reward keyword (rlalign.rewards.calls)
        on_shard = ((lambda index, shard: self.scorer.submit(index, shard.prompts, shard.outputs, state))
                    if cfg.grpo.suffix_samples == 1 else None)
        rollout = self.backend.generate(prompts, cfg.grpo.group_size, self.prefix_steps, step, on_shard=on_shard)
        scoring_in_rollout = self.scorer.busy_s
        # Workers in other processes (or other shard sizes) score old_logp with other float reduction orders, and
        # bf16 depends on the batch layout: score it here, in the update's micro-batches.
        in_one_piece = (self.backend.shares_policy and cfg.rollout.shards <= 1 and cfg.policy.precision == "fp32"
                        and (getattr(self.policy, "log_prob_batch_invariant", True)
                             or len(rollout) <= cfg.train.micro_batch_size))
        worker_gap = 0.0 if in_one_piece else rescore_old_logp(self.policy, rollout, cfg.train.micro_batch_size)
        sampled = time.perf_counter()
        # ---- REWARD: every trained reward → one combined scalar per sample ------------------------
        result, rewards_B = self.score_rollout(rollout, step)
        rewarded = time.perf_counter()
        # ---- ADVANTAGE: relative within each prompt's group ----------------------------------------
        advantages_B = group_advantages(rewards_B, rollout.group_ids, scale=cfg.grpo.scale_rewards,
                                        eps=cfg.grpo.advantage_eps, std=cfg.grpo.advantage_std)
        # ---- TRAIN: clipped loss on prefix actions, AdamW on the LoRA parameters -------------------
        update = grpo_update(self.policy, self.optimizer, self.scheduler, rollout, advantages_B, cfg.grpo, cfg.train)
        self._stop_if_not_finite(step, update)
        self.skipped_updates += int(update["debug/skipped_updates"])
        updated = time.perf_counter()
        middle = {"rewards/middle_value/mean": float(rewards_B.nanmean())} if cfg.grpo.suffix_samples > 1 else {}
        return {
            **result.metrics(), **middle, **update,
            "debug/skipped_updates_total": self.skipped_updates,
            "debug/advantage_abs_mean": float(advantages_B.abs().mean()),
            "debug/finite_rewards": int(rewards_B.isfinite().sum()),
            "debug/sampler_logp_gap": float(rollout.sampler_logp_gap.max()),
            "debug/worker_logp_gap": worker_gap,
            "debug/sync_bytes": sync_bytes,
            "time/sync": synced - started, "time/rollout": sampled - synced - scoring_in_rollout,
            "time/reward": rewarded - sampled + scoring_in_rollout,
            "time/update": updated - rewarded, "time/step": updated - started,
        }

    def score_rollout(self, rollout: Rollout, step: int) -> tuple[RewardResult, torch.Tensor]:
        """The trained rewards and each sample's reward [B] for its advantage.

        With grpo.suffix_samples K > 1 (the middle value, docs/grpo.md) each prefix is finished K more
        times by the frozen suffix here on the driver, all B·K samples are scored, and a prefix's
        reward is η·log mean_k exp(R_k/η) of its K combined rewards; the rollout's own ending only
        served to sample the prefix. The logged reward statistics are then over the B·K samples.
        """
        k = self.cfg.grpo.suffix_samples
        if k == 1:  # the shards were submitted as they were sampled
            result = self.rewards.finish(self.scorer.collect())
            self._write_reward_extras(step, rollout.prompts, result)
            return result, result.total
        generators = grouped_generators(self.cfg.seed, "suffix", step, len(rollout), k)
        outputs, prompts, _ = self.policy.complete(rollout, k, generator=generators)
        self.scorer.submit(0, prompts, outputs, {"trainer_state": self.trainer_state(step - 1)})
        result = self.rewards.finish(self.scorer.collect())
        self._write_reward_extras(step, prompts, result)
        return result, middle_value(result.total.view(len(rollout), k), self.cfg.grpo.middle_value_eta)

    def trainer_state(self, finished_steps: int):
        """What TRL's rewards get as `trainer_state`: a transformers TrainerState whose `global_step` is, as
        in TRL, the number of training steps finished before the call (step N's rollout sees N − 1)."""
        from transformers import TrainerState

        return TrainerState(global_step=finished_steps, max_steps=self.cfg.train.steps)

    def _write_reward_extras(self, step: int, prompts: Sequence, result: RewardResult) -> None:
        """The columns rewards gave `log_extra`, one line per step in reward_extras.jsonl, and a wandb table."""
        if not result.extras:
            return
        texts = [prompt_text(p) for p in prompts]
        row = {"step": step, "prompt": [t if isinstance(t, str) else str(getattr(t, "prompt", t)) for t in texts],
               "reward": [v if math.isfinite(v) else None for v in result.total.tolist()], **result.extras}
        line = json.dumps(row, default=str)  # values a reward logged that JSON cannot hold are written as text
        with (self.output_dir / "reward_extras.jsonl").open("a", encoding="utf-8") as file:
            file.write(line + "\n")
        plain = json.loads(line)
        columns = [name for name in plain if name != "step"]
        self.logger.log_media(step, tables={"reward_extras": (columns, list(zip(*(plain[c] for c in columns))))})

    # ---------------------------------------------------------------------------------------------
    # Evaluation, checkpoints, progress
    # ---------------------------------------------------------------------------------------------

    def evaluate(self, step: int) -> dict[str, float]:
        """Eval prompts × eval_samples_per_prompt with the adapter (prefix m) and, once, the base."""
        with_base = not self.base_eval  # the first evaluation also samples the base, as many samples again
        with self.progress.paused():  # the rate counts training steps; evaluations are added per evaluation
            metrics = self._evaluate(step)
        every, last = self.cfg.train.eval_every, self.cfg.train.steps
        remaining = (last // every - step // every if every else 0) + int(step < last and (not every or last % every))
        self.progress.extra_left = remaining * metrics["time/eval"] / (2 if with_base else 1)
        return metrics

    def _evaluate(self, step: int) -> dict[str, float]:
        started = time.perf_counter()
        sizes = ", ".join(f"{name} {len(prompts)}×{self.cfg.prompts.eval_samples_per_prompt}"
                          for name, prompts in self.eval_prompts.items())
        self.progress.write(f"[rlalign] evaluating step {step} ({'base and ' if not self.base_eval else ''}adapter; "
                            f"{sizes} samples)")
        metrics = evaluate_sets(self.policy, self.eval_prompts, self.eval_rewards,
                                samples_per_prompt=self.cfg.prompts.eval_samples_per_prompt, seed=self.cfg.seed,
                                prefix_steps=self.prefix_steps, grid_dir=self.output_dir / "samples", step=step,
                                base_cache=self.base_eval, batch_size=self.cfg.prompts.eval_batch_size,
                                tasks=self.eval_tasks, metadata={"trainer_state": self.trainer_state(step)})
        metrics["time/eval"] = time.perf_counter() - started
        self.logger.log(metrics, step=step)
        self.last_evaluation = {"step": step, "sets": {name: numbers for name in self.eval_prompts
                                                       if (numbers := geneval_table(metrics, name)[1])}}
        self.logger.log_media(step, *saved_samples(self.output_dir / "samples", step, self.eval_prompts))
        self.progress.write(f"[rlalign] eval step {step} ({metrics['time/eval']:.0f} s): "
                            + eval_headline(metrics, list(self.eval_prompts)))
        return metrics

    def save(self, step: int) -> Path:
        extra = {"skipped_updates": self.skipped_updates, "last_evaluation": self.last_evaluation,
                 "train_prompts_digest": prompts_digest(self.train_prompts),
                 "base_eval": {k: v["scores"] for k, v in self.base_eval.items()},
                 "base_eval_images": {k: v["images"] for k, v in self.base_eval.items()}}
        card = card_values(self.cfg, num_steps=self.policy.num_steps, prefix_steps=self.prefix_steps, step=step,
                           evaluation=self.last_evaluation)
        return save_checkpoint(self.output_dir, step, policy=self.policy, optimizer=self.optimizer,
                               scheduler=self.scheduler, config=resolved_config(self.cfg), extra=extra, card=card)

    def _watch_learning_signal(self, step: int, metrics: dict[str, float]) -> None:
        """Warn on a step whose trained rewards gave no finite value; save and stop after
        train.stop_after_steps_without_signal consecutive steps whose advantages were all 0."""
        if metrics["debug/finite_rewards"] == 0:
            warnings.warn(f"step {step}: no trained reward gave a finite value for any sample (every value None, "
                          "NaN or skipped): this step learns nothing", RlalignWarning, stacklevel=2)
        self.steps_without_signal = self.steps_without_signal + 1 if metrics["debug/advantage_abs_mean"] == 0 else 0
        limit = self.cfg.train.stop_after_steps_without_signal
        if limit and self.steps_without_signal >= limit:
            saved = self._save_before_stopping(step)
            raise NoLearningSignal(
                f"stopped at step {step}: the last {limit} steps had no learning signal (every advantage 0: the "
                f"trained rewards were None/NaN for every sample, or equal within every group), so the adapter "
                f"only drifted. Check the rewards (rlalign score CONFIG PATH) or their on_error setting; "
                f"{saved}; set train.stop_after_steps_without_signal=0 to train on regardless")

    def _stop_if_not_finite(self, step: int, update: dict[str, float]) -> None:
        """Stop at the first non-finite loss, gradient norm or adapter value, saving nothing: the newest
        checkpoint (the last finite state written) stays as it is, and the message says which it is."""
        problems = []
        if update["debug/skipped_updates"]:
            problems.append(f"{int(update['debug/skipped_updates'])} of {self.cfg.grpo.inner_iterations} updates "
                            "had a non-finite loss or gradient norm (they were not applied)")
        bad = sum(int((~torch.isfinite(p)).sum()) for p in self.policy.trainable_parameters())
        if bad:
            problems.append(f"{bad} adapter values are inf or NaN")
        if not problems:
            return
        latest = self.output_dir / "checkpoints" / "latest"
        what_now = (f"The newest checkpoint, {latest.read_text().strip()}, is intact (nothing was saved after it): "
                    f"resume from it with a smaller learning rate (rlalign train CONFIG --resume {self.output_dir} "
                    "--accept-changes train.learning_rate)" if latest.is_file() else
                    "No checkpoint was written yet: start again with other settings")
        self.logger.close()
        raise NonFiniteTraining(
            f"training stopped at step {step}: {'; '.join(problems)}. Usual causes: a learning rate too large "
            f"(train.learning_rate={self.cfg.train.learning_rate:g}), a temperature near 0 (policy.temperature), "
            f"a reward of extreme size. {what_now}")

    def _save_before_stopping(self, step: int) -> str:
        """Checkpoint `step` (the last finished one) if it is new, close the logger; say what was kept."""
        saved = (f"checkpoint of step {step} saved at {self.save(step)}" if step > self.start_step
                 else f"no step finished since step {self.start_step}, nothing new to save")
        self.logger.close()
        return saved

    def _stop_on_signal(self, signum: int) -> TrainingInterrupted:
        """After SIGINT / SIGTERM: checkpoint the last finished step and say how to continue."""
        name, step = signal.Signals(signum).name, self.last_step
        holdpoint("stop:save")  # tests send the second signal here (rlalign.utils.failpoints)
        saved = self._save_before_stopping(step)
        return TrainingInterrupted(signum, f"stopped by {name} after step {step}: {saved}; continue with "
                                           f"rlalign train CONFIG --resume {self.output_dir}")

    def _stop_on_actor_failure(self, failure: RolloutFailure | RewardActorFailure,
                               failed_step: int) -> RolloutFailure | RewardActorFailure:
        """A rollout worker failed beyond rollout.max_retries, or a reward actor failed: keep what the
        completed steps learned (a checkpoint of step failed_step − 1) and say how to continue."""
        saved = self._save_before_stopping(failed_step - 1)
        resumable = (self.output_dir / "checkpoints" / "latest").is_file()
        message = (f"{failure}\nstopped at step {failed_step}: {saved}; fix the cause, then "
                   + (f"continue with --resume {self.output_dir}" if resumable else
                      "start the run again (no checkpoint exists to resume from)"))
        if isinstance(failure, RolloutFailure):
            return RolloutFailure(message, worker=failure.worker, shard=failure.shard, cause=failure.cause)
        return RewardActorFailure(message)

    def _resume(self, checkpoint: Path, accept_changes: Sequence[str]) -> None:
        """Restore the checkpoint; refuse config changes that alter training unless accepted (rlalign.training.resume)."""
        state = load_checkpoint(checkpoint, policy=self.policy, optimizer=self.optimizer, scheduler=self.scheduler)
        self.start_step, self.skipped_updates = state["step"], state["skipped_updates"]
        self.last_evaluation = state.get("last_evaluation")  # for the adapter card
        factor = self.scheduler.lr_lambdas[0]  # this config's schedule: loading a state keeps its settings
        then, now = state.get("train_prompts_digest"), prompts_digest(self.train_prompts)
        edited = {"prompts.train": (f"{self.cfg.prompts.train} (prompts digest {then})",
                                    f"the same source, now digest {now}")} if then and now and then != now else {}
        notes = check_resume_config(checkpoint, resolved_config(self.cfg), accept_changes, self.start_step, factor,
                                    self.scheduler.last_epoch, resolved=edited)
        apply_optimizer_settings(self.optimizer, self.scheduler, self.cfg.train.learning_rate,
                                 self.cfg.train.weight_decay)
        for note in notes:
            print(f"[rlalign] resume: {note}", flush=True)
        self.base_eval = {name: {"scores": scores, "images": state["base_eval_images"][name]}
                          for name, scores in state["base_eval"].items()}
        for log in ("metrics", "reward_extras"):
            supersede_records(self.output_dir, log, after_step=self.start_step)
        print(f"[rlalign] resumed from {checkpoint} at step {self.start_step}", flush=True)

    def _print_progress(self, step: int, metrics: dict[str, float]) -> None:
        self.progress.update(step_line(metrics, self.cfg.rewards.functions))


class NonFiniteTraining(ValueError):
    """Training stopped because a loss, gradient norm or adapter value was inf or NaN."""


class NoLearningSignal(ValueError):
    """Training stopped because the advantages were all 0 for train.stop_after_steps_without_signal steps."""


def train(cfg: Config, *, resume: str | None = None, stop_after: int | None = None,
          accept_changes: Sequence[str] = ()) -> dict:
    """Build a Trainer and run it; returns {steps, history, base_eval}."""
    return Trainer(cfg, resume=resume, accept_changes=accept_changes).run(stop_after=stop_after)

