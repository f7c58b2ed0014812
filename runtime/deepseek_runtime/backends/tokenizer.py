"""Text <-> token ids and chat rendering, handed to the HTTP layer with the engine.

Loads a checkpoint's ``tokenizer.json`` (with the ``tokenizers`` library) and the chat
template and special tokens from ``tokenizer_config.json``. The chat template is a Jinja2
program supplied by whoever made the checkpoint, so it runs in jinja2's sandbox. Every
backend loads one into its :class:`~deepseek_runtime.backends.LoadedModel` (it lives here,
below the server, because backends build it); the server uses it for every request and the
Triton backend to turn ids back into text.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment


class ChatTemplateError(ValueError):
    """The messages cannot be rendered with the checkpoint's template (a client error)."""


def _token_content(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return str(value["content"])
    return None


def _raise_exception(message: str) -> None:
    raise ChatTemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now(UTC).strftime(fmt)


def _tojson(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


class ServerTokenizer:
    """Wraps a ``tokenizers.Tokenizer`` with the checkpoint's chat template."""

    def __init__(
        self,
        tokenizer: Any,
        *,
        chat_template: str | None = None,
        bos_token: str | None = None,
        eos_token: str | None = None,
    ) -> None:
        self._tok = tokenizer
        self.chat_template = chat_template
        self.bos_token = bos_token
        self.eos_token = eos_token
        self._template: jinja2.Template | None = None
        if chat_template is not None:
            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            env.globals["raise_exception"] = _raise_exception
            env.globals["strftime_now"] = _strftime_now
            env.filters["tojson"] = _tojson
            try:
                self._template = env.from_string(chat_template)
            except jinja2.TemplateError as exc:
                raise ValueError(f"the checkpoint's chat template does not parse: {exc}") from exc

    @classmethod
    def from_model_dir(cls, model_dir: str | Path, tokenizer: Any | None = None) -> ServerTokenizer:
        """Load ``tokenizer.json`` (unless ``tokenizer`` is given) and ``tokenizer_config.json``."""
        from tokenizers import Tokenizer  # noqa: PLC0415

        root = Path(model_dir)
        if tokenizer is None:
            path = root / "tokenizer.json"
            if not path.is_file():
                raise ValueError(f"{path} is missing: the server needs the checkpoint's tokenizer")
            tokenizer = Tokenizer.from_file(str(path))
        cfg: dict[str, Any] = {}
        cfg_path = root / "tokenizer_config.json"
        if cfg_path.is_file():
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        template = cfg.get("chat_template")
        if isinstance(template, list):  # [{"name": "default", "template": "..."}, ...]
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("default") or next(iter(named.values()), None)
        return cls(
            tokenizer,
            chat_template=template if isinstance(template, str) else None,
            bos_token=_token_content(cfg.get("bos_token")),
            eos_token=_token_content(cfg.get("eos_token")),
        )

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: list[int], *, skip_special_tokens: bool = True) -> str:
        return str(self._tok.decode(ids, skip_special_tokens=skip_special_tokens))

    def token_text(self, token_id: int) -> str:
        """Text of one token as OpenAI's logprobs show it."""
        text = self._tok.decode([token_id], skip_special_tokens=False)
        if text:
            return str(text)
        piece = self._tok.id_to_token(token_id)
        return str(piece) if piece is not None else ""

    def apply_chat_template(
        self,
        messages: list[dict[str, Any]],
        *,
        add_generation_prompt: bool = True,
        extra: dict[str, Any] | None = None,
    ) -> str:
        """Render the conversation; ChatTemplateError when the template rejects it."""
        if self._template is None:
            raise ChatTemplateError(
                "this model has no chat template; use /v1/completions with a plain prompt"
            )
        context: dict[str, Any] = dict(extra or {})
        context.update(
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token or "",
            eos_token=self.eos_token or "",
        )
        try:
            return self._template.render(**context)
        except ChatTemplateError:
            raise
        except jinja2.TemplateError as exc:  # includes SecurityError from the sandbox
            raise ChatTemplateError(f"chat template failed: {exc}") from exc
        except (TypeError, KeyError, AttributeError, IndexError) as exc:
            raise ChatTemplateError(f"chat template failed on these messages: {exc}") from exc
