"""Request bodies of the OpenAI-compatible API (pydantic models, so they appear in /openapi.json).

Field names and meanings follow OpenAI's API; ``top_k``, ``min_p``, ``repetition_penalty``,
``ignore_eos`` and ``stop_token_ids`` are vLLM's extra sampling parameters. Unknown fields
are ignored (as OpenAI and vLLM do). ``tools`` / ``tool_choice`` follow OpenAI's chat API;
``/tokenize`` and ``/detokenize`` take vLLM's bodies. Responses are built as plain dicts in
``server.responses`` for speed. Used by ``server.openai_routes``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    field_validator,
    model_validator,
)

MAX_STOP = 16
MAX_STOP_LEN = 512

MAX_TOOLS = 128

TokenId = Annotated[int, Field(ge=0)]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: StrictBool = False


class JSONSchemaFormat(BaseModel):
    """``response_format.json_schema``: OpenAI's named schema (``strict`` is always honoured:
    the grammar mask enforces the schema whatever ``strict`` says)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    name: StrictStr = "response"
    description: StrictStr | None = None
    json_schema: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: StrictBool | None = None


class ResponseFormat(BaseModel):
    """``response_format``: ``text`` (no constraint), ``json_object`` or ``json_schema``."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format json_schema needs a json_schema object")
        return self


class SamplingFields(BaseModel):
    """Fields shared by completions and chat completions."""

    model_config = ConfigDict(extra="ignore")

    model: StrictStr
    max_tokens: int | None = Field(None, description="tokens to generate (>= 1)")
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = Field(1, ge=1)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    stop: StrictStr | list[StrictStr] | None = None
    seed: int | None = Field(None, ge=-(2**63), le=2**64 - 1)
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    user: str | None = None
    # vLLM extras
    top_k: int = Field(0, ge=-1, description="vLLM extra: 0 or -1 disables")
    min_p: float = Field(0.0, ge=0, le=1, description="vLLM extra")
    repetition_penalty: float = Field(1.0, gt=0, le=10, description="vLLM extra")
    ignore_eos: StrictBool = False
    stop_token_ids: list[TokenId] | None = Field(None, max_length=64)
    # structured outputs: OpenAI's response_format, or one of vLLM's guided_* extras
    response_format: ResponseFormat | None = None
    guided_json: dict[str, Any] | StrictStr | None = Field(None, description="vLLM extra")
    guided_regex: StrictStr | None = Field(None, max_length=4096, description="vLLM extra")
    guided_choice: list[StrictStr] | None = Field(
        None, min_length=1, max_length=256, description="vLLM extra"
    )

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value: str | list[str] | None) -> str | list[str] | None:
        items = [value] if isinstance(value, str) else (value or [])
        if len(items) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences")
        for item in items:
            if not item:
                raise ValueError("stop sequences must be non-empty")
            if len(item) > MAX_STOP_LEN:
                raise ValueError(f"stop sequences must be at most {MAX_STOP_LEN} characters")
        return value

    def stop_list(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def wants_usage_chunk(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)


class CompletionRequest(SamplingFields):
    """``POST /v1/completions``."""

    prompt: StrictStr | list[StrictStr] | list[TokenId] | list[list[TokenId]] = Field(
        description="text, token ids, or a list of either"
    )
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: StrictBool = False
    suffix: str | None = None

    @field_validator("prompt")
    @classmethod
    def _non_empty(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("prompt must not be an empty list")
        if isinstance(value, list) and any(isinstance(v, list) and not v for v in value):
            raise ValueError("token-id prompts must not be empty")
        return value


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: StrictStr


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: StrictStr
    arguments: StrictStr  # JSON text, as OpenAI sends it back


class ToolCall(BaseModel):
    """A call an earlier assistant turn made (sent back in ``messages``)."""

    model_config = ConfigDict(extra="ignore")
    id: StrictStr
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: StrictStr | list[TextPart] | None = None
    name: StrictStr | None = None
    tool_calls: list[ToolCall] | None = Field(None, max_length=MAX_TOOLS)
    tool_call_id: StrictStr | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    description: StrictStr | None = None
    parameters: dict[str, Any] | None = None  # a JSON Schema object


class Tool(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["function"]
    function: FunctionDefinition


class FunctionName(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: StrictStr


class NamedToolChoice(BaseModel):
    """``tool_choice: {"type": "function", "function": {"name": ...}}``."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["function"]
    function: FunctionName


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class ChatCompletionRequest(SamplingFields):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    tools: list[Tool] | None = Field(None, max_length=MAX_TOOLS)
    tool_choice: ToolChoice | None = None  # default: "auto" with tools, "none" without
    parallel_tool_calls: StrictBool = True  # False: a forced choice makes exactly one call
    max_completion_tokens: int | None = None
    logprobs: StrictBool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    add_generation_prompt: StrictBool = True

    def requested_max_tokens(self) -> int | None:
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens
        return self.max_tokens


class TokenizeRequest(BaseModel):
    """vLLM's ``POST /tokenize``: a ``prompt``, or chat ``messages`` rendered first."""

    model_config = ConfigDict(extra="ignore")
    model: StrictStr | None = None
    prompt: StrictStr | None = None
    messages: list[ChatMessage] | None = Field(None, min_length=1)
    tools: list[Tool] | None = Field(None, max_length=MAX_TOOLS)
    add_special_tokens: StrictBool | None = None  # default: True for prompt, False for chat
    add_generation_prompt: StrictBool = True
    return_token_strs: StrictBool = False

    @model_validator(mode="after")
    def _one_input(self) -> TokenizeRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of prompt and messages")
        return self


class DetokenizeRequest(BaseModel):
    """vLLM's ``POST /detokenize``."""

    model_config = ConfigDict(extra="ignore")
    model: StrictStr | None = None
    tokens: list[TokenId] = Field(max_length=1 << 20)


class V2GenerateRequest(BaseModel):
    """KServe/Triton generate extension: ``POST /v2/models/{name}/generate[_stream]``.

    Sampling settings may sit at the top level or under ``parameters`` (as Triton's vLLM
    backend accepts); ``sampling_parameters`` may also be a JSON object or string.
    """

    model_config = ConfigDict(extra="allow")
    text_input: StrictStr
    parameters: dict[str, Any] | None = None
    sampling_parameters: dict[str, Any] | StrictStr | None = None
    stream: StrictBool | None = None
    exclude_input_in_output: StrictBool | None = None
