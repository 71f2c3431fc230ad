# One image per Python service of docker-compose.yaml, each a target of this file:
#   docker build --target mlflow-server .
# Works with the classic builder (no BuildKit-only syntax). The base image is a variable so
# that an air-gapped machine can use the local stand-in built by airgap/build.sh.
ARG PYTHON_IMAGE=python:3.11-slim

# What every image runs on: the labels, the environment and the user, without the venv's
# build tools (the prediction API's final stage starts here and copies its venv in).
FROM ${PYTHON_IMAGE} AS python-runtime
LABEL org.opencontainers.image.title="wine-mlops" \
      org.opencontainers.image.description="Wine MLOps reference stack" \
      org.opencontainers.image.licenses="MIT"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    MLFLOW_DISABLE_TELEMETRY=true \
    GIT_PYTHON_REFRESH=quiet
# GIT_PYTHON_REFRESH: the images have no git binary; MLflow's import of GitPython would print
# a warning block on every start (training takes the commit from GIT_COMMIT instead).
# The services run as this user; the targets name it by number (USER 10001:10001), so that
# a runtime can tell it is not root without reading the image's /etc/passwd.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app app
WORKDIR /app

FROM python-runtime AS python-base
RUN python3 -m venv /opt/venv
# The workspace's manifests: the root pyproject.toml (its member list), each package's
# pyproject.toml and the one lockfile. Each target installs its service's part of the lockfile
# (tools/image_requirements.py prints it, transitive dependencies included), every file checked
# against the lockfile's hashes, then its package and the shared one from source: dependencies
# before code, so that a code change rebuilds only the last layers. --no-deps and `pip check`
# make a requirement missing from that part fail the build; --no-build-isolation builds the
# two packages with the venv's own setuptools (nothing fetched unpinned).
COPY pyproject.toml requirements.lock /build/
COPY tools/pyproject.toml tools/image_requirements.py /build/tools/
COPY common/pyproject.toml /build/common/
COPY mlflow-server/pyproject.toml /build/mlflow-server/
COPY model-training/pyproject.toml /build/model-training/
COPY mlflow-exporter/pyproject.toml /build/mlflow-exporter/
COPY prediction-api/pyproject.toml /build/prediction-api/

FROM python-base AS mlflow-server
RUN python3 /build/tools/image_requirements.py mlflow-server --root /build --group build > /build/requirements.txt \
 && pip install --require-hashes --no-deps -r /build/requirements.txt
RUN mkdir -p /mlflow/artifacts && chown app:app /mlflow/artifacts
COPY common/ /build/common/
COPY mlflow-server/ /build/mlflow-server/
RUN pip install --no-deps --no-build-isolation /build/common /build/mlflow-server \
 && pip check && rm -rf /build
ENV MLFLOW_ARTIFACTS_DESTINATION=/mlflow/artifacts \
    MLFLOW_PROMETHEUS_DIR=/tmp/mlflow-prometheus
USER 10001:10001
# 5000: MLflow (basic-auth); 5001: the launcher's ops port (/readyz, /metrics), never published.
EXPOSE 5000 5001
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=5 \
  CMD ["python3", "-m", "wine_mlops.healthcheck", "http://127.0.0.1:5001/readyz"]
ENTRYPOINT ["python3", "-m", "mlflow_server"]

FROM python-base AS model-training
RUN python3 /build/tools/image_requirements.py model-training --root /build --group build > /build/requirements.txt \
 && pip install --require-hashes --no-deps -r /build/requirements.txt
COPY common/ /build/common/
COPY model-training/ /build/model-training/
RUN pip install --no-deps --no-build-isolation /build/common /build/model-training \
 && pip check && rm -rf /build
ENV MPLCONFIGDIR=/tmp/matplotlib
USER 10001:10001
ENTRYPOINT ["python3", "-m", "model_training"]

FROM python-base AS mlflow-exporter
RUN python3 /build/tools/image_requirements.py mlflow-exporter --root /build --group build > /build/requirements.txt \
 && pip install --require-hashes --no-deps -r /build/requirements.txt
COPY common/ /build/common/
COPY mlflow-exporter/ /build/mlflow-exporter/
RUN pip install --no-deps --no-build-isolation /build/common /build/mlflow-exporter \
 && pip check && rm -rf /build
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=5 \
  CMD ["python3", "-m", "wine_mlops.healthcheck", "http://127.0.0.1:8000/healthz"]
ENTRYPOINT ["python3", "-m", "mlflow_exporter"]

# The prediction API is built in one stage and runs from another that holds its venv only:
# no pip, setuptools or build backend, no scikit-learn, SciPy or pandas (the "sklearn" extra
# is not installed: versions are served from their ONNX files by onnxruntime). Also left out:
# NumPy's own test suites; onnxruntime's offline tools (model converters, quantization,
# transformer optimisers), which inference never imports; and its bundled libonnxruntime.so,
# the C/C++ API's library, which the Python module does not load (ldd: it links the runtime
# in itself). The build runs one onnxruntime inference afterwards to prove it still works.
# Compiled bytecode is kept only for the modules the API imports (its own, the web server,
# the MLflow client, SQLAlchemy's PostgreSQL and SQLite dialects, onnxruntime): the rest of
# the MLflow client's dependencies is never loaded, and its .pyc files would add about 35 MB.
FROM python-base AS prediction-api-build
RUN python3 /build/tools/image_requirements.py prediction-api --root /build --group build > /build/requirements.txt \
 && pip install --require-hashes --no-deps -r /build/requirements.txt
COPY common/ /build/common/
COPY prediction-api/ /build/prediction-api/
RUN pip install --no-deps --no-build-isolation /build/common /build/prediction-api \
 && pip check \
 && site=/opt/venv/lib/python3.11/site-packages \
 && find "$site/numpy" -type d -name tests -prune -exec rm -rf {} + \
 && rm -rf "$site/onnxruntime/transformers" "$site/onnxruntime/quantization" \
           "$site/onnxruntime/tools" "$site"/onnxruntime/capi/libonnxruntime.so* \
 && python3 -c "import numpy as np, onnxruntime as ort; from onnxruntime.datasets import get_example; s = ort.InferenceSession(get_example('logreg_iris.onnx'), providers=['CPUExecutionProvider']); i = s.get_inputs()[0]; print('onnxruntime inference:', s.run(None, {i.name: np.ones(i.shape, np.float32)})[0])" \
 && pip uninstall --yes --quiet flit-core setuptools pip \
 && find /opt/venv -name __pycache__ -type d -prune -exec rm -rf {} + \
 && env -u PYTHONDONTWRITEBYTECODE python3 -c "import prediction_api.__main__, prediction_api.app, prediction_api.registry, prediction_api.prediction_log, prediction_api.quality, gunicorn.app.base, gunicorn.arbiter, uvicorn_worker, uvicorn.protocols.http.h11_impl, uvicorn.lifespan.on, mlflow.artifacts, mlflow.tracking, mlflow.store.artifact.http_artifact_repo, mlflow.store.artifact.mlflow_artifacts_repo, sqlalchemy.dialects.postgresql.psycopg2, sqlalchemy.dialects.sqlite.pysqlite, onnxruntime, wine_mlops.healthcheck"

FROM python-runtime AS prediction-api
COPY --from=prediction-api-build /opt/venv /opt/venv
USER 10001:10001
EXPOSE 7654
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python3", "-m", "wine_mlops.healthcheck", "http://127.0.0.1:7654/healthz"]
ENTRYPOINT ["python3", "-m", "prediction_api"]
