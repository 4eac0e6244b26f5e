"""The single configuration schema: typed dataclasses, each field documented once under it.

YAML files hold values only; `load_config(path, overrides)` reads one, applies command-line
overrides `section.key=value`, and builds the dataclass tree. Unknown keys, wrong types,
out-of-range values and impossible combinations fail here, at load time, with a ConfigError that
names the key, the value and what is allowed (see rlalign/config/loading.py for the machinery).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from rlalign.config.checks import check_combinations, expand_paths
from rlalign.config.loading import bounded, build


@dataclass
class LoraConfig:
    rank: int = bounded(8, ge=1)
    """LoRA rank r of every adapted Linear layer."""
    alpha: float = bounded(16.0, gt=0)
    """LoRA scale numerator: an adapted layer adds (alpha / rank) · B A x to its output."""
    dropout: float = bounded(0.0, ge=0, lt=1)
    """Dropout on the LoRA branch input; keep 0 so rollout and update log-probs agree exactly."""
    target_modules: list[str] = field(default_factory=list)
    """Names (or name suffixes) of the nn.Linear modules that receive adapters; empty: the family's own
    (next_scale, insertion: mat_qkv, proj, fc1, fc2; edit_flow on ModernBERT: Wqkv, Wo, Wi)."""


@dataclass
class PolicyConfig:
    kind: str = "next_scale"
    """Generator family: `next_scale` (VAR-style image model), `insertion` (the built-in insertion captioner),
    `edit_flow` (a dllm-format Edit Flow checkpoint: insert, delete, substitute; docs/edit_flow.md),
    `infinity` (an Infinity text-to-image checkpoint: bitwise tokens, T5 text; docs/infinity.md), a name an
    installed package registers (entry points `rlalign.policies`), or `module:Class` of a family of your own
    (docs/extending.md)."""
    checkpoint: str = "builtin:shapes-nextscale"
    """`builtin:NAME` for a shipped asset, or a local path (for VAR: the transformer weights; for edit_flow: the
    checkpoint directory; for infinity: a directory laid out like shared/golden/infinity, or the transformer's
    `.pth`/`.safetensors` file or sharded directory)."""
    vae_checkpoint: str = ""
    """Local path of the VQVAE weights when importing an official VAR checkpoint, or of the BSQ VAE for an
    official Infinity transformer file; empty otherwise."""
    architecture: dict[str, Any] = field(default_factory=dict)
    """Architecture of an imported checkpoint (for VAR: the keys of shared/golden/var/config.json; for infinity:
    `preset: infinity_2b` or `infinity_8b`, and/or explicit sizes, docs/infinity.md)."""
    cfg_scale: float | None = bounded(None, ge=0)
    """Classifier-free guidance strength; null: the family's default (next_scale, insertion: 0, i.e. off;
    infinity: 3, the public sampler's). next_scale ramps it over scales (docs/next_scale.md), infinity holds
    it constant and mixes cfg·ℓ_cond + (1 − cfg)·ℓ_uncond, so there 1 turns it off (docs/infinity.md)."""
    temperature: float | None = bounded(None, gt=0)
    """Sampling temperature applied to the (CFG-mixed) logits; null: the family's default (1; infinity: 0.5)."""
    top_k: int | None = bounded(None, ge=0)
    """Keep only the k most likely tokens before sampling, 0 keeps all; null: the family's default (0;
    infinity: 900, which on two-valued bits keeps both)."""
    top_p: float | None = bounded(None, gt=0, le=1)
    """Keep the smallest set of tokens whose probability reaches top_p, 1 keeps all; null: the family's
    default (1; infinity: 0.97)."""
    device: str = "cpu"
    """Torch device of the policy (`cpu`, `cuda`, `cuda:1`, `mps`, `xpu`); one this machine lacks is refused
    when the policy is built."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """Forward passes (rollout, re-scoring, update) in float32, or under bfloat16 autocast with float32 master
    weights, LoRA parameters and optimizer (rlalign/policies/precision.py); old log-probs are then re-scored
    in the update's micro-batches so the on-policy check stays exact."""
    insertion: dict[str, Any] = field(default_factory=dict)
    """Insertion family only: the number of insertion steps, validated by the family (their keys: the
    `policy.insertion` section below)."""
    edit_flow: dict[str, Any] = field(default_factory=dict)
    """Edit Flow family only: the τ-leap sampler's settings, validated by the family (their keys: the
    `policy.edit_flow` section below)."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    """The LoRA adapter that carries every update (the base weights never change)."""
    infinity: dict[str, Any] = field(default_factory=dict)
    """Infinity family only: text encoder, resolution and schedule, validated by the family (their keys: the
    `policy.infinity` section below)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Settings of a family from outside rlalign, passed to it as they are (docs/extending.md)."""

    def sampling(self, **family_defaults: Any) -> dict[str, Any]:
        """cfg_scale, temperature, top_k and top_p, each null one replaced by the family's default
        (`family_defaults`) or, failing that, by the general one (CFG off, τ 1, no truncation)."""
        defaults = {**SAMPLING_DEFAULTS, **family_defaults}
        return {name: defaults[name] if getattr(self, name) is None else getattr(self, name) for name in SAMPLING_DEFAULTS}


SAMPLING_DEFAULTS: dict[str, Any] = {"cfg_scale": 0.0, "temperature": 1.0, "top_k": 0, "top_p": 1.0}
"""What a null sampling setting means for a family that names no default of its own."""


@dataclass
class PromptsConfig:
    train: str = "shapes:heldout"
    """Training prompts, a source `kind:argument`: `file:PATH` (one prompt per line), `jsonl:PATH` (TRL-style
    rows), `hf:PATH_OR_NAME[:SPLIT][?column=NAME]` (Hugging Face datasets rows: a save_to_disk directory, a
    data file or a Hub dataset already in the local cache, read offline), `classes:A-B` (class ids, for
    class-conditional VAR), or a task's own kind: `shapes:SPLIT` (the six GenEval categories of the Shapes
    grammar in equal shares, never an evaluation-list string where the category has others),
    `shapes-eval:SPLIT[:CATEGORY]` (a fixed list), `shapes-scenes:SPLIT` (described scenes, for the
    captioner), `sums:SPLIT` (rlalign/tasks/sources.py lists them all)."""
    eval: dict[str, str] = field(
        default_factory=lambda: {"heldout": "shapes-eval:heldout", "train": "shapes-eval:train"}
    )
    """Named evaluation prompt sources (same forms as `train`); metrics appear as eval/<name>/... (where a
    task's verifier judges the set, a GenEval-style table: per category and overall). A config's mapping
    replaces the default one whole."""
    task: str | None = None
    """The task whose verifier judges the task-free sources (`file:`, `jsonl:`, `hf:`, `classes:`) and whose own
    source kinds the config may use: a built-in task (shapes, sums), an installed one, or `module:attr`
    naming an rlalign.tasks.Task of your own (docs/extending.md). A task's own sources are always judged by
    it; null leaves the task-free sources unjudged (reward means only)."""
    eval_samples_per_prompt: int = bounded(8, ge=1)
    """Samples drawn per evaluation prompt."""
    eval_batch_size: int = bounded(64, ge=1)
    """Samples per policy call in evaluation and `rlalign sample` (a batch holds its KV cache: lower it for
    large models). Every sample has its own seed, so the batch changes a sample only where float rounding
    moves a draw across its threshold."""
    allow_unknown_words: bool = False
    """Accept prompt words the policy's text encoder does not know (each reads as <unk>); by default
    such prompts are refused when the run starts, naming the words."""


@dataclass
class RewardSpec:
    name: str = "shapes_eval"
    """A registered reward name (see rewards/registry.py), an importable `module:function` (args bound to it),
    or `module:factory()` (called once with args; it returns the reward, as TRL's `get_*_reward` do)."""
    weight: float = 1.0
    """Weight of this reward in the combined reward (0 logs it without training on it)."""
    on_error: Literal["raise", "skip"] = "raise"
    """On a bad output (wrong length, non-finite, exception): stop with an error, or NaN the samples."""
    label: str = ""
    """Metric name (rewards/<label>/...); empty uses `name`."""
    args: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for the reward's factory (weights path, architecture, ...)."""
    completion_format: Literal["auto", "plain", "conversational"] = "auto"
    """How text completions reach it: plain strings, or TRL's conversational messages ([{"role": "assistant",
    "content": text}], prompts as user messages); auto: conversational for trl.rewards functions that read them."""


@dataclass
class RewardsConfig:
    functions: list[RewardSpec] = field(default_factory=list)
    """The trained rewards, combined into one scalar per sample (at least one is required)."""
    combine: Literal["normalize_then_sum", "sum_then_normalize"] = "sum_then_normalize"
    """`normalize_then_sum` standardises each reward over the batch before the weighted sum."""
    eval: list[RewardSpec] = field(default_factory=lambda: [RewardSpec(name="shapes_eval")])
    """Evaluation-only rewards: computed at evaluation, never seen by the training objective."""
    backend: Literal["local", "ray"] = "local"
    """Where the trained rewards run: `local` in the trainer's process; `ray` on reward actors, each rollout
    shard scored as soon as it is sampled, while the next one is sampled (docs/distributed.md)."""
    num_workers: int = bounded(1, ge=1)
    """Reward actors (rewards.backend=ray); shards go to them in turn."""
    cpus_per_worker: float = bounded(1.0, gt=0)
    """CPUs reserved per reward actor."""
    gpus_per_worker: float = bounded(0.0, ge=0)
    """GPUs reserved per reward actor (fractions allowed); a reward's own `device` arg says where it runs."""
    torch_threads: int = bounded(0, ge=0)
    """torch.set_num_threads in each reward actor; 0 leaves Ray's default (its CPUs per actor)."""
    timeout_s: float = bounded(600.0, gt=0, le=10**9)
    """Seconds to wait for one shard's rewards before the run saves and stops (at most 1e9, about 31 years:
    a longer wait overflows the operating system's timers)."""


@dataclass
class GrpoConfig:
    group_size: int = bounded(8, ge=2)
    """G: samples per prompt; advantages compare samples within a group, so G ≥ 2."""
    prefix_steps: int | Literal["all"] = 2
    """m: the first m generation steps are trained (adapter on); `all` trains every step."""
    loss_type: Literal["grpo", "dr_grpo", "dapo", "gspo", "bnpo", "cispo", "sapo"] = "grpo"
    """Loss family, with TRL's names (docs/grpo.md derives each)."""
    clip_eps: float = bounded(0.2, gt=0, lt=1)
    """Lower clip range: the ratio is clipped to [1 - clip_eps, 1 + clip_eps_high]."""
    clip_eps_high: float | None = None
    """Upper clip range (DAPO's clip-higher); None uses clip_eps. For cispo: ε_max, the cap on the ratio."""
    beta: float = bounded(0.0, ge=0)
    """Coefficient of the KL penalty to the base model over prefix actions; 0 disables it."""
    kl_bias_correction: bool = True
    """Multiply the k3 KL term by the importance ratio (TRL's use_bias_correction_kl, on by default there)."""
    scale_rewards: Literal["group", "batch", "none"] = "group"
    """Divide advantages by the group's std, the batch's std, or not at all (Dr. GRPO)."""
    advantage_std: Literal["sample", "population"] = "sample"
    """The std in A = (R − mean) / (std + ε): sample (n − 1, TRL's) or population (n)."""
    advantage_eps: float = bounded(1e-4, gt=0)
    """ε in A = (R − mean) / (std + ε)."""
    dr_grpo_length: int | None = None
    """dr_grpo only: None divides by the padded prefix width; L divides every sample by L (TRL's max_completion_length)."""
    sapo_temperature_pos: float = bounded(1.0, gt=0)
    """sapo only: τ of the soft gate for samples with A > 0."""
    sapo_temperature_neg: float = bounded(1.05, gt=0)
    """sapo only: τ of the soft gate for samples with A ≤ 0."""
    step_weight_alpha: float = bounded(1.0, ge=0)
    """α of the step weights k_t ∝ 1 / A_t^α (1: each step counts equally; 0: each action does)."""
    inner_iterations: int = bounded(1, ge=1)
    """Passes over each rollout batch (μ in the GRPO paper); > 1 makes later passes off-policy."""
    suffix_samples: int = bounded(1, ge=1)
    """K frozen completions per prefix for the middle-value reward (1 disables it)."""
    middle_value_eta: float = bounded(1.0, gt=0)
    """η of the middle value η · log mean exp(R_k / η) over the K completions."""


@dataclass
class TrainConfig:
    steps: int = bounded(100, ge=1)
    """Number of GRPO steps (one rollout batch each)."""
    prompts_per_step: int = bounded(8, ge=1)
    """Distinct prompts per step; each is sampled group_size times."""
    micro_batch_size: int = bounded(16, ge=1)
    """Samples per forward/backward pass; must divide prompts_per_step × group_size. Gradients are
    accumulated over a step's micro-batches: one optimizer step per inner iteration."""
    learning_rate: float = bounded(1e-4, gt=0)
    """Peak AdamW learning rate of the LoRA parameters."""
    lr_schedule: Literal["constant", "cosine", "linear"] = "constant"
    """Learning-rate decay after warm-up."""
    warmup_steps: int = bounded(0, ge=0)
    """Optimizer steps of linear warm-up from 0 to learning_rate."""
    weight_decay: float = bounded(0.0, ge=0)
    """AdamW decoupled weight decay."""
    max_grad_norm: float = bounded(1.0, gt=0)
    """Gradients are clipped to this global L2 norm."""
    eval_every: int = bounded(0, ge=0)
    """Evaluate every N steps (and always at the end); 0 evaluates only at the start and end."""
    save_every: int = bounded(0, ge=0)
    """Checkpoint every N steps (and always at the end); 0 saves only at the end."""
    stop_after_steps_without_signal: int = bounded(20, ge=0)
    """Save and stop after this many consecutive steps whose advantages are all 0 (no trained reward
    finite, or every group's rewards equal): nothing is being learned. 0 never stops."""


@dataclass
class RolloutConfig:
    backend: Literal["local", "ray"] = "local"
    """`local`: workers in this process; `ray`: workers as Ray actors."""
    num_workers: int = bounded(1, ge=1)
    """Rollout workers (policy replicas); a step's prompts are sharded across them."""
    cpus_per_worker: float = bounded(1.0, gt=0)
    """CPUs reserved per Ray actor."""
    gpus_per_worker: float = bounded(0.0, ge=0)
    """GPUs reserved per Ray actor (fractions allowed)."""
    torch_threads: int = bounded(0, ge=0)
    """torch.set_num_threads in each worker; 0 leaves torch's default."""
    shards: int = bounded(0, ge=0)
    """Prompt shards a step's rollout is cut into, sampled in turn (local backend); each is handed to the rewards
    as soon as it is sampled. 0: one per worker. The Ray backend samples one shard per actor."""
    ray_address: str = ""
    """Empty: start a local Ray (rollout or reward actors); `auto` or `HOST:PORT`: join an existing cluster."""
    timeout_s: float = bounded(600.0, gt=0, le=10**9)
    """Seconds to wait for one worker's shard before treating the worker as dead (at most 1e9, as
    rewards.timeout_s)."""
    max_retries: int = bounded(2, ge=0)
    """Re-creations of a dead worker per step before the run saves and stops."""


@dataclass
class LoggingConfig:
    wandb_mode: Literal["offline", "online", "disabled"] = "offline"
    """wandb mode; `offline` writes runs under output_dir/wandb to sync later."""
    project: str = "rlalign"
    """wandb project name."""
    run_name: str = ""
    """Run name for wandb and the console; empty derives it from output_dir."""
    log_every: int = bounded(1, ge=1)
    """Write metrics every N steps (JSONL at output_dir/metrics.jsonl and wandb)."""
    progress_bar: bool = True
    """Show progress bars for long work."""


@dataclass
class Config:
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    """The generator being aligned."""
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    """Where training and evaluation prompts come from."""
    rewards: RewardsConfig = field(default_factory=RewardsConfig)
    """Trained and evaluation-only reward functions."""
    grpo: GrpoConfig = field(default_factory=GrpoConfig)
    """The objective."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """The optimisation loop."""
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    """Where and how samples are generated."""
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    """Metrics, wandb and console output."""
    seed: int = bounded(0, ge=0, le=2**31 - 1)
    """Seed of everything random in a run (prompts, sampling, initialisation)."""
    output_dir: str = "runs/default"
    """Directory for metrics, checkpoints, sample grids and the resolved config."""


def load_config(source: str | dict | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Build a Config from a YAML path (or a dict, or defaults) plus `section.key=value` overrides."""
    cfg = build(Config, source, overrides)
    expand_paths(cfg)
    check_combinations(cfg)
    return cfg


def derived_sizes(cfg: Config) -> dict[str, int]:
    """Sizes implied by the config, printed at start so nobody has to do the arithmetic."""
    samples = cfg.train.prompts_per_step * cfg.grpo.group_size
    micro_batches = samples // cfg.train.micro_batch_size
    return {
        "samples_per_step": samples,
        "micro_batches_per_step": micro_batches,
        "optimizer_steps_per_step": cfg.grpo.inner_iterations,
        "total_samples": samples * cfg.train.steps,
    }

