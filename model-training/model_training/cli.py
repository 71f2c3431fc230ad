"""Command line of the training job: ``wine-train`` or ``python -m model_training``.

``--with-feedback`` adds the labelled production rows of the prediction log
(``WINE_MONITORING_DB_URL``) to the training split only; ``--triggered-by ALERTNAME`` tags
the runs with the alert that started the session (the retraining webhook passes both).

Exit codes: 0 done, 2 invalid data or arguments (nothing logged to MLflow; with
``--with-feedback`` also: no usable prediction log settings, or no labelled row in the log),
3 MLflow unreachable, or the prediction log (then nothing is logged), 1 any other failure (a
champion that cannot be loaded safely, an artifact store that is full, the promotion lock
held too long by another session, a prediction log that answers but cannot be read),
143 stopped by SIGTERM (``docker stop``, a CI abort) and 130 by SIGINT (Ctrl-C): the runs
end as KILLED, and the registry holds either this session's complete new version (alias and
``promotion_reason`` set) or no new version at all.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import warnings
from pathlib import Path

from model_training import interruption
from model_training.candidates import CANDIDATES
from model_training.data import (
    DataValidationError,
    Feedback,
    FeedbackUnavailableError,
    load_dataset,
    read_feedback,
)
from model_training.interruption import TrainingInterrupted
from model_training.settings import TrainingSettings
from wine_mlops.logs import configure_logging
from wine_mlops.settings import load_settings, use_mlflow_http
from wine_mlops.tracking import TrackingServerUnavailableError

log = logging.getLogger("model_training")

EXIT_INVALID_INPUT = 2
EXIT_UNREACHABLE = 3
EXIT_FAILURE = 1

#: What ``--triggered-by`` accepts: a Prometheus alert name.
ALERT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")


def _alert_name(value: str) -> str:
    if not ALERT_NAME.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an alert name (letters, digits and _, at most 100)"
        )
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wine-train",
        description="Train wine classifiers, log them to MLflow, register the best and "
        "promote it to champion only if it is at least as good as the current one.",
    )
    parser.add_argument(
        "--data",
        type=Path,
        help="CSV with the 13 feature columns and "
        "'target' (default: scikit-learn's wine data; env WINE_DATA_PATH)",
    )
    parser.add_argument("--seed", type=int, help="random seed of split, CV and models")
    parser.add_argument("--test-size", type=float, help="share of rows held out for testing")
    parser.add_argument("--cv-folds", type=int, help="folds of the cross-validation")
    parser.add_argument(
        "--candidates", help=f"comma-separated families, from: {', '.join(CANDIDATES)}"
    )
    parser.add_argument("--experiment", help="MLflow experiment name")
    parser.add_argument(
        "--with-feedback",
        action="store_true",
        help="also train on the labelled production rows of the prediction log "
        "(env WINE_MONITORING_DB_URL, WINE_MONITORING_DB_PASSWORD_FILE): they join the "
        "training split only, the test split stays the data's own",
    )
    parser.add_argument(
        "--triggered-by",
        metavar="ALERTNAME",
        type=_alert_name,
        help="the alert that started this session: its runs are tagged "
        "wine.trigger=alert and wine.trigger.alert=ALERTNAME",
    )
    return parser


def _feedback(settings: TrainingSettings) -> Feedback | int:
    """The labelled production rows, or the exit code when there are none to train on."""
    if not settings.monitoring_db_url:
        log.error(
            "--with-feedback needs the prediction log: set WINE_MONITORING_DB_URL (and "
            "WINE_MONITORING_DB_PASSWORD_FILE); nothing was logged to MLflow"
        )
        return EXIT_INVALID_INPUT
    try:
        feedback = read_feedback(
            settings.monitoring_db_url,
            settings.monitoring_db_password_file,
            settings.feedback_max_rows,
        )
    except FeedbackUnavailableError as exc:
        log.error("%s; nothing was logged to MLflow", exc)
        codes = {"settings": EXIT_INVALID_INPUT, "unreachable": EXIT_UNREACHABLE}
        return codes.get(exc.cause, EXIT_FAILURE)
    if feedback.rejected_count:
        log.warning(
            "feedback: %d labelled row(s) left out, not valid training data: %s",
            feedback.rejected_count,
            "; ".join(feedback.rejected),
        )
    if not len(feedback):
        # Without new rows the session would fit the same data with the same seed again and
        # register a copy of what it trained last time: no retraining, a wasted version.
        log.error(
            "no labelled production rows in the prediction log at %s: nothing to retrain "
            "on, nothing was logged to MLflow. Label predictions (POST /feedback), or train "
            "without --with-feedback",
            feedback.source,
        )
        return EXIT_INVALID_INPUT
    log.info("feedback: %d labelled production row(s) read from %s", len(feedback), feedback.source)
    return feedback


def main(argv: list[str] | None = None) -> int:
    """Runs one training session from the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    overrides = {
        "WINE_DATA_PATH": args.data,
        "WINE_SEED": args.seed,
        "WINE_TEST_SIZE": args.test_size,
        "WINE_CV_FOLDS": args.cv_folds,
        "WINE_CANDIDATES": args.candidates,
        "WINE_EXPERIMENT_NAME": args.experiment,
    }
    settings = load_settings(
        TrainingSettings, **{k: v for k, v in overrides.items() if v is not None}
    )
    if settings is None:
        return EXIT_INVALID_INPUT
    configure_logging(settings.log_level)
    # MLflow's process-wide state, set here once (wine_mlops.settings: only entry points do)
    settings.use_credentials()
    settings.use_tracking_uri()
    use_mlflow_http()  # MLflow's own retries: a session waits for the server, then persists
    # MLflow's hints about integer columns and ambiguous dataset sources do not apply here.
    warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
    warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")

    # heavy imports only once input is valid
    from model_training.promotion_lock import PromotionLockLostError, PromotionLockTimeoutError
    from model_training.session import ChampionRefusedError, SessionFailedError, run_session

    try:
        dataset = load_dataset(settings.data_path)
    except DataValidationError as exc:
        log.error("%s", exc)
        log.error("dataset rejected: nothing was logged to MLflow")
        return EXIT_INVALID_INPUT
    feedback: Feedback | None = None
    if args.with_feedback:
        found = _feedback(settings)
        if isinstance(found, int):
            return found
        feedback = found
    interruption.install()
    try:
        result = run_session(dataset, settings, feedback=feedback, triggered_by=args.triggered_by)
        log.info(
            "done: %s v%s is %s; compare the runs at %s/#/experiments/%s/runs/%s",
            settings.model_name,
            result.version,
            "champion" if result.decision.promote else "challenger",
            (settings.public_url or settings.tracking_uri).rstrip("/"),
            result.experiment_id,
            result.parent_run_id,
        )
    except TrackingServerUnavailableError as exc:
        log.error("%s", exc)
        return EXIT_UNREACHABLE
    except (
        ChampionRefusedError,
        SessionFailedError,
        PromotionLockTimeoutError,
        PromotionLockLostError,
    ) as exc:
        log.error("%s", exc)
        return EXIT_FAILURE
    except TrainingInterrupted as exc:
        log.error(
            "training %s: its runs are marked KILLED; the registry holds either a complete new "
            "version or none; train again to finish",
            exc,
        )
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
