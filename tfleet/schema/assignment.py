"""``assignments/<host>/<model>``: what one host must serve of one model (the agent's input).

Field names follow TensorFlow Serving's own ModelConfig so that its users recognise them;
to_config() turns an assignment into the ModelConfigSpec the agent renders for TF Serving.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from tfleet.schema.base import OperatorDocument
from tfleet.schema.fields import LabelName, NonNegativeInt, PathText, ShortText, UInt32Positive
from tfleet.tfs.types import ModelConfigSpec, VersionPolicy


class LatestPolicy(OperatorDocument):
    num_versions: UInt32Positive = 1


class AllPolicy(OperatorDocument):
    pass


class SpecificPolicy(OperatorDocument):
    versions: Annotated[list[NonNegativeInt], Field(min_length=1)]


class ModelVersionPolicy(OperatorDocument):
    """Exactly one of latest / all / specific, as in TF Serving's ServableVersionPolicy."""

    latest: LatestPolicy | None = None
    all: AllPolicy | None = None
    specific: SpecificPolicy | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelVersionPolicy:
        chosen = [name for name in ("latest", "all", "specific") if getattr(self, name) is not None]
        if len(chosen) != 1:
            raise ValueError(f'must hold exactly one of "latest", "all" or "specific", found {len(chosen)}' + (f" ({', '.join(chosen)})" if chosen else ""))
        return self

    @model_serializer(mode="wrap")
    def _only_the_chosen_policy(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # {"latest": {"num_versions": 1}} rather than {"latest": ..., "all": null, "specific": null}
        return {key: value for key, value in handler(self).items() if value is not None}

    def to_spec(self) -> VersionPolicy:
        if self.latest is not None:
            return VersionPolicy("latest", num_versions=self.latest.num_versions)
        if self.all is not None:
            return VersionPolicy("all")
        assert self.specific is not None
        return VersionPolicy("specific", versions=tuple(sorted(set(self.specific.versions))))


class Assignment(OperatorDocument):
    """``<prefix>/assignments/<host>/<model>``: what one host must serve of one model."""

    base_path: PathText
    model_platform: Annotated[ShortText, Field(min_length=1)] = "tensorflow"
    model_version_policy: ModelVersionPolicy = Field(default_factory=lambda: ModelVersionPolicy(latest=LatestPolicy()))
    version_labels: dict[LabelName, NonNegativeInt] = Field(default_factory=dict)

    def to_config(self, name: str) -> ModelConfigSpec:
        return ModelConfigSpec(
            name=name,
            base_path=self.base_path,
            model_platform=self.model_platform,
            model_version_policy=self.model_version_policy.to_spec(),
            version_labels=tuple(sorted(self.version_labels.items())),
        )
