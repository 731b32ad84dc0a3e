"""Learning curves as a PNG. The only module that imports matplotlib (with the file-only Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence


def learning_curves(path: Path, model: str, dataset: str, records: Sequence[Any]) -> None:
    """Accuracy (train and test) and loss per epoch, with the epochs where lr_inv changed marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r.epoch for r in records]
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    acc_ax.plot(epochs, [r.train_acc for r in records], label="train (augmented, dropout on)")
    acc_ax.plot(epochs, [r.test_acc for r in records], label="test")
    best = max(records, key=lambda r: (r.test_correct, -r.epoch))
    acc_ax.scatter([best.epoch], [best.test_acc], color="black", zorder=3,
                   label=f"best test {best.test_acc:.2f}% (epoch {best.epoch})")
    loss_ax.plot(epochs, [r.train_loss / max(1, r.train_seen) for r in records], color="tab:red")
    for prev, cur in zip(records, records[1:]):
        if cur.lr_inv != prev.lr_inv:
            for ax in (acc_ax, loss_ax):
                ax.axvline(cur.epoch, color="gray", linestyle=":", linewidth=1)
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title=f"{model} on {dataset}")
    loss_ax.set(xlabel="epoch", ylabel="global loss per sample", title="training loss (dotted: lr_inv x3)")
    acc_ax.grid(alpha=0.3)
    loss_ax.grid(alpha=0.3)
    acc_ax.legend(loc="lower right")
    fig.savefig(path, dpi=100)
    plt.close(fig)


__all__ = ["learning_curves"]
