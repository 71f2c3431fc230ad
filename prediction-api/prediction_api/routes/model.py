"""``GET /model`` and ``GET /features``: what is served, and the features it takes."""

from __future__ import annotations

from fastapi import APIRouter

from prediction_api import errors
from prediction_api.deps import PredictorDep, ReferenceDep, SettingsDep, StoreDep
from prediction_api.routes.legacy import QUERY_NAME_OF
from prediction_api.schemas import (
    FEATURE_SPECS,
    FeatureCatalog,
    FeatureInfo,
    RefusedVersion,
    SampleWine,
    ServedModelInfo,
    TrainingRange,
)
from wine_mlops.features import class_name

router = APIRouter(tags=["model"])


@router.get(
    "/model",
    summary="What is served: version, run, test metrics, load time",
    responses=errors.problem_responses(503),
)
async def model(predictor: PredictorDep, store: StoreDep) -> ServedModelInfo:
    served = predictor.served()
    refusal = store.refused
    return ServedModelInfo(
        model_name=served.ref.name,
        model_version=served.ref.version,
        alias=served.ref.alias,
        run_id=served.ref.run_id,
        model_family=served.ref.tags.get("model_family"),
        metrics=served.metrics,
        loaded_at=served.loaded_at.isoformat(timespec="seconds"),
        source=served.ref.source,
        runtime=served.runtime,
        refused=RefusedVersion(
            version=refusal.ref.version, kind=refusal.kind, reason=refusal.reason
        )
        if refusal
        else None,
        training_ranges={
            name: TrainingRange(min=r.min, max=r.max)
            for name, r in served.ranges.ranges.features.items()
        }
        if served.ranges is not None
        else None,
    )


@router.get("/features", summary="The feature schema, training ranges, samples")
async def features(reference: ReferenceDep, settings: SettingsDep) -> FeatureCatalog:
    return FeatureCatalog(
        features=[
            FeatureInfo(
                name=spec.name,
                query_name=QUERY_NAME_OF[spec.name],
                label=spec.label,
                unit=spec.unit,
                training_min=float(reference.minimum[i]),
                training_max=float(reference.maximum[i]),
                training_mean=round(float(reference.mean[i]), 3),
                upper_limit=spec.upper_limit,
            )
            for i, spec in enumerate(FEATURE_SPECS)
        ],
        samples=[
            SampleWine(
                class_id=class_id,
                class_name=class_name(class_id, settings.class_names),
                values=values,
            )
            for class_id, values in sorted(reference.typical.items())
        ],
        batch_limit=settings.batch_limit,
    )
