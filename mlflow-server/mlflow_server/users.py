"""The stack's MLflow users and their permissions, created or updated idempotently.

MLflow's basic-auth runs with ``default_permission = NO_PERMISSIONS``: a user sees only what
it was granted. At every start the launcher, logged in as the admin, makes the users match
the settings:

============== ========================== ============================================
user           experiment                 registered model
============== ========================== ============================================
trainer        EDIT (create runs, log)    MANAGE (register versions, move aliases)
prediction-api READ                       READ (look up the alias, download the model)
mlflow-exporter READ on every experiment  READ on every registered model
============== ========================== ============================================

The experiment and the registered model are created here (empty) when they do not exist
yet, so that the grants can name them before the first training. The experiment is of kind
``custom_model_development``, so MLflow 3's UI opens it on its runs rather than on GenAI
traces; training adds the descriptions. A user whose password already works is left as it
is; a changed password in ``.env`` is applied (rotation). Re-running it changes nothing.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wine_mlops.tracking import accepts_login

if TYPE_CHECKING:
    from mlflow.server.auth.client import AuthServiceClient
    from pydantic import SecretStr

log = logging.getLogger(__name__)

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
"""MLflow 3's UI opens an experiment of this kind on its runs, not on the GenAI traces view."""


@dataclass(frozen=True)
class ServiceUser:
    """One MLflow user of the stack.

    Attributes:
        name: The login.
        password: Its password.
        experiment: Permission on the experiment (``READ``, ``EDIT`` or ``MANAGE``).
        model: Permission on the registered model.
        everything: Grant on every experiment and model (``*``) instead of the stack's own.
    """

    name: str
    password: SecretStr
    experiment: str
    model: str
    everything: bool = False


def _ensure_grant(
    auth: AuthServiceClient, user: str, resource_type: str, resource_id: str, permission: str
) -> bool:
    """Makes ``user`` hold exactly ``permission`` on one resource; True when it changed."""
    from mlflow.exceptions import MlflowException

    if auth.get_user_permission(user, resource_type, resource_id).permission == permission:
        return False
    with contextlib.suppress(MlflowException):  # nothing granted directly yet
        auth.revoke_user_permission(user, resource_type, resource_id)
    auth.grant_user_permission(user, resource_type, resource_id, permission)
    return True


def provision(
    tracking_uri: str,
    admin: tuple[str, SecretStr],
    users: list[ServiceUser],
    experiment_name: str,
    model_name: str,
) -> None:
    """Creates or updates the users and grants; the caller is logged in as the admin.

    Args:
        tracking_uri: The server (basic-auth app), e.g. ``http://127.0.0.1:5000``.
        admin: The admin's name and password, checked first for a clear error.
        users: The service users to create or update.
        experiment_name: The experiment the trainer writes and the others read.
        model_name: The registered model the trainer promotes and the API serves.

    Raises:
        PermissionError: When the server refuses the admin's login.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.server import get_app_client
    from mlflow.tracking import MlflowClient

    if not accepts_login(tracking_uri, (admin[0], admin[1].get_secret_value())):
        raise PermissionError(
            f"MLflow refuses the admin login {admin[0]!r}: MLFLOW_ADMIN_PASSWORD does not match "
            "the auth database (the admin password is set once; see README, Security, to "
            "rotate it)"
        )
    auth = get_app_client("basic-auth", tracking_uri=tracking_uri)
    tracking = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    experiment = tracking.get_experiment_by_name(experiment_name)
    if experiment is None:
        experiment_id = tracking.create_experiment(
            experiment_name, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
        )
    else:
        experiment_id = experiment.experiment_id
        if experiment.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
            tracking.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    try:
        tracking.get_registered_model(model_name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        tracking.create_registered_model(
            model_name, description="Wine cultivar classifier; `champion` is served."
        )
        log.info("created the registered model %r", model_name)

    for user in users:
        try:
            auth.get_user(user.name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            auth.create_user(user.name, user.password.get_secret_value())
            log.info("created the MLflow user %r", user.name)
        else:
            if not accepts_login(tracking_uri, (user.name, user.password.get_secret_value())):
                auth.update_user_password(user.name, user.password.get_secret_value())
                log.info("updated the password of the MLflow user %r", user.name)
        scope_experiment = "*" if user.everything else experiment_id
        scope_model = "*" if user.everything else model_name
        changed = _ensure_grant(auth, user.name, "experiment", scope_experiment, user.experiment)
        changed |= _ensure_grant(auth, user.name, "registered_model", scope_model, user.model)
        if changed:
            log.info(
                "MLflow user %r: %s on experiment %s, %s on model %s",
                user.name,
                user.experiment,
                scope_experiment,
                user.model,
                scope_model,
            )
    log.info("MLflow users in place: %s", ", ".join(u.name for u in users))
