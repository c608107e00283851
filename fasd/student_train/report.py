"""The short Markdown report of a training run."""

from __future__ import annotations

from pathlib import Path


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def write_report(run_dir: Path, metrics: dict) -> Path:
    weights = metrics["loss_weights"]
    terms = ", ".join(f"λ_{name[len('lambda_'):]} {value:g}" for name, value in weights.items()
                      if name.startswith("lambda_"))
    teacher = "none (--no-teacher)" if metrics["no_teacher"] else (
        f"recipe {metrics.get('recipe', 'vlmkd')}, student {metrics.get('student', 'mobilenetv3-small')}; {terms}; "
        f"τ {weights['tau']:g}, margin {weights['margin']:g}")
    lines = [
        f"# {metrics['protocol']} (seed {metrics['seed']})",
        "",
        f"Trained on {', '.join(metrics['sources'])}; tested on the held-out **{metrics['target']}** test split "
        f"({metrics['n']} frames: {metrics['n_live']} live, {metrics['n_spoof']} spoof). Distillation: {teacher}. "
        f"Best epoch {metrics['best_epoch']} of {metrics['epochs']} by total validation loss.",
        "",
        "| metric | value (%) |",
        "|---|---|",
        f"| HTER (threshold from source validation) | {_pct(metrics['hter'])} |",
        f"| EER | {_pct(metrics['eer'])} |",
        f"| ACER at EER threshold | {_pct(metrics['at_eer']['acer'])} |",
        f"| APCER / BPCER at EER threshold | {_pct(metrics['at_eer']['apcer'])} / {_pct(metrics['at_eer']['bpcer'])} |",
        f"| ACER at 0.5 | {_pct(metrics['at_0.5']['acer'])} |",
        f"| APCER / BPCER at 0.5 | {_pct(metrics['at_0.5']['apcer'])} / {_pct(metrics['at_0.5']['bpcer'])} |",
        f"| AUC | {_pct(metrics['auc'])} |",
        f"| TPR at FPR 1% | {_pct(metrics['tpr_at_fpr_1pct'])} |",
    ]
    if metrics.get("per_attack_type"):
        lines += ["", "| attack type | APCER at EER threshold (%) |", "|---|---|"]
        lines += [f"| {name} | {_pct(v['apcer'])} |" for name, v in metrics["per_attack_type"].items()]
    path = Path(run_dir) / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
