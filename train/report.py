"""Evaluation of a trained model on the MNIST test set: metrics, report files and figures of a run.

Writes report.json / report.md (per-class precision, recall, F1, one-vs-rest ROC AUC), curves.png,
confusion.png and misclassified.png into the run folder. The test set is only reported on here; nothing
is chosen with it.

    python -c "import keras; from digitdata.mnist import load_mnist; from train.report import write_run_report; \
write_run_report(keras.saving.load_model('models/digits.keras'), load_mnist(), 'runs/eval', {})"
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import classification_report, confusion_matrix, roc_auc_score

from digitdata import plots
from digitdata.atomic import write_json, write_text
from digitdata.mnist import Mnist
from digitdata.pixels import to_model_input


def metrics(y_true: np.ndarray, probabilities: np.ndarray) -> dict:
    """Accuracy, per-class precision/recall/F1/support and one-vs-rest ROC AUC, confusion matrix."""
    y_pred = probabilities.argmax(axis=1)
    per = classification_report(y_true, y_pred, labels=list(range(10)), output_dict=True, zero_division=0)
    onehot = np.eye(10)[y_true]
    per_class = {}
    for c in range(10):
        row = per[str(c)]
        auc = roc_auc_score(onehot[:, c], probabilities[:, c]) if 0 < onehot[:, c].sum() < len(y_true) else None
        per_class[str(c)] = {"precision": row["precision"], "recall": row["recall"], "f1": row["f1-score"],
                             "support": int(row["support"]), "roc_auc": auc}
    return {
        "accuracy": float((y_pred == y_true).mean()),
        "errors": int((y_pred != y_true).sum()),
        "macro_f1": per["macro avg"]["f1-score"],
        "per_class": per_class,
        "confusion": confusion_matrix(y_true, y_pred, labels=list(range(10))).tolist(),
        "misclassified": np.flatnonzero(y_pred != y_true).tolist(),
    }


def markdown(m: dict, title: str, figures: tuple[str, ...] = ("curves.png", "confusion.png", "misclassified.png"),
             notes: list[str] | tuple[str, ...] = ()) -> str:
    lines = [f"# {title}", "", f"Test accuracy: **{m['accuracy']:.4%}** ({m['errors']} errors of "
             f"{sum(v['support'] for v in m['per_class'].values())}), macro F1 {m['macro_f1']:.4f}", "",
             *(line for note in notes for line in (note, "")),
             "| class | precision | recall | F1 | ROC AUC | support |", "|---|---|---|---|---|---|"]
    for c, v in m["per_class"].items():
        auc = f"{v['roc_auc']:.5f}" if v["roc_auc"] is not None else "-"
        lines.append(f"| {c} | {v['precision']:.4f} | {v['recall']:.4f} | {v['f1']:.4f} | {auc} | {v['support']} |")
    lines += ["", f"Figures: {', '.join(figures)}."]
    return "\n".join(lines) + "\n"


def write_run_report(model, data: Mnist, out: str | Path, history: dict, title: str = "",
                     notes: list[str] | tuple[str, ...] = ()) -> float:
    """Evaluate `model` on the full test set, write the report files into `out`; return test accuracy.

    `model` needs only Keras' `predict(x, batch_size=, verbose=)` returning per-class scores (the classical
    baselines pass an adapter); without a `history` there is no curves.png. `notes` are lines for report.md.
    """
    out = Path(out)
    probabilities = model.predict(to_model_input(data.x_test), batch_size=1000, verbose=0)
    y = data.y_test.astype(np.int64)
    m = metrics(y, probabilities)
    write_json(out / "report.json", {"title": title, **m})
    figures = (("curves.png",) if history else ()) + ("confusion.png", "misclassified.png")
    write_text(out / "report.md", markdown(m, f"Run report: {title}", figures, notes))
    if history:
        plots.curves(history, out / "curves.png", title)
    plots.confusion([np.array(m["confusion"])], [f"{title}: test accuracy {m['accuracy']:.2%}"],
                    out / "confusion.png")
    wrong = m["misclassified"][:60]
    pred = probabilities.argmax(axis=1)
    plots.digit_grid(data.x_test[wrong], [f"#{i} true {y[i]} / pred {pred[i]}" for i in wrong],
                     out / "misclassified.png", title=f"{len(m['misclassified'])} misclassified test images "
                                                      f"(first {len(wrong)})")
    return m["accuracy"]


def write_eda(data: Mnist, path: str | Path) -> None:
    plots.eda(data.x_train, data.y_train, data.y_test, path)
