"""The compose stack, run by the README's own `make` targets, for end-to-end tests.

The stack runs as its own compose project (``wine-mlops-e2e``) with a throw-away env file of
random secrets (and its own secrets folder), so it never touches a developer's ``.env`` or
stack data. The test session's MLflow clients log in as the stack's admin. ``AIRGAP=1`` in
the environment makes it use the local stand-in base images. Set ``E2E_KEEP=1`` to leave
the stack running afterwards for a look.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.support.processes import make_env

REPO = Path(__file__).resolve().parents[2]
PROJECT = "wine-mlops-e2e"
#: Host ports of its own, so that it runs beside a developer's stack on the default ones.
E2E_PORTS = {
    "MLFLOW_PORT": 15000,
    "API_PORT": 17654,
    "EXPORTER_PORT": 18000,
    "PROMETHEUS_PORT": 19090,
    "ALERTMANAGER_PORT": 19093,
    "RETRAINING_WEBHOOK_PORT": 18090,
    "GRAFANA_PORT": 13000,
}
MLFLOW = f"http://127.0.0.1:{E2E_PORTS['MLFLOW_PORT']}"
API = f"http://127.0.0.1:{E2E_PORTS['API_PORT']}"
EXPORTER = f"http://127.0.0.1:{E2E_PORTS['EXPORTER_PORT']}"
PROMETHEUS = f"http://127.0.0.1:{E2E_PORTS['PROMETHEUS_PORT']}"
ALERTMANAGER = f"http://127.0.0.1:{E2E_PORTS['ALERTMANAGER_PORT']}"
RETRAINING_WEBHOOK = f"http://127.0.0.1:{E2E_PORTS['RETRAINING_WEBHOOK_PORT']}"

#: The modules run in this order: the stack's own checks (which restart it), then serving,
#: then monitoring (which provokes alerts by stopping services), then the API contract (its
#: invalid requests would raise the client-error alert), then backup and restore
#: (which destroys the data and restores it with new secrets).
MODULE_ORDER = (
    "test_stack",
    "test_security",
    "test_serving",
    "test_api_runtime",
    "test_monitoring",
    "test_monitoring_loop",
    "test_contract",
    "test_backup",
    "test_upgrade",
)

#: Faster reactions than the defaults, so the tests need not wait long; the monitoring loop
#: with short windows (its rules and Alertmanager's timing: :func:`fast_monitoring`).
E2E_SETTINGS = {
    "WINE_WATCH_INTERVAL_SECONDS": "5",
    "EXPORTER_REFRESH_INTERVAL": "5",
    "WINE_MONITORING_REFRESH_SECONDS": "2",
    "WINE_PREDICTION_LOG_FLUSH_SECONDS": "0.5",
    "WINE_LIVE_ACCURACY_WINDOW": "50",
    "WINE_DRIFT_WINDOW": "300",
}
# The retraining cooldown keeps its default (an hour): the loop's first alert retrains, the
# second meets the cooldown, and no session runs while later tests back the stack up.


def use_e2e_ports(env_file: Path) -> None:
    """Sets the e2e host ports (:data:`E2E_PORTS`) in an env file, adding the missing ones."""
    lines = [
        line
        for line in env_file.read_text().splitlines()
        if line.partition("=")[0] not in E2E_PORTS
    ]
    lines += [f"{name}={port}" for name, port in E2E_PORTS.items()]
    env_file.write_text("\n".join(lines) + "\n")


def fast_monitoring(workdir: Path) -> dict[str, str]:
    """Copies of the alert rules and the Alertmanager configuration with short windows.

    The rules that call for retraining (label ``action: retrain``) fire at once rather than
    after minutes, and Alertmanager sends within a second; expressions, routes and receivers
    stay the stack's own. Returns the settings that point the stack at the copies.
    """
    rules = workdir / "rules"
    rules.mkdir()
    for source in sorted((REPO / "prometheus" / "rules").glob("*.yml")):
        document = yaml.safe_load(source.read_text())
        for group in document["groups"]:
            for rule in group["rules"]:
                if rule.get("labels", {}).get("action") == "retrain":
                    rule["for"] = "0s"
        (rules / source.name).write_text(yaml.safe_dump(document, sort_keys=False))
        (rules / source.name).chmod(0o644)
    rules.chmod(0o755)
    config = yaml.safe_load((REPO / "alertmanager" / "alertmanager.yml").read_text())
    routes = [config["route"], *config["route"].get("routes", [])]
    for route in routes:
        route.update({"group_wait": "1s", "group_interval": "5s", "repeat_interval": "1m"})
    alertmanager = workdir / "alertmanager.yml"
    alertmanager.write_text(yaml.safe_dump(config, sort_keys=False))
    alertmanager.chmod(0o644)
    return {"PROMETHEUS_RULES_DIR": str(rules), "ALERTMANAGER_CONFIG": str(alertmanager)}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Runs the e2e modules in :data:`MODULE_ORDER`, keeping the order inside each."""

    def position(item: pytest.Item) -> int:
        name = item.path.stem
        return MODULE_ORDER.index(name) if name in MODULE_ORDER else len(MODULE_ORDER)

    items.sort(key=position)


@dataclass
class Stack:
    """Runs make targets and docker compose commands against the e2e project."""

    env_file: Path
    data_dir: Path
    mlflow_url: str = MLFLOW

    @property
    def secrets_dir(self) -> Path:
        """Where `make env` writes this stack's secret files."""
        return self.env_file.parent / "secrets"

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "COMPOSE_PROJECT_NAME": PROJECT,
            "ENV_FILE": str(self.env_file),
            "SECRETS_DIR": str(self.secrets_dir),
            "WINE_DATA_DIR": str(self.data_dir),
        }

    def setting(self, name: str) -> str:
        """A value of the stack's env file (secrets included)."""
        for line in self.env_file.read_text().splitlines():
            key, _, value = line.partition("=")
            if key == name:
                return value
        raise KeyError(name)

    def login(self, user: str) -> tuple[str, str]:
        """The MLflow login of ``admin``, ``trainer``, ``prediction-api`` or ``mlflow-exporter``."""
        key = "EXPORTER" if user == "mlflow-exporter" else user.upper().replace("-", "_")
        return user, self.setting(f"MLFLOW_{key}_PASSWORD")

    def make(self, *targets: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Runs ``make TARGET…`` in the repository; output is echoed for the test log."""
        result = subprocess.run(
            ["make", "--no-print-directory", *targets],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        print(result.stdout[-4000:], result.stderr[-8000:])  # noqa: T201 (test log)
        if check and result.returncode != 0:
            raise AssertionError(f"make {' '.join(targets)} exited {result.returncode}")
        return result

    @property
    def airgap(self) -> bool:
        """Whether the stack runs on the air-gapped stand-ins (no Grafana then)."""
        return os.environ.get("AIRGAP") == "1"

    def compose(self, *args: str) -> str:
        """Runs ``docker compose ARGS…`` for the e2e project and returns its output."""
        return subprocess.run(
            ["docker", "compose", "--env-file", str(self.env_file), *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        ).stdout

    def inspect(self, service: str, template: str) -> str:
        """``docker inspect --format TEMPLATE`` of the service's container, e.g. its health."""
        container = self.compose("ps", "--quiet", service).strip()
        return subprocess.run(
            ["docker", "inspect", "--format", template, container],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`make up` once for the whole session; `make destroy-data` at the end."""
    workdir = tmp_path_factory.mktemp("e2e")
    env_file = workdir / "e2e.env"
    make_env(env_file, workdir / "secrets")
    lines = env_file.read_text().splitlines()
    overridden = [
        f"{key}={E2E_SETTINGS[key]}" if (key := line.split("=", 1)[0]) in E2E_SETTINGS else line
        for line in lines
    ]
    overridden += [f"{key}={value}" for key, value in fast_monitoring(workdir).items()]
    env_file.write_text("\n".join(overridden) + "\n")
    use_e2e_ports(env_file)
    data_dir = workdir / "data"
    data_dir.mkdir()
    data_dir.chmod(0o755)
    stack = Stack(env_file, data_dir)
    stack.make("destroy-data", check=False)  # leftovers of an interrupted earlier run
    try:
        with pytest.MonkeyPatch.context() as patch:
            admin, password = stack.login("admin")
            patch.setenv("MLFLOW_TRACKING_USERNAME", admin)
            patch.setenv("MLFLOW_TRACKING_PASSWORD", password)
            stack.make("up")
            yield stack
    finally:
        if os.environ.get("E2E_KEEP") != "1":
            stack.make("destroy-data", check=False)
