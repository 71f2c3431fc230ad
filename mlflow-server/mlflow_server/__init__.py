"""Launcher of the MLflow tracking server: settings from the environment, then ``mlflow server``."""
