"""Learning curves as a PNG. The only module that imports matplotlib (an optional extra: `nitrogen[plot]`),
with the file-only Agg backend."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from .spec import Model


def train_curve_label(model: Model) -> str:
    """What the training accuracy measures: predictions before each update, on the inputs as trained
    (augmented and with dropout, when the spec has them)."""
    extras = []
    aug = model.train.augment
    if aug.crop_pad or aug.flip:
        extras.append("augmented")
    if any(layer.kind == "dropout" for layer in model.layers):
        extras.append("dropout on")
    return "train (during the epoch" + "".join(f", {e}" for e in extras) + ")"


def learning_curves(model: Model, dataset: str, records: Sequence[Any]) -> bytes:
    """Accuracy (train and test) and loss per epoch, with the epochs where lr_inv changed marked; PNG bytes."""
    import matplotlib.pyplot as plt

    fig = figure(model, dataset, records)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def figure(model: Model, dataset: str, records: Sequence[Any]) -> Any:
    """The matplotlib figure of `learning_curves` (integer epoch ticks, the spec's plateau factor)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [r.epoch for r in records]
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    marker = "o" if len(records) < 20 else None
    acc_ax.plot(epochs, [r.train_acc for r in records], marker=marker, label=train_curve_label(model))
    acc_ax.plot(epochs, [r.test_acc for r in records], marker=marker, label="test")
    best = max(records, key=lambda r: (r.test_correct, -r.epoch))
    acc_ax.scatter([best.epoch], [best.test_acc], color="black", zorder=3,
                   label=f"best test {best.test_acc:.2f}% (epoch {best.epoch})")
    loss_ax.plot(epochs, [r.train_loss / max(1, r.train_seen) for r in records], marker=marker, color="tab:red")
    changes = [(cur.epoch, cur.lr_inv) for prev, cur in zip(records, records[1:]) if cur.lr_inv != prev.lr_inv]
    for epoch, _ in changes:
        for ax in (acc_ax, loss_ax):
            ax.axvline(epoch, color="gray", linestyle=":", linewidth=1)
    factor = model.train.plateau.factor
    loss_title = "training loss" + (f" (dotted: lr_inv x{factor})" if changes else "")
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title=f"{model.name} on {dataset}")
    loss_ax.set(xlabel="epoch", ylabel="global loss per sample", title=loss_title)
    for ax in (acc_ax, loss_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    acc_ax.legend(loc="lower right")
    return fig


__all__ = ["learning_curves", "figure", "train_curve_label"]
