"""``python -m mlflow_server`` starts the tracking server."""

from mlflow_server.launch import main

main()
