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

import argparse
import math
import sys
from pathlib import Path

import yaml

SOURCE_RUN = "vggsweep.source_run"


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

    from vggsweep import space

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
    import keras

    from vggsweep import config, data, models, training

    splits = data.load(cfg.data)
    keras.utils.set_random_seed(seed)
    keras.backend.clear_session()
    model = models.build_model(cfg.model.family, config.model_point(cfg),
                               input_shape=splits.x_train.shape[1:],
                               num_classes=splits.num_classes, image_size=cfg.data.image_size)
    optimizer = {k: v for k, v in cfg.optimizer.items()}
    training.compile_model(model, optimizer,
                           training.steps_per_epoch(splits, cfg.budget.batch_size), cfg.budget.epochs)
    fit = training.fit(model, splits, epochs=cfg.budget.epochs, batch_size=cfg.budget.batch_size,
                       patience=cfg.budget.patience, use_ema=bool(optimizer.get("ema")))
    val, _ = training.evaluate(model, splits.x_val, splits.y_val, "val")
    test, _ = training.evaluate(model, splits.x_test, splits.y_test, "test")
    return {**val, **test, "train_time_s": fit.train_time_s, "epochs_run": fit.epochs_run}


def run_confidence(tracking_uri: str, experiment: str, top: int, seeds: int,
                   sweep: str | None = None, first_seed: int = 1000) -> list[dict]:
    """Retrains the top-`top` trials with `seeds` seeds each; records and returns the summary."""
    import mlflow

    from vggsweep import leaderboard

    client, _ = leaderboard.open_store(tracking_uri, experiment)
    trials = leaderboard.load_trials(tracking_uri, experiment, sweep=sweep, status="finished")
    best = trials.sort_values("val_accuracy", ascending=False).head(top)
    mlflow.set_tracking_uri(tracking_uri)
    summary = []
    for _, row in best.iterrows():
        trial_run = client.get_run(row["run_id"])
        cfg = trial_config(client, trial_run, row["parent_run_id"])
        results = [_recorded_retrain(client, cfg, trial_run, row, first_seed + i)
                   for i in range(seeds)]
        summary.append(_summarize(client, row, results))
    if len(summary) >= 2:
        p_value = welch_p_value(summary[0]["test_accuracies"], summary[1]["test_accuracies"])
        summary[0]["p_vs_runner_up"] = p_value
    return summary


def _recorded_retrain(client, cfg, trial_run, row, seed: int) -> dict:
    import mlflow

    tags = {"vggsweep.role": "confidence", SOURCE_RUN: row["run_id"],
            "mlflow.parentRunId": row["parent_run_id"], "model": str(row.get("model")),
            "activation": str(row.get("activation")), "vggsweep.trial_id": str(row["trial_id"])}
    with mlflow.start_run(experiment_id=trial_run.info.experiment_id, tags=tags,
                          run_name=f"confidence-{row['trial_id']}-seed{seed}"):
        mlflow.log_params({"seed": seed, **{k: v for k, v in trial_run.data.params.items()
                                            if k != "seed" and not k.startswith("optimizer_")}})
        result = retrain(cfg, seed)
        mlflow.log_metrics({k: float(v) for k, v in result.items()})
    return result


def _summarize(client, row, results: list[dict]) -> dict:
    accuracies = [r["test_accuracy"] for r in results]
    times = [r["train_time_s"] for r in results]
    acc_mean, acc_ci = mean_ci95(accuracies)
    time_mean, time_ci = mean_ci95(times)
    metrics = {"test_accuracy_mean": acc_mean, "test_accuracy_ci95": acc_ci,
               "train_time_s_mean": time_mean, "train_time_s_ci95": time_ci,
               "confidence_seeds": len(results)}
    for key, value in metrics.items():
        if not math.isnan(value):
            client.log_metric(row["run_id"], key, value)
    return {"run_id": row["run_id"], "model": row.get("model"),
            "activation": row.get("activation"), "trial_id": row["trial_id"],
            "val_accuracy": row["val_accuracy"], "test_accuracies": accuracies, **metrics}


def format_summary(summary: list[dict]) -> str:
    lines = [f"{'rank':<5}{'model':<8}{'activation':<11}{'trial':<7}{'seeds':>6}"
             f"{'test accuracy (95% CI)':>26}{'train time s (95% CI)':>24}"]
    for rank, item in enumerate(summary, 1):
        lines.append(
            f"{rank:<5}{item['model']!s:<8}{item['activation']!s:<11}{item['trial_id']!s:<7}"
            f"{item['confidence_seeds']:>6}"
            f"{item['test_accuracy_mean']:>16.4f} ± {item['test_accuracy_ci95']:<7.4f}"
            f"{item['train_time_s_mean']:>14.1f} ± {item['train_time_s_ci95']:<7.1f}")
    if len(summary) >= 2:
        p_value = summary[0].get("p_vs_runner_up", float("nan"))
        verdict = ("distinguishable" if p_value < 0.05 else "NOT distinguishable")
        lines.append(f"best vs runner-up: Welch's t-test p = {p_value:.3g} -> {verdict} at 5% "
                     "(test accuracy over the seeds)")
    return "\n".join(lines)


def main(argv=None) -> int:
    from vggsweep import leaderboard

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--tracking-uri", default=None, help=leaderboard.TRACKING_URI_HELP)
    parser.add_argument("--sweep", default=None, help="only trials of this sweep dir")
    parser.add_argument("--top", type=int, default=3, help="configurations to retrain")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per configuration")
    args = parser.parse_args(argv)
    if args.top < 1 or args.seeds < 1:
        print("error: --top and --seeds must be positive integers", file=sys.stderr)
        return 2
    uri = args.tracking_uri or leaderboard.default_tracking_uri()
    try:
        summary = run_confidence(uri, args.experiment, args.top, args.seeds, args.sweep)
    except leaderboard.ResultsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
