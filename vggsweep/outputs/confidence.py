"""Confidence: retrain the top-k configurations of a sweep with several seeds.

For each of the k best trials (ranked on validation accuracy), the exact configuration is rebuilt
from its job's recorded config and the trial's hyperparameters, then trained with `--seeds` new
seeds. Reported: the mean and 95% confidence interval (Student's t) of test accuracy and training
time, and whether the best is distinguishable from the runner-up (Welch's t-test on the seeds'
test accuracies, two-sided, 5%). Every retraining is an MLflow run (tag `vggsweep.role=confidence`,
nested under the job's parent run); the summary lands on the original trial run as metrics
(`test_accuracy_mean`, `test_accuracy_ci95`, `train_time_s_mean`, `train_time_s_ci95`).

    python -m vggsweep.confidence --experiment activations --top 3 --seeds 5
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from vggsweep.tracking.store import SOURCE_RUN


def mean_ci95(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of the 95% confidence interval (Student's t; 0 for one value)."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n))


def welch_p_value(first: list[float], second: list[float]) -> float:
    """Two-sided Welch's t-test p-value (nan when either sample is too small or constant)."""
    from scipy import stats

    if len(first) < 2 or len(second) < 2:
        return float("nan")
    return float(stats.ttest_ind(first, second, equal_var=False).pvalue)


def trial_config(client, trial_run, parent_run_id: str):
    """The job's recorded config with every searched value fixed at the trial's value."""
    from omegaconf import OmegaConf

    from vggsweep.config import space

    path = client.download_artifacts(parent_run_id, "config.yaml")
    cfg = OmegaConf.create(yaml.safe_load(Path(path).read_text()))
    params = trial_run.data.params
    for section in ("model", "optimizer"):
        for key, value in list(cfg[section].items()):
            if space.is_spec(value) and key in params:
                spec = OmegaConf.to_container(value)
                cfg[section][key] = space.coerce(spec, yaml.safe_load(params[key]))
    if space.is_spec(cfg.activation) and "activation" in params:
        cfg.activation = params["activation"]
    return cfg


def retrain(cfg, seed: int) -> dict:
    """Trains the configuration once with `seed`; returns its test metrics and training time."""
    from vggsweep import config, data
    from vggsweep.config import space
    from vggsweep.models import training
    from vggsweep.runtime import accelerator

    splits = data.load(cfg.data)
    accelerator.apply(cfg.get("accelerator"))
    model_kwargs, optimizer_kwargs = space.point(cfg.model, cfg.optimizer, cfg.activation)
    batch_size, optimizer_kwargs = accelerator.scaled(cfg.budget.batch_size, optimizer_kwargs,
                                                      cfg.get("accelerator"))
    trained = training.train_one(
        cfg.model.family, model_kwargs, optimizer_kwargs, splits,
        image_size=config.effective_image_size(cfg.data, splits.image_shape),
        epochs=cfg.budget.epochs, batch_size=batch_size, seed=seed,
        patience=cfg.budget.patience,
        compile_options=accelerator.compile_options(cfg.get("accelerator")))
    return {"val_accuracy": trained.val_accuracy, **trained.test,
            "train_time_s": trained.fit.train_time_s, "epochs_run": trained.fit.epochs_run}


def run_confidence(tracking_uri: str, experiment: str, top: int, seeds: int,
                   sweep: str | None = None, first_seed: int = 1000) -> list[dict]:
    """Retrains the top-`top` trials with `seeds` seeds each; records and returns the summary."""
    from vggsweep.tracking import results, store

    client, _ = store.open_existing(tracking_uri, experiment)
    trials = results.load_trials(tracking_uri, experiment, sweep=sweep, status="finished")
    best = trials.head(top)  # ranked on validation accuracy, ties as everywhere
    summary = []
    for _, row in best.iterrows():
        trial_run = client.get_run(row["run_id"])
        cfg = trial_config(client, trial_run, row["parent_run_id"])
        tracker = _tracker(tracking_uri, experiment, trial_run, row)
        results_ = [_recorded_retrain(tracker, cfg, trial_run, row, first_seed + i)
                    for i in range(seeds)]
        summary.append(_summarize(tracker, row, results_))
    if len(summary) >= 2:
        p_value = welch_p_value(summary[0]["test_accuracies"], summary[1]["test_accuracies"])
        summary[0]["p_vs_runner_up"] = p_value
    return summary


def _tracker(tracking_uri: str, experiment: str, trial_run, row):
    from vggsweep.tracking import store
    from vggsweep.tracking.writer import JobTracker

    tracker = JobTracker(tracking_uri, experiment, trial_run.data.tags.get(store.JOB_KEY, ""), {})
    tracker.attach(row["parent_run_id"])
    return tracker


def _recorded_retrain(tracker, cfg, trial_run, row, seed: int) -> dict:
    from vggsweep.tracking import store

    tags = {SOURCE_RUN: row["run_id"], "model": str(row.get("model")),
            "activation": str(row.get("activation")), store.TRIAL_ID: str(row["trial_id"]),
            **{k: v for k, v in trial_run.data.tags.items() if k == store.JOB_NAME}}
    params = {"seed": seed, **{k: v for k, v in trial_run.data.params.items()
                               if k != "seed" and not k.startswith("optimizer_")}}
    # named after the trial it retrains, as the UI shows it: cnn-relu/trial-3/confidence-seed-7
    with tracker.child_run("confidence", f"{_trial_name(row)}/confidence-seed-{seed}", params,
                           tags) as run:
        result = retrain(cfg, seed)
        tracker.log_metrics(run.info.run_id, result)
    return result


def _trial_name(row) -> str:
    from vggsweep.tracking import store

    name = row.get("trial")
    return str(name) if isinstance(name, str) and name else store.trial_run_name(row["trial_id"])


def _summarize(tracker, row, results_: list[dict]) -> dict:
    accuracies = [r["test_accuracy"] for r in results_]
    times = [r["train_time_s"] for r in results_]
    acc_mean, acc_ci = mean_ci95(accuracies)
    time_mean, time_ci = mean_ci95(times)
    metrics = {"test_accuracy_mean": acc_mean, "test_accuracy_ci95": acc_ci,
               "train_time_s_mean": time_mean, "train_time_s_ci95": time_ci,
               "confidence_seeds": len(results_)}
    tracker.log_metrics(row["run_id"], {k: v for k, v in metrics.items() if not math.isnan(v)})
    return {"run_id": row["run_id"], "model": row.get("model"),
            "activation": row.get("activation"), "trial_id": row["trial_id"],
            "trial": _trial_name(row),
            "val_accuracy": row["val_accuracy"], "test_accuracies": accuracies, **metrics}


def format_summary(summary: list[dict]) -> str:
    width = max([len("trial"), *(len(item["trial"]) for item in summary)]) + 2
    lines = [f"{'rank':<5}{'trial':<{width}}{'model':<8}{'activation':<11}{'seeds':>6}"
             f"{'test accuracy (95% CI)':>26}{'train time s (95% CI)':>24}"]
    for rank, item in enumerate(summary, 1):
        lines.append(
            f"{rank:<5}{item['trial']:<{width}}{item['model']!s:<8}{item['activation']!s:<11}"
            f"{item['confidence_seeds']:>6}"
            f"{item['test_accuracy_mean']:>16.4f} ± {item['test_accuracy_ci95']:<7.4f}"
            f"{item['train_time_s_mean']:>14.1f} ± {item['train_time_s_ci95']:<7.1f}")
    if len(summary) >= 2:
        p_value = summary[0].get("p_vs_runner_up", float("nan"))
        verdict = ("distinguishable" if p_value < 0.05 else "NOT distinguishable")
        lines.append(f"best vs runner-up: Welch's t-test p = {p_value:.3g} -> {verdict} at 5% "
                     "(test accuracy over the seeds)")
    return "\n".join(lines)
