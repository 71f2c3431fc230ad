"""The prediction API: serves the registry's champion wine classifier over HTTP.

Build the app with :func:`prediction_api.app.create_app`; ``python -m prediction_api`` runs it
under uvicorn. Importing the package does no work: no model is loaded and no tracking URI set.
"""
