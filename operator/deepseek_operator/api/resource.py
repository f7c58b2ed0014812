"""The ``DeepSeekDeployment`` resource: group, version, kind and the top-level model.

``DeepSeekDeployment.model_validate(obj)`` accepts the dict kopf or ``kubectl get -o json``
gives, so the controller, the CLI and the tests share one parser.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import ConfigDict, Field

from deepseek_operator.api.base import ApiModel
from deepseek_operator.api.spec import DeepSeekDeploymentSpec
from deepseek_operator.api.status import DeepSeekDeploymentStatus

GROUP: Final = "deepseek.ai"
VERSION: Final = "v1alpha1"
KIND: Final = "DeepSeekDeployment"
PLURAL: Final = "deepseekdeployments"
SINGULAR: Final = "deepseekdeployment"
SHORT_NAMES: Final = ("dsd",)
CATEGORIES: Final = ("all", "deepseek")
API_VERSION: Final = f"{GROUP}/{VERSION}"


class ObjectMeta(ApiModel):
    """The parts of metav1.ObjectMeta the operator reads; the rest is kept verbatim."""

    model_config = ConfigDict(extra="allow")

    name: Annotated[str, Field(min_length=1, max_length=253)]
    namespace: str = "default"
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class DeepSeekDeployment(ApiModel):
    """A DeepSeekDeployment object."""

    model_config = ConfigDict(extra="ignore")

    api_version: Literal["deepseek.ai/v1alpha1"] = "deepseek.ai/v1alpha1"
    kind: Literal["DeepSeekDeployment"] = KIND
    metadata: ObjectMeta
    spec: DeepSeekDeploymentSpec
    status: DeepSeekDeploymentStatus | None = None

    @property
    def name(self) -> str:
        """``metadata.name``."""
        return self.metadata.name

    @property
    def namespace(self) -> str:
        """``metadata.namespace``."""
        return self.metadata.namespace

    def owner_reference(self) -> dict[str, Any]:
        """An ownerReference to this object with ``controller: true``."""
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.metadata.name,
            "uid": self.metadata.uid or "",
            "controller": True,
            "blockOwnerDeletion": True,
        }
