"""Every setting README "Configuration" documents reaches exactly the containers that read it.

One ``.env`` sets each documented variable to a distinctive value; ``docker compose config``
renders the stack with it (no engine needed). Which service reads which variable comes from
the settings classes themselves (their fields' environment names), so README, compose and
code cannot drift apart: a variable compose forgets, hands to a service that does not read it,
or a settings field nobody documented, fails here.
"""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from mlflow_exporter.settings import ExporterSettings
from mlflow_server.launch import ServerSettings
from model_training.settings import TrainingSettings
from model_training.webhook import WebhookSettings
from prediction_api.settings import ApiSettings
from tests.support.processes import REPO, compose_config, make_env

#: The Python services and the settings classes each reads (the webhook's sessions read the
#: training settings from its environment).
SERVICES: dict[str, tuple[type[BaseSettings], ...]] = {
    "mlflow-server": (ServerSettings,),
    "model-training": (TrainingSettings,),
    "model-training-webhook": (WebhookSettings, TrainingSettings),
    "mlflow-exporter": (ExporterSettings,),
    "prediction-api": (ApiSettings,),
}

#: README variables of the host side that share a name with a setting inside a container
#: (the published port vs the port the service listens on in its container): compose uses
#: them in `ports:` and must never hand them to the container.
HOST_SIDE = {"MLFLOW_PORT", "API_PORT", "EXPORTER_PORT"}

#: Settings fields that are wiring, not user settings: compose (or CI, or `make dev`) sets
#: them itself, so README does not document them.
WIRING = {
    "MLFLOW_TRACKING_URI",  # the compose service name
    "MLFLOW_TRACKING_USERNAME",  # each service's own MLflow user
    "MLFLOW_TRACKING_PASSWORD",  # its secret file
    "WINE_MLFLOW_PUBLIC_URL",  # derived from MLFLOW_PORT
    "GIT_COMMIT",  # set by CI
    "BUILD_ID",
    "BUILD_URL",
    "API_HOST",  # where a service listens inside its container
    "EXPORTER_HOST",
    "MLFLOW_HOST",
    "MLFLOW_OPS_PORT",
    "POSTGRES_HOST",  # the compose service mlflow-db
    "POSTGRES_PORT",
    "MLFLOW_BACKEND_STORE_URI",  # SQLite stores of `make dev`
    "MLFLOW_AUTH_DATABASE_URI",
    "MLFLOW_ARTIFACTS_DESTINATION",  # the volume's mount point
    "MLFLOW_PROMETHEUS_DIR",
    "MLFLOW_SERVER_ALLOWED_HOSTS",
    "WINE_MONITORING_DB_URL",  # built from MONITORING_DB and the service's own role
    "WINE_MONITORING_DB_PASSWORD_FILE",  # that role's secret file
    "WINE_RETRAIN_WEBHOOK_TOKEN",  # RETRAINING_WEBHOOK_TOKEN's secret file
    "WINE_RETRAIN_WEBHOOK_HOST",
    "WINE_RETRAIN_WEBHOOK_PORT",
}

#: A distinctive, valid value for each documented variable a settings class reads (the
#: secrets keep the random values `make env` gives them).
VALUES = {
    "POSTGRES_DB": "tracking7",
    "MLFLOW_AUTH_DB": "auth7",
    "MLFLOW_DB_USER": "app7",
    "MLFLOW_ADMIN_USERNAME": "root7",
    "MLFLOW_PORT": "15000",
    "API_PORT": "17654",
    "EXPORTER_PORT": "18000",
    "WINE_EXPERIMENT_NAME": "experiment7",
    "WINE_MODEL_NAME": "model7",
    "WINE_CHAMPION_ALIAS": "best7",
    "WINE_CHALLENGER_ALIAS": "next7",
    "WINE_MODEL_ALIAS": "served7",
    "WINE_SEED": "7",
    "WINE_TEST_SIZE": "0.3",
    "WINE_CV_FOLDS": "3",
    "WINE_MIN_ACCURACY": "0.77",
    "WINE_CANDIDATES": "SVC,DummyClassifier",
    "WINE_DATA_PATH": "/data/wines7.csv",
    "WINE_MLFLOW_CONNECT_ATTEMPTS": "3",
    "WINE_MLFLOW_CONNECT_MAX_BACKOFF": "2.5",
    "WINE_PROMOTION_LOCK_LEASE_SECONDS": "123",
    "WINE_PROMOTION_LOCK_WAIT_SECONDS": "456",
    "LOG_LEVEL": "DEBUG",
    "WINE_CLASS_NAMES": "a7,b7,c7",
    "WINE_WATCH_INTERVAL_SECONDS": "17",
    "WINE_API_WORKERS": "7",
    "WINE_MODEL_MAX_BYTES": "7777777",
    "WINE_BATCH_LIMIT": "77",
    "WINE_MAX_BODY_BYTES": "77777",
    "EXPORTER_REFRESH_INTERVAL": "27",
    "EXPORTER_EXPERIMENTS": "e7,f7",
    "EXPORTER_RUNS_PER_EXPERIMENT": "47",
    "EXPORTER_MIN_PAUSE": "3.5",
    "EXPORTER_MAX_RUNS_PER_REFRESH": "57",
    "EXPORTER_PAGE_SIZE": "37",
    "EXPORTER_MLFLOW_DUTY": "0.7",
    "EXPORTER_MLFLOW_TIMEOUT": "9",
    "EXPORTER_THREADS": "7",
    "EXPORTER_MAX_EXPERIMENTS": "11",
    "EXPORTER_MAX_RUN_NAMES": "12",
    "EXPORTER_MAX_METRICS": "13",
    "EXPORTER_MAX_MODELS": "14",
    "EXPORTER_RUN_NAME_SUFFIX": r"-v\d+$",
    "MLFLOW_WORKERS": "3",
    "MLFLOW_AUTH_CACHE_SECONDS": "17",
    "WINE_PREDICTION_LOG_QUEUE": "777",
    "WINE_PREDICTION_LOG_BATCH": "77",
    "WINE_PREDICTION_LOG_FLUSH_SECONDS": "0.7",
    "WINE_PREDICTION_LOG_RETENTION_DAYS": "7",
    "WINE_MONITORING_REFRESH_SECONDS": "7.5",
    "WINE_LIVE_ACCURACY_WINDOW": "71",
    "WINE_DRIFT_WINDOW": "72",
    "WINE_RETRAIN_COOLDOWN_SECONDS": "707",
    "WINE_RETRAIN_SESSION_TIMEOUT_SECONDS": "1707",
    "WINE_RETRAIN_STOP_SECONDS": "17",
    "WINE_FEEDBACK_MAX_ROWS": "7007",
}


def documented() -> set[str]:
    """The variables of README "Configuration"'s table (first column)."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])}


def env_names(*classes: type[BaseSettings]) -> dict[str, str]:
    """Environment name → field name of every field of the settings classes."""
    names = {}
    for settings in classes:
        for field_name, field in settings.model_fields.items():
            alias = (
                field.validation_alias if isinstance(field.validation_alias, str) else field.alias
            )
            names[alias or field_name.upper()] = field_name
    return names


def readers(variable: str) -> set[str]:
    """The services whose settings classes read a variable (none for a host-side one)."""
    if variable in HOST_SIDE:
        return set()
    return {name for name, classes in SERVICES.items() if variable in env_names(*classes)}


def _holds(value: object, text: str) -> bool:
    """Whether a setting's value is the one the variable's text gives."""
    if isinstance(value, SecretStr):
        return value.get_secret_value() == text
    if isinstance(value, tuple):
        return ",".join(map(str, value)) == text
    if isinstance(value, int | float):
        return value == float(text)
    return str(value) == text


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``docker compose config`` with every documented setting set to its distinctive value."""
    workdir = tmp_path_factory.mktemp("delivery")
    env_file, secrets = workdir / "test.env", workdir / "secrets"
    make_env(env_file, secrets)
    lines = [
        line
        for line in env_file.read_text().splitlines()
        if line.partition("=")[0].strip() not in VALUES
    ]
    env_file.write_text("\n".join([*lines, *(f"{k}={v}" for k, v in VALUES.items())]) + "\n")
    config = compose_config(env_file, secrets)
    pairs = (line.partition("=") for line in env_file.read_text().splitlines())
    config["_dotenv"] = {k: v for k, _, v in pairs if k and not k.startswith("#")}
    return config


def _delivered(service: dict[str, Any]) -> set[str]:
    env = service.get("environment") or {}
    return {name.removesuffix("_FILE") for name in env}


def test_every_documented_variable_is_in_env_example() -> None:
    example = REPO / ".env.example"
    names = {line.partition("=")[0] for line in example.read_text().splitlines() if "=" in line}
    assert documented() - names == set()


def test_every_settings_field_is_documented_or_wiring() -> None:
    fields = {name for classes in SERVICES.values() for name in env_names(*classes)}
    assert fields - documented() - WIRING == set(), "document them in README Configuration"
    assert WIRING - fields == set(), "no longer a settings field: drop it from WIRING"


def test_every_documented_setting_has_a_distinctive_value() -> None:
    read = {v for v in documented() if readers(v) or v in HOST_SIDE}
    secrets = {v for v in read if v.endswith(("_PASSWORD", "_SECRET_KEY"))}
    assert read - secrets - set(VALUES) == set()


def test_each_documented_variable_reaches_exactly_the_services_that_read_it(
    rendered: dict[str, Any],
) -> None:
    missing, extra = [], []
    for variable in sorted(documented()):
        for name in SERVICES:
            has = variable in _delivered(rendered["services"][name])
            if name in readers(variable):
                if not has:
                    missing.append(f"{variable} -> {name}")
            elif has:
                extra.append(f"{variable} -> {name}")
    assert missing == [], "documented, read, but never delivered"
    assert extra == [], "delivered to a service that does not read it"


def test_each_service_settings_hold_the_distinctive_values(
    rendered: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {f"/run/secrets/{n}": s["file"] for n, s in rendered["secrets"].items()}
    dotenv: dict[str, str] = rendered["_dotenv"]
    for name, classes in SERVICES.items():
        for key in list(os.environ):
            monkeypatch.delenv(key)
        for key, rendered_value in (rendered["services"][name].get("environment") or {}).items():
            value = rendered_value.replace("$$", "$")  # `compose config` escapes a literal $
            monkeypatch.setenv(key, files.get(value, value) if key.endswith("_FILE") else value)
        for cls in classes:
            settings = cls()
            fields = env_names(cls)
            for variable in documented():
                if variable in fields and name in readers(variable):
                    value = getattr(settings, fields[variable])
                    assert _holds(value, dotenv[variable]), f"{name}: {variable}={value!r}"
                    if not variable.endswith(("_PASSWORD", "_SECRET_KEY")):
                        assert dotenv[variable] == VALUES[variable]


def test_blank_settings_mean_the_defaults_of_the_settings_classes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key in list(os.environ):
        monkeypatch.delenv(key)
    for cls in (TrainingSettings, ApiSettings, ExporterSettings):
        for variable in VALUES:
            monkeypatch.setenv(variable, "")
        settings = cls()
        for field_name, field in cls.model_fields.items():
            if field_name not in cls.blank_kept:
                assert getattr(settings, field_name) == field.get_default(
                    call_default_factory=True
                ), field_name
