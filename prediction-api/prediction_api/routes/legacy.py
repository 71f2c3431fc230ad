"""``GET /predict/``: the original form's query, for its clients (everything about it is here).

The original form sent ``feature_1`` to ``feature_13`` in the query string and read a bare
class id as text. The parameters take the JSON body's limits; the answer is the class id of
the JSON API's ``class_id``. Its warnings travel in the :data:`WARNINGS_HEADER` header, so
the body stays the bare class id its clients read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Final

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse
from pydantic import ConfigDict, create_model

from prediction_api import errors
from prediction_api.deps import PredictorDep
from prediction_api.schemas import FEATURE_SPECS, WineBase, feature_field
from wine_mlops.features import FEATURE_NAMES

#: Query parameter names of the original form: ``feature_N`` is the N-th of FEATURE_NAMES.
QUERY_NAMES: Final[dict[str, str]] = {
    f"feature_{position}": name for position, name in enumerate(FEATURE_NAMES, start=1)
}
#: The other way round: feature name → its query parameter.
QUERY_NAME_OF: Final[dict[str, str]] = {name: key for key, name in QUERY_NAMES.items()}

#: The header carrying the answer's out-of-range warnings (their messages, joined by "; ").
WARNINGS_HEADER: Final = "Wine-Warnings"


class LegacyQueryBase(WineBase):
    """Base of :data:`LegacyQuery`: numbers arrive as text; no unknown parameters."""

    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)


#: The original form's query: ``feature_1`` to ``feature_13``, same limits as the JSON body.
LegacyQuery: type[WineBase] = create_model(
    "LegacyQuery",
    __base__=LegacyQueryBase,
    __doc__="The original form's query parameters: feature_N is the N-th feature.",
    **{
        spec.name: feature_field(
            spec, f": feature {position} of {len(FEATURE_SPECS)}", alias=f"feature_{position}"
        )
        for position, spec in enumerate(FEATURE_SPECS, start=1)
    },
)

if TYPE_CHECKING:
    LegacyParams = WineBase
else:  # FastAPI needs the generated model itself to validate and document the parameters
    LegacyParams = LegacyQuery

router = APIRouter(tags=["predictions"])


@router.get(
    "/predict/",
    summary="Classify one wine from the original form's query (plain-text class id)",
    response_class=PlainTextResponse,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string", "pattern": "^[0-9]+$"}}},
            "headers": {
                WARNINGS_HEADER: {
                    "description": "Present when a feature is outside the range the model "
                    "was trained on: the warnings' messages (as in the JSON answers' "
                    "`warnings`), joined by `; `",
                    "schema": {"type": "string"},
                }
            },
        },
        **errors.problem_responses(422, 503),
    },
)
def predict_legacy(
    query: Annotated[LegacyParams, Query()], predictor: PredictorDep
) -> PlainTextResponse:
    (answer,) = predictor.answers([query.as_row()])
    messages = "; ".join(warning.message for warning in answer.warnings)
    headers = {WARNINGS_HEADER: messages} if messages else None
    return PlainTextResponse(str(answer.class_id), headers=headers)
