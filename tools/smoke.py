"""Smoke test of a deployed stack: checks whichever services are deployed, one by one.

Run by ``make smoke`` (the Jenkinsfile's "Smoke test" stage) after a deploy and a training::

    python tools/smoke.py --compose --env-file .env          # services and URLs from compose
    python tools/smoke.py --service mlflow-server=http://127.0.0.1:5000 --min-accuracy 0.9

Each service of the stack has its checks (the table :data:`CHECKS`). A service deployed in the
compose project (it has a container, running or not) must pass all of its checks; a service
that is not deployed (Grafana on a machine without a container registry, say) is reported as
skipped, so the smoke test follows the stack without edits. Every check is printed as one
line (``PASS``/``FAIL``/``SKIP``), written
as a JUnit test case (``smoke-junit.xml``) and summarised in ``summary.txt`` (champion version,
accuracy, URLs) for the build description.

With ``--compose`` the URLs come from ``docker compose port`` (the host addresses a person
opens). Where the smoke test itself runs inside the compose network (the Jenkins container),
``SMOKE_VIA_SERVICE_NAMES=1`` makes it reach the services by their compose names instead.

Exit codes: ``0`` every check of every deployed service passed, ``1`` a check failed, ``2`` bad
arguments or compose could not be asked.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

from wine_mlops.settings import DEFAULT_MIN_ACCURACY

#: Container port of each service the smoke test knows, in the order it checks them.
SERVICE_PORTS: dict[str, int] = {
    "mlflow-server": 5000,
    "prediction-api": 7654,
    "mlflow-exporter": 8000,
    "prometheus": 9090,
    "grafana": 3000,
}

#: One wine of scikit-learn's data set (row 0, cultivar 0), by the stack's feature names.
SAMPLE_WINE: dict[str, float] = {
    "alcohol": 14.23,
    "malic_acid": 1.71,
    "ash": 2.43,
    "alcalinity_of_ash": 15.6,
    "magnesium": 127.0,
    "total_phenols": 2.8,
    "flavanoids": 3.06,
    "nonflavanoid_phenols": 0.28,
    "proanthocyanins": 2.29,
    "color_intensity": 5.64,
    "hue": 1.04,
    "od280_od315_of_diluted_wines": 3.92,
    "proline": 1065.0,
}


class CheckFailedError(Exception):
    """A check saw something wrong; the message says what, for the report."""


@dataclass
class Response:
    """What an HTTP request returned."""

    status: int
    body: str

    def json(self) -> object:
        """The body parsed as JSON.

        Raises:
            CheckFailedError: When the body is not JSON.
        """
        try:
            return json.loads(self.body)
        except json.JSONDecodeError as exc:
            raise CheckFailedError(f"answer is not JSON: {self.body[:200]!r}") from exc


def http(
    method: str,
    url: str,
    payload: object = None,
    timeout: float = 10.0,
    login: tuple[str, str] | None = None,
) -> Response:
    """Sends one request and returns the status and body, also for 4xx/5xx answers.

    Args:
        method: ``GET`` or ``POST``.
        url: The full URL.
        payload: A JSON body for ``POST``.
        timeout: Seconds to wait for the answer.
        login: A user name and password sent with HTTP basic auth (MLflow's logins).

    Raises:
        CheckFailedError: When the service cannot be reached at all.
    """
    data = None if payload is None else json.dumps(payload).encode()
    headers = {"Accept": "application/json"}
    if login is not None:
        token = base64.b64encode(f"{login[0]}:{login[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            return Response(answer.status, answer.read().decode(errors="replace"))
    except urllib.error.HTTPError as exc:
        return Response(exc.code, exc.read().decode(errors="replace"))
    except (OSError, ValueError) as exc:
        raise CheckFailedError(f"{method} {url} unreachable: {exc}") from exc


def expect_ok(response: Response, what: str) -> None:
    """Fails the check unless the answer is 2xx."""
    if not 200 <= response.status < 300:
        raise CheckFailedError(f"{what} answered HTTP {response.status}: {response.body[:200]!r}")


@dataclass
class Context:
    """What the checks share: settings, the URLs, and what earlier checks found."""

    urls: dict[str, str]
    model_name: str = "wine-classifier"
    champion_alias: str = "champion"
    min_accuracy: float = 0.0
    wait_seconds: float = 60.0
    mlflow_login: tuple[str, str] | None = None
    facts: dict[str, str] = field(default_factory=dict)


Check = Callable[[Context, str], str]


def retry(check: Check, context: Context, url: str) -> str:
    """Runs a check until it passes or ``context.wait_seconds`` have gone by.

    For facts that become true shortly after a deploy (a first Prometheus scrape).
    """
    deadline = time.monotonic() + context.wait_seconds
    while True:
        try:
            return check(context, url)
        except CheckFailedError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(2)


def mlflow_health(context: Context, url: str) -> str:
    """``GET /health`` answers 200."""
    expect_ok(http("GET", f"{url}/health"), "GET /health")
    return f"{url}/health answered OK"


def mlflow_champion(context: Context, url: str) -> str:
    """The champion alias points to a version whose test accuracy is known and high enough."""
    query = urllib.parse.urlencode({"name": context.model_name, "alias": context.champion_alias})
    response = http(
        "GET", f"{url}/api/2.0/mlflow/registered-models/alias?{query}", login=context.mlflow_login
    )
    if response.status == 404 or "RESOURCE_DOES_NOT_EXIST" in response.body:
        raise CheckFailedError(
            f"no '{context.champion_alias}' alias on model '{context.model_name}': "
            "has a training session run?"
        )
    expect_ok(response, "GET registered-models/alias")
    body = response.json()
    version = body.get("model_version", {}) if isinstance(body, dict) else {}
    tags = {t["key"]: t["value"] for t in version.get("tags", [])}
    accuracy_text = tags.get("accuracy")
    if accuracy_text is None and version.get("run_id"):  # older versions: the run's metric
        run_url = f"{url}/api/2.0/mlflow/runs/get?run_id={version['run_id']}"
        run = http("GET", run_url, login=context.mlflow_login).json()
        metrics = (
            run.get("run", {}).get("data", {}).get("metrics", []) if isinstance(run, dict) else []
        )
        accuracy_text = next((str(m["value"]) for m in metrics if m["key"] == "accuracy"), None)
    if accuracy_text is None:
        raise CheckFailedError(f"champion v{version.get('version')} has no accuracy")
    accuracy = float(accuracy_text)
    context.facts.update(
        champion_version=str(version.get("version")),
        champion_accuracy=f"{accuracy:.4f}",
        champion_run_id=str(version.get("run_id", "")),
    )
    if accuracy < context.min_accuracy:
        raise CheckFailedError(
            f"champion v{version.get('version')} accuracy {accuracy:.4f} is below the floor "
            f"{context.min_accuracy:.4f}"
        )
    return (
        f"model '{context.model_name}' @{context.champion_alias} is v{version.get('version')}, "
        f"accuracy {accuracy:.4f} (floor {context.min_accuracy:.4f})"
    )


def api_ready(context: Context, url: str) -> str:
    """``GET /readyz`` answers 2xx: the API has loaded its model (waits for the first load)."""

    def ready(context: Context, url: str) -> str:
        expect_ok(http("GET", f"{url}/readyz"), "GET /readyz")
        return f"{url}/readyz answered OK"

    return retry(ready, context, url)


def api_predict(context: Context, url: str) -> str:
    """A prediction of one wine, from the champion version when it is known.

    Waits while the API still serves an older version: it checks the registry periodically.
    """
    return retry(_predict_once, context, url)


def _predict_once(context: Context, url: str) -> str:
    response = http("POST", f"{url}/predict", SAMPLE_WINE)
    expect_ok(response, "POST /predict")
    body = response.json()
    if not isinstance(body, dict) or body.get("class_id") not in (0, 1, 2):
        raise CheckFailedError(f"POST /predict returned no class_id 0-2: {response.body[:200]!r}")
    served = str(body.get("model_version"))
    champion = context.facts.get("champion_version")
    if champion is not None and served != champion:
        raise CheckFailedError(f"the API serves v{served}, the champion is v{champion}")
    return f"POST /predict: class {body['class_id']} ({body.get('class_name')}) from v{served}"


def api_metrics(context: Context, url: str) -> str:
    """``GET /metrics`` exposes the API's own ``wine_api_`` metrics."""
    response = http("GET", f"{url}/metrics")
    expect_ok(response, "GET /metrics")
    if "wine_api_" not in response.body:
        raise CheckFailedError("GET /metrics has no wine_api_ metric")
    return "GET /metrics exposes wine_api_* metrics"


def exporter_health(context: Context, url: str) -> str:
    """``GET /healthz`` answers 2xx."""
    expect_ok(http("GET", f"{url}/healthz"), "GET /healthz")
    return f"{url}/healthz answered OK"


def exporter_metrics(context: Context, url: str) -> str:
    """``GET /metrics`` exposes ``mlflow_`` metrics with their TYPE lines."""
    response = http("GET", f"{url}/metrics")
    expect_ok(response, "GET /metrics")
    typed = [line for line in response.body.splitlines() if line.startswith("# TYPE mlflow_")]
    if not typed:
        raise CheckFailedError("GET /metrics has no '# TYPE mlflow_…' line")
    return f"GET /metrics exposes {len(typed)} mlflow_* metric families"


def prometheus_ready(context: Context, url: str) -> str:
    """``GET /-/ready`` answers 2xx."""
    expect_ok(http("GET", f"{url}/-/ready"), "GET /-/ready")
    return f"{url}/-/ready answered OK"


def prometheus_targets(context: Context, url: str) -> str:
    """Every active scrape target is up (waits for the first scrapes)."""

    def all_up(context: Context, url: str) -> str:
        response = http("GET", f"{url}/api/v1/targets?state=active")
        expect_ok(response, "GET /api/v1/targets")
        body = response.json()
        targets = body.get("data", {}).get("activeTargets", []) if isinstance(body, dict) else []
        if not targets:
            raise CheckFailedError("Prometheus has no active target")
        down = [
            f"{t.get('labels', {}).get('job')} {t.get('scrapeUrl')}: {t.get('health')} "
            f"{t.get('lastError', '')}".strip()
            for t in targets
            if t.get("health") != "up"
        ]
        if down:
            raise CheckFailedError("targets not up: " + "; ".join(down))
        jobs = sorted({t.get("labels", {}).get("job", "?") for t in targets})
        return f"{len(targets)} targets up ({', '.join(jobs)})"

    return retry(all_up, context, url)


def grafana_health(context: Context, url: str) -> str:
    """``GET /api/health`` answers 2xx with its database ok."""
    response = http("GET", f"{url}/api/health")
    expect_ok(response, "GET /api/health")
    body = response.json()
    if isinstance(body, dict) and body.get("database") not in (None, "ok"):
        raise CheckFailedError(f"Grafana database is {body.get('database')!r}")
    return f"{url}/api/health answered OK"


#: The checks of each service, run in this order (the champion before the prediction).
CHECKS: dict[str, list[tuple[str, Check]]] = {
    "mlflow-server": [("health", mlflow_health), ("champion", mlflow_champion)],
    "prediction-api": [
        ("ready", api_ready),
        ("predict", api_predict),
        ("metrics", api_metrics),
    ],
    "mlflow-exporter": [("health", exporter_health), ("metrics", exporter_metrics)],
    "prometheus": [("ready", prometheus_ready), ("targets up", prometheus_targets)],
    "grafana": [("health", grafana_health)],
}


@dataclass
class Result:
    """The outcome of one check."""

    service: str
    check: str
    status: str  # PASS, FAIL or SKIP
    detail: str
    seconds: float = 0.0


def run_checks(services: Iterable[str], context: Context) -> list[Result]:
    """Runs the checks of every known service; services not in ``services`` are skipped.

    Args:
        services: The services deployed in the stack.
        context: URLs and settings; ``context.urls`` must hold a URL for each defined service.

    Returns:
        One result per check, in :data:`CHECKS` order.
    """
    defined = set(services)
    results: list[Result] = []
    for service, checks in CHECKS.items():
        for name, check in checks:
            if service not in defined:
                results.append(Result(service, name, "SKIP", "not in the deployed stack"))
                continue
            url = context.urls.get(service)
            if not url:
                results.append(Result(service, name, "FAIL", "no URL: is its port published?"))
                continue
            started = time.monotonic()
            try:
                detail = check(context, url.rstrip("/"))
                status = "PASS"
            except CheckFailedError as exc:
                detail, status = str(exc), "FAIL"
            except Exception as exc:  # a crash of one check must not hide the others
                detail, status = f"{type(exc).__name__}: {exc}", "FAIL"
            results.append(Result(service, name, status, detail, time.monotonic() - started))
    return results


def format_report(results: Sequence[Result]) -> str:
    """One aligned line per check and a closing count line."""
    width = max((len(f"{r.service} {r.check}") for r in results), default=0)
    lines = [f"{r.status:<4}  {f'{r.service} {r.check}':<{width}}  {r.detail}" for r in results]
    counts = {s: sum(r.status == s for r in results) for s in ("PASS", "FAIL", "SKIP")}
    lines.append(
        f"smoke: {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped"
    )
    return "\n".join(lines)


def write_junit(results: Sequence[Result], path: Path) -> None:
    """Writes the results as a JUnit file: one test case per check, skips as skipped."""
    suite = ElementTree.Element(
        "testsuite",
        name="smoke",
        tests=str(len(results)),
        failures=str(sum(r.status == "FAIL" for r in results)),
        skipped=str(sum(r.status == "SKIP" for r in results)),
        time=f"{sum(r.seconds for r in results):.3f}",
    )
    for r in results:
        case = ElementTree.SubElement(
            suite, "testcase", classname=f"smoke.{r.service}", name=r.check, time=f"{r.seconds:.3f}"
        )
        if r.status == "FAIL":
            ElementTree.SubElement(case, "failure", message=r.detail).text = r.detail
        elif r.status == "SKIP":
            ElementTree.SubElement(case, "skipped", message=r.detail)
        else:
            ElementTree.SubElement(case, "system-out").text = r.detail
    path.parent.mkdir(parents=True, exist_ok=True)
    ElementTree.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def summary(context: Context, public_urls: dict[str, str], results: Sequence[Result]) -> str:
    """The one-paragraph build summary: verdict, champion and the URLs to open."""
    failed = sum(r.status == "FAIL" for r in results)
    verdict = "smoke passed" if not failed else f"smoke FAILED ({failed} checks)"
    version = context.facts.get("champion_version")
    champion = (
        f"champion {context.model_name} v{version}, accuracy {context.facts['champion_accuracy']}"
        if version
        else "no champion"
    )
    urls = ", ".join(f"{s} {u}" for s, u in public_urls.items())
    return f"{verdict}; {champion}; {urls}" if urls else f"{verdict}; {champion}"


def compose_command(env_file: str | None) -> list[str]:
    """``docker compose`` with the env file, for the project of ``COMPOSE_PROJECT_NAME``."""
    command = ["docker", "compose"]
    if env_file:
        command += ["--env-file", env_file]
    return command


def compose_services(env_file: str | None) -> list[str]:
    """The services deployed in the project: those with a container, running or not.

    A service the deployment left out (Grafana on an air-gapped machine, say) is skipped; one
    whose container exists but does not answer fails its checks.
    """
    output = subprocess.run(
        [*compose_command(env_file), "ps", "--all", "--services"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [line.strip() for line in output.splitlines() if line.strip()]


def compose_public_url(env_file: str | None, service: str, port: int) -> str | None:
    """The host URL of a service's published port, or None when it is not published."""
    result = subprocess.run(
        [*compose_command(env_file), "port", service, str(port)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    address = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    if result.returncode != 0 or not address or address.endswith(":0"):
        return None
    host, _, host_port = address.rpartition(":")
    if host in ("0.0.0.0", "::", "[::]", ""):  # noqa: S104 (reading, not binding)
        host = "127.0.0.1"
    return f"http://{host}:{host_port}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line; every option also has an environment variable."""
    parser = argparse.ArgumentParser(
        description="Smoke-test the deployed stack: checks each deployed service."
    )
    parser.add_argument(
        "--compose",
        action="store_true",
        help="take the services and URLs from `docker compose` (COMPOSE_PROJECT_NAME applies)",
    )
    parser.add_argument("--env-file", default=os.environ.get("ENV_FILE"), help="compose env file")
    parser.add_argument(
        "--service",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="a deployed service and its base URL (repeatable; instead of --compose)",
    )
    parser.add_argument(
        "--min-accuracy",
        type=float,
        default=float(os.environ.get("WINE_MIN_ACCURACY") or DEFAULT_MIN_ACCURACY),
        help="fail when the champion's test accuracy is lower (env WINE_MIN_ACCURACY)",
    )
    parser.add_argument(
        "--model-name", default=os.environ.get("WINE_MODEL_NAME") or "wine-classifier"
    )
    parser.add_argument(
        "--champion-alias", default=os.environ.get("WINE_CHAMPION_ALIAS") or "champion"
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=float(os.environ.get("SMOKE_WAIT_SECONDS") or 60),
        help="seconds to wait for facts that settle after a deploy (Prometheus targets)",
    )
    parser.add_argument(
        "--reports",
        type=Path,
        default=Path(os.environ.get("REPORTS") or "reports"),
        help="folder for smoke-junit.xml and summary.txt",
    )
    args = parser.parse_args(argv)
    if args.compose == bool(args.service):
        parser.error("give either --compose or at least one --service NAME=URL")
    return args


def mlflow_login(env_file: str | None) -> tuple[str, str] | None:
    """The MLflow login of the smoke test: read-only, as the prediction API's user.

    ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` when set; otherwise the
    ``prediction-api`` user with ``MLFLOW_PREDICTION_API_PASSWORD`` from the env file.
    """
    user, password = (
        os.environ.get("MLFLOW_TRACKING_USERNAME"),
        os.environ.get("MLFLOW_TRACKING_PASSWORD"),
    )
    if user and password:
        return user, password
    if env_file and os.path.exists(env_file):
        with open(env_file) as handle:
            for line in handle:
                key, _, value = line.strip().partition("=")
                if key == "MLFLOW_PREDICTION_API_PASSWORD" and value:
                    return "prediction-api", value
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the smoke test; returns the exit code."""
    args = parse_args(argv)
    check_urls: dict[str, str] = {}
    public_urls: dict[str, str] = {}
    if args.compose:
        try:
            services = compose_services(args.env_file)
        except (OSError, subprocess.SubprocessError) as exc:
            sys.stderr.write(f"smoke: cannot ask docker compose for the services: {exc}\n")
            return 2
        if "mlflow-server" not in services:  # every version of the stack has it
            sys.stderr.write(f"smoke: no mlflow-server is deployed (services: {services})\n")
            return 2
        via_names = os.environ.get("SMOKE_VIA_SERVICE_NAMES") == "1"
        for service, port in SERVICE_PORTS.items():
            if service not in services:
                continue
            public = compose_public_url(args.env_file, service, port)
            if public:
                public_urls[service] = public
            url = f"http://{service}:{port}" if via_names else public
            if url:
                check_urls[service] = url
    else:
        for item in args.service:
            name, sep, url = item.partition("=")
            if not sep or name not in SERVICE_PORTS or not url.startswith(("http://", "https://")):
                sys.stderr.write(
                    f"smoke: bad --service {item!r}; expected NAME=http://HOST:PORT with NAME "
                    f"one of {', '.join(SERVICE_PORTS)}\n"
                )
                return 2
            check_urls[name] = public_urls[name] = url
        services = list(check_urls)
    context = Context(
        urls=check_urls,
        model_name=args.model_name,
        champion_alias=args.champion_alias,
        min_accuracy=args.min_accuracy,
        wait_seconds=args.wait,
        mlflow_login=mlflow_login(args.env_file),
    )
    results = run_checks(services, context)
    sys.stdout.write(format_report(results) + "\n")
    text = summary(context, public_urls, results)
    sys.stdout.write(text + "\n")
    write_junit(results, args.reports / "smoke-junit.xml")
    (args.reports / "summary.txt").write_text(text + "\n")
    return 1 if any(r.status == "FAIL" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
