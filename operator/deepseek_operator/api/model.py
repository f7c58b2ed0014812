"""``spec.model``: which checkpoint to serve, where it comes from, and how it is cached.

Field names follow KServe's ``storageUri`` / OME's ``BaseModel`` where they fit: a URI
with a scheme says where the weights live, a secret reference carries the credentials.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from deepseek_operator.api import defaults
from deepseek_operator.api.base import ApiModel
from deepseek_operator.api.validation import NAME_PATTERN, QUANTITY_PATTERN, SOURCE_URI_PATTERN

Quantization = Literal["auto", "none", "fp8", "int8", "int4"]
KubeName = Annotated[str, Field(min_length=1, max_length=253, pattern=NAME_PATTERN)]


class SecretKeyReference(ApiModel):
    """A key of a Secret in the DSD's namespace."""

    name: KubeName
    """Name of the Secret."""
    key: Annotated[str, Field(min_length=1, max_length=253)] | None = None
    """Key within the Secret; the consumer's documented default when omitted."""


class ConfigMapKeyReference(ApiModel):
    """A key of a ConfigMap in the DSD's namespace."""

    name: KubeName
    """Name of the ConfigMap."""
    key: Annotated[str, Field(min_length=1, max_length=253)] = "config.json"
    """Key within the ConfigMap."""


class ModelSource(ApiModel):
    """Where the weights come from."""

    uri: Annotated[str, Field(max_length=1024, pattern=SOURCE_URI_PATTERN)]
    """Location of the checkpoint: ``hf://org/repo`` (Hugging Face Hub), ``s3://bucket/path``,
    ``gs://bucket/path``, ``pvc://claim/path`` (a PersistentVolumeClaim already holding the
    files) or ``oci://registry/repo:tag`` (a model image)."""
    revision: Annotated[str, Field(max_length=128)] | None = None
    """Git revision (branch, tag or commit) for ``hf://`` sources; the default branch when
    omitted. Pin a commit for reproducible rollouts."""
    secret_ref: SecretKeyReference | None = None
    """Secret with the credentials to read the source (``HF_TOKEN`` for the Hub, AWS keys
    for S3). Its keys are exposed to the download step as environment variables."""


class ModelCache(ApiModel):
    """A PersistentVolumeClaim that keeps downloaded weights across restarts."""

    size: Annotated[str, Field(max_length=32, pattern=QUANTITY_PATTERN)]
    """Capacity of the cache volume, a quantity such as ``800Gi``. It must hold the whole
    checkpoint (DeepSeek-R1 in FP8 needs about 700 GB)."""
    storage_class_name: Annotated[str, Field(max_length=253)] | None = None
    """StorageClass of the cache; the cluster default when omitted. Use a ReadWriteMany
    class (NFS, Lustre, Filestore) to share one copy between replicas."""
    access_mode: Literal["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany"] = "ReadWriteMany"
    """Access mode requested for the cache claim."""


class ModelSpec(ApiModel):
    """The served model."""

    name: Annotated[str, Field(min_length=1, max_length=256)]
    """Model name clients send in OpenAI requests (``model: ...``), e.g.
    ``deepseek-ai/DeepSeek-R1``. Known DeepSeek names select the built-in architecture
    catalog; other models need ``configRef``."""
    source: ModelSource
    """Where the checkpoint is read from."""
    architecture: Annotated[str, Field(max_length=128)] | None = None
    """Catalog entry describing the architecture when ``name`` is an alias, e.g.
    ``deepseek-ai/DeepSeek-R1`` for a fine-tune of R1. See ``docs/planner.md`` for the list."""
    config_ref: ConfigMapKeyReference | None = None
    """ConfigMap key holding the checkpoint's ``config.json``, for models outside the
    built-in catalog; the planner reads layers, heads and experts from it. The operator
    watches the ConfigMap and re-plans when it changes; while it is missing or unusable
    the DSD reports ``Planned=False`` (``ModelConfigNotFound``, ``InvalidModelConfig``)."""
    quantization: Quantization = "auto"
    """Weight format in GPU memory. ``auto`` keeps what the checkpoint holds (FP8 for
    DeepSeek-V3/R1, BF16 otherwise); ``none`` serves BF16; ``fp8``, ``int8`` and ``int4``
    quantize on load and shrink the weight footprint by 2x, 2x and 4x against BF16."""
    max_model_len: Annotated[int, Field(ge=256, le=1048576)] = defaults.MAX_MODEL_LEN
    """Longest sequence (prompt plus completion, in tokens) a request may use. The planner
    reserves KV cache for this length times ``engine.kvCache.minSequences``."""
    cache: ModelCache | None = None
    """Persistent weight cache. Without it weights go to an ephemeral volume and are
    downloaded again on every pod start."""
