"""The ceiling of ``make bench``: the smallest FastAPI app that takes the API's 13-field body.

It validates a wine as the API does (13 required floats) and answers a constant prediction,
so what it costs per request is the HTTP stack itself (gunicorn, uvicorn workers, FastAPI,
pydantic): the most any FastAPI app can do on this machine.

``bench_serving`` runs it as the API runs: in a container of the API's image, hardened as in
compose, behind a port published on 127.0.0.1 (the figure our API is compared with), and on
the host for reference. By hand: gunicorn --chdir bench -w 2 -k uvicorn_worker.UvicornWorker
ceiling_app:app
"""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel


class Wine(BaseModel):
    """The 13 features of a wine, as the prediction API takes them."""

    alcohol: float
    malic_acid: float
    ash: float
    alcalinity_of_ash: float
    magnesium: float
    total_phenols: float
    flavanoids: float
    nonflavanoid_phenols: float
    proanthocyanins: float
    color_intensity: float
    hue: float
    od280_od315_of_diluted_wines: float
    proline: float


app = FastAPI()


@app.post("/predict")
async def predict(wine: Wine) -> dict[str, object]:
    """A constant answer of the prediction API's shape."""
    return {
        "class_id": 0,
        "class_name": "Cultivar 1",
        "probabilities": {"Cultivar 1": 1.0, "Cultivar 2": 0.0, "Cultivar 3": 0.0},
        "model_name": "ceiling",
        "model_version": "0",
        "warnings": [],
    }
