"""``python -m mlflow_exporter`` serves the exporter with gunicorn."""

import sys

from mlflow_exporter.server import main

sys.exit(main())
