"""The one-line summaries the trainer prints: a training step's, and an evaluation's headline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def step_line(metrics: dict[str, float], specs: Sequence[Any]) -> str:
    """What one training step shows: the trained reward as the weighted sum of the raw reward means (the
    combined reward the advantages see is normalised, so ~0 by construction), each reward's raw mean,
    the KL to the base, the on-policy gap and the step time."""
    means = {spec.label or spec.name: metrics.get(f"rewards/{spec.label or spec.name}/mean") for spec in specs}
    trained = sum(spec.weight * (means[spec.label or spec.name] or 0.0) for spec in specs if spec.weight)
    parts = " ".join(f"{label} {value:.3f}" for label, value in means.items() if value is not None)
    return (f"reward {trained:.4f} ({parts})  kl {metrics['charts/kl']:.2e}  "
            f"on-policy {metrics['debug/max_abs_logratio_first_iter']:.1e}  {metrics['time/step']:.2f}s")


def eval_headline(metrics: dict[str, float], names: Sequence[str]) -> str:
    """Per eval set its headline: the verifier's exact match with its interval and the base's, when the
    prompts have a verifier; otherwise the first reward's mean (and the base's)."""
    parts = []
    for name in names:
        key = f"eval/{name}/exact"
        if key not in metrics:
            key = next((k for k in metrics if k.startswith(f"eval/{name}/") and "/base/" not in k
                        and k.count("/") == 2), None)
            if key is None:
                continue
        base = metrics.get(key.replace(f"eval/{name}/", f"eval/{name}/base/", 1))
        low, high = metrics.get(key + "_ci95_low"), metrics.get(key + "_ci95_high")
        interval = f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""
        parts.append(f"{name} {key.rsplit('/', 1)[1]} {metrics[key]:.3f}{interval}"
                     + (f" (base {base:.3f})" if base is not None else ""))
    return "; ".join(parts) or "no eval sets"
