"""The promotion rule: a candidate becomes champion only if it is at least as good."""

from __future__ import annotations

from dataclasses import dataclass

from model_training.evaluation import rank_key


@dataclass(frozen=True)
class Decision:
    """Which alias the registered candidate gets, and why."""

    promote: bool
    reason: str


def _describe(metrics: dict[str, float]) -> str:
    return (
        f"accuracy={metrics['accuracy']:.4f}, f1_macro={metrics['f1_macro']:.4f}, "
        f"log_loss={metrics['log_loss']:.4f}"
    )


def decide(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    champion_version: str | None = None,
    *,
    min_accuracy: float,
) -> Decision:
    """Decides whether a candidate replaces the champion.

    Both sets of metrics must come from the same test set. A candidate below the accuracy
    floor is never promoted. Otherwise it wins when its (accuracy, macro F1, -log loss) key
    is at least the champion's; else the champion stays, so a better champion is never
    demoted.

    Args:
        candidate: The candidate's test metrics.
        champion: The current champion's metrics on the same test set, or None if there is
            no champion yet.
        champion_version: The champion's version, for the message.
        min_accuracy: The lowest test accuracy a champion may have: the stack's floor
            ``settings.min_accuracy`` (``WINE_MIN_ACCURACY``, default
            :data:`wine_mlops.settings.DEFAULT_MIN_ACCURACY`); 0 accepts any.

    Returns:
        The decision with a one-line reason.
    """
    if candidate["accuracy"] < min_accuracy:
        return Decision(
            False,
            f"candidate ({_describe(candidate)}) is below the accuracy floor {min_accuracy:.4f}; "
            "it is not promoted",
        )
    if champion is None:
        return Decision(True, f"no champion yet; candidate ({_describe(candidate)}) promoted")
    label = f"champion v{champion_version}" if champion_version else "champion"
    if rank_key(candidate) >= rank_key(champion):
        return Decision(
            True,
            f"candidate ({_describe(candidate)}) is at least as good as "
            f"{label} ({_describe(champion)}) on the same test set",
        )
    return Decision(
        False,
        f"candidate ({_describe(candidate)}) is worse than {label} "
        f"({_describe(champion)}) on the same test set; {label} stays",
    )
