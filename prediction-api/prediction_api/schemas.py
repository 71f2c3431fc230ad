"""Request and response models, generated from :data:`wine_mlops.features.FEATURE_NAMES`.

The feature list has one source of truth; this module adds what an API needs on top of it:
a label and unit for each feature and the largest physically plausible value, beyond which
an input is rejected as a typo or a unit mix-up (e.g. proline sent in g/L instead of mg/L
passes, but a magnesium of 5,000 mg/L does not).
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model
from typing_extensions import TypedDict

from wine_mlops.features import FEATURE_NAMES


@dataclass(frozen=True)
class FeatureSpec:
    """How one feature is shown and bounded.

    Attributes:
        name: The snake_case feature name.
        label: A human label for forms and docs.
        unit: The unit of the UCI wine data set, "" when unitless.
        upper_limit: The largest value accepted; above it the value is physically implausible.
    """

    name: str
    label: str
    unit: str
    upper_limit: float


_SPECS: Final[dict[str, tuple[str, str, float]]] = {
    "alcohol": ("Alcohol", "% vol", 30.0),
    "malic_acid": ("Malic acid", "g/L", 30.0),
    "ash": ("Ash", "g/L", 20.0),
    "alcalinity_of_ash": ("Alcalinity of ash", "mEq/L", 100.0),
    "magnesium": ("Magnesium", "mg/L", 1000.0),
    "total_phenols": ("Total phenols", "g/L", 20.0),
    "flavanoids": ("Flavanoids", "g/L", 20.0),
    "nonflavanoid_phenols": ("Nonflavanoid phenols", "g/L", 10.0),
    "proanthocyanins": ("Proanthocyanins", "g/L", 20.0),
    "color_intensity": ("Color intensity", "AU", 50.0),
    "hue": ("Hue", "ratio", 10.0),
    "od280_od315_of_diluted_wines": ("OD280/OD315 of diluted wines", "ratio", 20.0),
    "proline": ("Proline", "mg/L", 10_000.0),
}
if tuple(_SPECS) != FEATURE_NAMES:  # a schema change must update the labels and limits too
    raise RuntimeError("prediction_api.schemas is out of date with FEATURE_NAMES")

#: Label, unit and limit of every feature, in model order.
FEATURE_SPECS: Final[tuple[FeatureSpec, ...]] = tuple(
    FeatureSpec(name, label, unit, limit) for name, (label, unit, limit) in _SPECS.items()
)


def feature_field(spec: FeatureSpec, description: str = "", **extra: Any) -> Any:
    """The type and constraints of one feature: finite, 0 to the physical limit."""
    return (
        float,
        Field(
            ge=0,
            le=spec.upper_limit,
            allow_inf_nan=False,
            title=spec.label,
            description=f"{spec.label} ({spec.unit}), 0 to {spec.upper_limit:g}{description}",
            **extra,
        ),
    )


#: The 13 feature values of a wine in one call (half the time of 13 ``getattr``: a batch of
#: 1,000 reads them 1,000 times).
_FEATURE_VALUES = attrgetter(*FEATURE_NAMES)


class WineBase(BaseModel):
    """Base of :data:`WineFeatures`: strict JSON numbers, no unknown fields, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    def as_row(self) -> list[float]:
        """The feature values in model order."""
        return list(_FEATURE_VALUES(self))


#: One wine: the 13 features, all required, nothing else allowed. JSON numbers only.
WineFeatures: type[WineBase] = create_model(
    "WineFeatures",
    __base__=WineBase,
    __doc__="One wine's 13 measurements (snake_case names of scikit-learn's wine data).",
    **{spec.name: feature_field(spec) for spec in FEATURE_SPECS},
)
WineFeatures.model_config["json_schema_extra"] = {
    "examples": [
        {
            "alcohol": 13.2,
            "malic_acid": 1.78,
            "ash": 2.14,
            "alcalinity_of_ash": 11.2,
            "magnesium": 100.0,
            "total_phenols": 2.65,
            "flavanoids": 2.76,
            "nonflavanoid_phenols": 0.26,
            "proanthocyanins": 1.28,
            "color_intensity": 4.38,
            "hue": 1.05,
            "od280_od315_of_diluted_wines": 3.4,
            "proline": 1050.0,
        }
    ]
}
WineFeatures.model_rebuild(force=True)


class RangeWarning(BaseModel):
    """One feature of a wine outside the range the answering model was trained on."""

    feature: str = Field(description="The feature's JSON field name, e.g. `alcohol`")
    value: float = Field(description="The value sent")
    training_min: float = Field(description="Smallest value of the model's training rows")
    training_max: float = Field(description="Largest value of the model's training rows")
    message: str = Field(
        description="One human sentence, e.g. `alcohol 0.132 is outside the training range "
        "11.03 to 14.83`"
    )


#: A prediction id as answered (UUID4, lower-case hex, hyphens): what feedback names.
PREDICTION_ID_PATTERN: Final = (
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)


class Prediction(BaseModel):
    """The answer for one wine."""

    prediction_id: str = Field(
        description="This answer's id (a UUID4): send it with the true class to `POST "
        "/feedback` once it is known. Every answer has one, also when the prediction log is "
        "off (then feedback is refused)",
        examples=["3f2b8c1e-5d4a-4e7b-9c2d-1a0b9e8f7d6c"],
        json_schema_extra={"format": "uuid"},
    )
    class_id: int = Field(description="Predicted class id (0, 1 or 2)")
    class_name: str = Field(description="Human label of the predicted cultivar")
    probabilities: dict[str, float] = Field(description="Probability of each cultivar, by label")
    model_name: str = Field(description="Registered model that answered")
    model_version: str = Field(description="Its registry version")
    warnings: list[RangeWarning] = Field(
        default_factory=list,
        description="Every feature outside the range the answering version was trained on "
        "(the ranges training logged with it), in feature order; empty when all are inside "
        "or the version carries no ranges (see `training_ranges` of `GET /model`). The answer "
        "is still the model's, but it extrapolates: check for a unit mix-up or a typo.",
    )


class PredictionJson(TypedDict):
    """:class:`Prediction` as a plain dict: what the request path builds and serialises
    (a model instance per row, validated again as the response, costs more than the model
    itself). Same fields, same order; a test keeps the two in step."""

    prediction_id: str
    class_id: int
    class_name: str
    probabilities: dict[str, float]
    model_name: str
    model_version: str
    warnings: list[RangeWarning]


class RefusedVersion(BaseModel):
    """A version the alias points to that the API refused to serve (never deserialised)."""

    version: str = Field(description="The refused registry version")
    kind: str = Field(description="Short label of the refusal, as in wine_api_model_refused")
    reason: str = Field(description="Why it was refused")


class TrainingRange(BaseModel):
    """One feature's range in the served version's training rows."""

    min: float
    max: float


class ServedModelInfo(BaseModel):
    """What ``GET /model`` reports."""

    model_name: str
    model_version: str
    alias: str
    run_id: str | None
    model_family: str | None
    metrics: dict[str, float]
    loaded_at: str = Field(description="When this process loaded it (ISO 8601, UTC)")
    source: str = Field(description="The model URI it was loaded from")
    runtime: Literal["onnx", "sklearn"] = Field(
        description="What runs it: `onnx` (onnxruntime, the version's ONNX file) or `sklearn` "
        "(its scikit-learn estimator, for a version without an ONNX file)"
    )
    refused: RefusedVersion | None = Field(
        default=None,
        description="The version the alias points to, when it was refused: the model above "
        "keeps serving",
    )
    training_ranges: dict[str, TrainingRange] | None = Field(
        default=None,
        description="Each feature's range in the training rows of the version served, logged "
        "with it by training: answers warn about values outside them. Null when the version "
        "carries no ranges (logged before training wrote them): its answers never warn",
    )


class Readiness(BaseModel):
    """What ``GET /readyz`` answers once a model is loaded."""

    status: Literal["ready"]
    model_name: str = Field(description="Registered model served")
    model_version: str = Field(description="Its registry version")


class FeatureInfo(BaseModel):
    """One feature as the form shows it, with its range in the training data."""

    name: str = Field(description="The JSON field name")
    query_name: str = Field(description="Its name in the original form's query (`feature_N`)")
    label: str
    unit: str
    training_min: float
    training_max: float
    training_mean: float
    upper_limit: float = Field(description="The largest value accepted")


class SampleWine(BaseModel):
    """A typical wine of one class: the median of the training data's wines of that class."""

    class_id: int
    class_name: str
    values: dict[str, float] = Field(description="Feature name to value")


class FeatureCatalog(BaseModel):
    """What ``GET /features`` answers: the form is built from it."""

    features: list[FeatureInfo] = Field(description="The 13 features, in model order")
    samples: list[SampleWine] = Field(description="A typical wine of each class")
    batch_limit: int = Field(description="The most wines per batch request")


def _whole_number(value: Any) -> Any:
    """JSON Schema counts ``1.0`` as an integer: take it as 1 (strings and booleans are
    still refused)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class Feedback(BaseModel):
    """The true class of a wine the API classified, once it is known."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        json_schema_extra={
            "examples": [
                {"prediction_id": "3f2b8c1e-5d4a-4e7b-9c2d-1a0b9e8f7d6c", "true_class_id": 1}
            ]
        },
    )

    prediction_id: str = Field(
        pattern=PREDICTION_ID_PATTERN,
        description="The `prediction_id` of the answer",
        json_schema_extra={"format": "uuid"},
    )
    true_class_id: Annotated[int, BeforeValidator(_whole_number)] = Field(
        ge=0, le=2, description="The wine's true class id (0, 1 or 2)"
    )


class FeedbackResult(BaseModel):
    """What became of one feedback."""

    prediction_id: str = Field(description="The prediction labelled")
    true_class_id: int = Field(description="Its true class id, as sent")
    predicted_class_id: int = Field(description="The class id the API answered")
    correct: bool = Field(description="Whether the answer was right")
    recorded: bool = Field(
        description="True when this request stored the label; false when the same label was "
        "stored before (a repeat changes nothing)"
    )
