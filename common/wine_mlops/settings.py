"""Typed settings shared by the services, read once from environment variables."""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from wine_mlops.logs import configure_logging

log = logging.getLogger(__name__)


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


#: Names read from one comma-separated variable: ``"a, b"`` gives ``("a", "b")``, blank ``()``.
CommaSeparated = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_split_commas)]


#: The stack's accuracy floor (``WINE_MIN_ACCURACY``): training never promotes a model below it
#: to champion, and the exporter publishes it (``wine_champion_accuracy_floor_ratio``) for the
#: alert on the champion's accuracy. The one place this number is written.
DEFAULT_MIN_ACCURACY = 0.9


class SecretFileError(ValueError):
    """A ``VAR_FILE`` variable names a file that cannot be read."""


def _env_name(field_name: str, field: FieldInfo) -> str:
    alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
    return alias or field_name.upper()


class FileSecretsSource(PydanticBaseSettingsSource):
    """Reads a setting ``VAR`` from the file that ``VAR_FILE`` names (Docker secrets).

    This is the convention of the official images (``POSTGRES_PASSWORD_FILE``): compose mounts
    each secret as a file under ``/run/secrets/``, so that passwords never appear among a
    container's environment variables (``docker inspect``). One trailing newline is dropped.
    """

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: :meth:`__call__` reads every field at once."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for field_name, field in self.settings_cls.model_fields.items():
            name = _env_name(field_name, field)
            path = os.environ.get(f"{name}_FILE")
            if not path:
                continue
            try:
                values[name] = Path(path).read_text().removesuffix("\n")
            except OSError as exc:
                raise SecretFileError(f"{name}_FILE: cannot read {path}: {exc.strerror}") from None
        return values


class ServiceSettings(BaseSettings):
    """What every service reads: ``LOG_LEVEL``. Unknown variables are ignored.

    Every setting ``VAR`` can also come from a file named by ``VAR_FILE`` (how compose hands
    out secrets); a plain ``VAR`` in the environment takes precedence.

    A blank value means the field's default: compose passes ``${VAR:-}``, so that each
    default is written once, here in the settings classes. Fields listed in
    ``blank_kept`` take a blank value as it is (where blank has a meaning of its own).
    """

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)
    #: Fields where a blank value is kept rather than replaced by the default.
    blank_kept: ClassVar[frozenset[str]] = frozenset()

    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL")

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_default(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, str) or value.strip() or info.field_name in cls.blank_kept:
            return value
        field = cls.model_fields[info.field_name or ""]
        return value if field.is_required() else field.get_default(call_default_factory=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Values from the constructor, then the environment, then ``VAR_FILE`` files."""
        return init_settings, env_settings, FileSecretsSource(settings_cls)


class MlflowSettings(ServiceSettings):
    """Where MLflow is and which names the stack uses in it.

    Environment variables: ``MLFLOW_TRACKING_URI``, ``WINE_EXPERIMENT_NAME``,
    ``WINE_MODEL_NAME``, ``WINE_CHAMPION_ALIAS``, ``WINE_CHALLENGER_ALIAS``,
    ``WINE_MLFLOW_CONNECT_ATTEMPTS``, ``WINE_MLFLOW_CONNECT_MAX_BACKOFF``,
    ``WINE_MIN_ACCURACY`` (blank: :data:`DEFAULT_MIN_ACCURACY`), and the service's
    MLflow login ``MLFLOW_TRACKING_USERNAME`` with ``MLFLOW_TRACKING_PASSWORD`` (or
    ``MLFLOW_TRACKING_PASSWORD_FILE``).
    """

    tracking_uri: str = Field(
        default="http://127.0.0.1:5000", validation_alias="MLFLOW_TRACKING_URI"
    )
    experiment_name: str = Field(default="wine-classifier", validation_alias="WINE_EXPERIMENT_NAME")
    model_name: str = Field(default="wine-classifier", validation_alias="WINE_MODEL_NAME")
    champion_alias: str = Field(default="champion", validation_alias="WINE_CHAMPION_ALIAS")
    challenger_alias: str = Field(default="challenger", validation_alias="WINE_CHALLENGER_ALIAS")
    connect_attempts: int = Field(default=8, ge=1, validation_alias="WINE_MLFLOW_CONNECT_ATTEMPTS")
    connect_max_backoff_seconds: float = Field(
        default=8.0, gt=0, validation_alias="WINE_MLFLOW_CONNECT_MAX_BACKOFF"
    )
    min_accuracy: float = Field(
        default=DEFAULT_MIN_ACCURACY, ge=0, le=1, validation_alias="WINE_MIN_ACCURACY"
    )
    tracking_username: str | None = Field(default=None, validation_alias="MLFLOW_TRACKING_USERNAME")
    tracking_password: SecretStr | None = Field(
        default=None, validation_alias="MLFLOW_TRACKING_PASSWORD"
    )

    def use_credentials(self) -> None:
        """Hands the service's MLflow login to MLflow's HTTP client.

        MLflow's client reads ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` from
        the process environment on every request; when the password came from a file, this
        puts it there (in this process only, never in the container's configuration). Call
        it once at start-up, before the first MLflow request.
        """
        if self.tracking_username and self.tracking_password is not None:
            os.environ["MLFLOW_TRACKING_USERNAME"] = self.tracking_username
            os.environ["MLFLOW_TRACKING_PASSWORD"] = self.tracking_password.get_secret_value()

    def use_tracking_uri(self) -> None:
        """Makes :attr:`tracking_uri` the process's MLflow server (``mlflow.set_tracking_uri``).

        The stack's rule for MLflow's process-wide state (tracking URI, login, HTTP retries):
        only a process's entry point sets it, once, from its settings, before the first MLflow
        request; library code never does. The API and the exporter set no tracking URI at
        all: they name the server on each ``MlflowClient``. The training's fluent logging
        (``mlflow.start_run``, ``log_model``, ``register_model``) has no per-call server, so
        its entry point calls this; in-process callers of a session (tests) do the same.
        """
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)


#: MLflow's HTTP client reads these from the process environment on every request.
MLFLOW_HTTP_MAX_RETRIES = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
MLFLOW_HTTP_TIMEOUT = "MLFLOW_HTTP_REQUEST_TIMEOUT"


def use_mlflow_http(
    *,
    max_retries: int | None = None,
    timeout_seconds: float | None = None,
    environ: MutableMapping[str, str] | None = None,
) -> dict[str, str]:
    """Sets how this process's MLflow client retries and waits: the one place it is done.

    By default MLflow's HTTP client retries a failed request 7 times with backoff, each
    attempt up to 120 s: minutes per call while the server is down. Each service's entry
    point calls this once at start-up, before its first MLflow request, with the values that
    suit it (a service that retries on its own schedule fails fast). An operator's own
    ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` / ``MLFLOW_HTTP_REQUEST_TIMEOUT`` is kept. MLflow's
    telemetry is off (``MLFLOW_DISABLE_TELEMETRY``) unless the environment says otherwise.

    Args:
        max_retries: Retries of a failed request (None: MLflow's default).
        timeout_seconds: Seconds one request may take (None: MLflow's default).
        environ: The environment to change (default: the process's).

    Returns:
        The values in effect, by variable name.
    """
    env = os.environ if environ is None else environ
    wanted = {
        MLFLOW_HTTP_MAX_RETRIES: max_retries,
        MLFLOW_HTTP_TIMEOUT: timeout_seconds,
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    for name, value in wanted.items():
        if value is not None:
            env.setdefault(name, f"{value:g}" if isinstance(value, float) else str(value))
    return {name: env[name] for name in wanted if name in env}


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def load_settings(settings_type: type[SettingsT], **values: Any) -> SettingsT | None:
    """Reads a service's settings; an invalid one is logged, one line per problem.

    Args:
        settings_type: The settings class.
        **values: Values that take precedence over the environment (e.g. from a CLI).

    Returns:
        The settings, or None when they are invalid (the caller exits with code 2).
    """
    try:
        return settings_type(**values)
    except ValidationError as exc:
        configure_logging()
        for error in exc.errors():
            log.error("invalid setting %s: %s", ".".join(map(str, error["loc"])), error["msg"])
        return None
    except SecretFileError as exc:
        configure_logging()
        log.error("invalid setting %s", exc)
        return None
