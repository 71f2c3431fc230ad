"""``python -m mlflow_server`` starts the tracking server (see :mod:`mlflow_server.launch`)."""

import sys

from mlflow_server.launch import main

sys.exit(main())
