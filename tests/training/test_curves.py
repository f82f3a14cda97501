"""curves.png: the kept epoch, the test metrics, the title and integer epoch ticks."""

from __future__ import annotations


def test_curves_mark_the_best_epoch_and_test_metrics(tmp_path, monkeypatch) -> None:
    import matplotlib.pyplot as plt

    from training.metrics import plot_curves

    seen = {}
    original = plt.Figure.savefig

    def spy(fig, path, *args, **kwargs):  # inspect the figure as it is saved
        ax_loss, ax_acc = fig.axes
        seen["labels"] = [ln.get_label() for ln in ax_loss.get_lines() + ax_acc.get_lines()]
        seen["title"] = ax_loss.get_title()
        seen["ticks"] = [t for t in ax_loss.get_xticks() if 1 <= t <= 3]
        return original(fig, path, *args, **kwargs)

    monkeypatch.setattr(plt.Figure, "savefig", spy)
    rows = [{"epoch": e, "train_loss": 3.0 / e, "val_top1": 0.2 * e, "val_top5": 0.3 * e} for e in (1, 2, 3)]
    plot_curves(tmp_path / "curves.png", rows, best_epoch=2, test=(0.9375, 0.979), title="ast-train tiny: demo")
    assert (tmp_path / "curves.png").is_file()
    assert "kept: epoch 2" in seen["labels"] and "test top1 0.938" in seen["labels"]
    assert seen["title"] == "ast-train tiny: demo"
    assert all(float(t).is_integer() for t in seen["ticks"])
