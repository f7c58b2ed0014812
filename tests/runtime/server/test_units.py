"""Pure parts of the server: options, keys and buckets, content policy, PII redaction,
chat-template sandbox, v2 settings, gRPC tensor codec, engine option mappings."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from deepseek_runtime.backends import NativeEngineOptions, TritonEngineOptions, VLLMEngineOptions
from deepseek_runtime.backends.native import resolve_device, resolve_dtype
from deepseek_runtime.backends.tokenizer import ChatTemplateError, ServerTokenizer
from deepseek_runtime.backends.triton import triton_sampling_parameters
from deepseek_runtime.backends.vllm import vllm_engine_args, vllm_sampling_kwargs
from deepseek_runtime.engine.api import (
    EngineError,
    GuidedDecoding,
    QueueFullError,
    SamplingParams,
)
from deepseek_runtime.server.audit import AuditLog, redact_pii
from deepseek_runtime.server.auth import KeyStore, read_keys
from deepseek_runtime.server.backend_options import backend_options
from deepseek_runtime.server.config import ServerConfig, add_config_arguments, config_from_args
from deepseek_runtime.server.content_filter import ContentFilter, ContentPolicy
from deepseek_runtime.server.errors import APIError
from deepseek_runtime.server.grpc_v2 import decode_bytes_tensor, encode_bytes_tensor
from deepseek_runtime.server.preparation import engine_refusal, resolve_max_tokens
from deepseek_runtime.server.quotas import Limits, QuotaLimiter, TokenBucket
from deepseek_runtime.server.v2_common import parse_settings

pytestmark = pytest.mark.unit


def _parse(argv: list[str], env: dict[str, str]) -> ServerConfig:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return config_from_args(parser.parse_args(argv), env)


def test_options_come_from_cli_then_env_then_defaults() -> None:
    cfg = _parse(
        ["--model", "/m/tiny", "--port", "9000"],
        {
            "DSR_PORT": "1",
            "DSR_MAX_NUM_SEQS": "7",
            "DSR_ENABLE_PREFIX_CACHING": "false",
            "DSR_LOG_PROMPTS": "1",
        },
    )
    assert cfg.port == 9000 and cfg.max_num_seqs == 7
    assert cfg.enable_prefix_caching is False and cfg.log_prompts is True
    assert cfg.host == "127.0.0.1" and cfg.engine == "native"
    assert cfg.model_name == "tiny"
    assert _parse(["--model", "m", "--no-enable-prefix-caching"], {}).enable_prefix_caching is False


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--model", "m", "--engine", "tgi"], "--engine"),
        (["--model", "m", "--port", "-1"], "--port"),
        (["--model", "m", "--gpu-memory-utilization", "1.5"], "--gpu-memory-utilization"),
        ([], "--model"),
    ],
)
def test_bad_options_name_the_option(argv: list[str], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        _parse(argv, {})


def test_keys_are_hashed_and_identified(tmp_path: Path) -> None:
    (tmp_path / "keys").write_text("# comment\nsk-one\n\n")
    keys = read_keys(tmp_path / "keys", "sk-two, ")
    store = KeyStore(keys)
    assert store.enabled
    assert store.identify("sk-one") is not None and store.identify("sk-two") is not None
    assert store.identify("sk-one") != store.identify("sk-two")
    assert store.identify("sk-on") is None and store.identify(None) is None
    assert "sk-one" not in repr(vars(store))
    assert KeyStore([]).identify(None) == "anonymous"
    with pytest.raises(ValueError, match="cannot read"):
        read_keys(tmp_path / "missing", None)


def test_token_bucket_and_rate_limiter() -> None:
    now = [0.0]
    clock = lambda: now[0]  # noqa: E731
    bucket = TokenBucket(rate=2.0, capacity=2.0, clock=clock)
    assert bucket.try_take(1) == 0 and bucket.try_take(1) == 0
    assert bucket.try_take(1) == pytest.approx(0.5)
    now[0] = 0.5
    assert bucket.try_take(1) == 0
    limiter, limits = QuotaLimiter(clock=clock), Limits(rps=1.0, tpm=600)
    assert limiter.admit("a", limits, 100)[0] == 0
    assert limiter.admit("a", limits, 100)[0] == 1  # request bucket empty
    assert limiter.admit("b", limits, 100)[0] == 0  # separate principal
    now[0] = 2.0
    wait, reservation = limiter.admit("a", limits, 10)
    assert wait == 0
    limiter.settle(reservation, limits, 700)  # a request that overran puts "a" in debt
    now[0] = 3.0
    assert limiter.admit("a", limits, 10)[0] >= 1


def test_content_filter_rules() -> None:
    f = ContentFilter(
        ContentPolicy(
            blocklist=["bad word"], regex=[{"name": "ssn", "pattern": r"\b\d{3}-\d{2}-\d{4}\b"}]
        )
    )  # type: ignore[list-item]
    assert f.check("a BAD WORD here") is not None
    assert f.check("badwords") is None
    v = f.check("ssn 123-45-6789")
    assert v is not None and v.rule == "ssn"
    off = ContentFilter(ContentPolicy(blocklist=["x"], apply_to_outputs=False))
    assert off.check_output("x") is None and off.check_prompt("x") is not None


def test_content_policy_file_validation(tmp_path: Path) -> None:
    good = tmp_path / "p.json"
    good.write_text(json.dumps({"blocklist": ["nope"]}))
    assert ContentFilter.from_file(good).check("nope") is not None
    bad = tmp_path / "p.yaml"
    bad.write_text("regex: [{name: r, pattern: '(unclosed'}]\n")
    with pytest.raises(ValueError, match="invalid"):
        ContentFilter.from_file(bad)
    extra = tmp_path / "q.yaml"
    extra.write_text("blocklist: [a]\nunknown: 1\n")
    with pytest.raises(ValueError, match="invalid"):
        ContentFilter.from_file(extra)


def test_pii_redaction() -> None:
    text = "mail a.b@x.org, call +1 (415) 555-0100 or 020 7946 0958, card 4111-1111-1111-1111"
    red = redact_pii(text)
    assert "a.b@x.org" not in red and "[EMAIL]" in red
    assert "4111" not in red and "[CARD]" in red
    assert "555-0100" not in red and "7946" not in red
    assert "[CARD]" not in redact_pii("ref 4111111111111112")  # fails the Luhn check
    assert redact_pii("year 2024") == "year 2024"


def test_audit_log_omits_prompt_unless_enabled(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    log = AuditLog(str(path))
    log.record(prompt="secret text", key_id="abc", status=200)
    on = AuditLog(str(path), log_prompts=True)
    on.record(prompt="reach me at z@y.io", key_id="abc", status=200)
    log.close()
    on.close()
    first, second = (json.loads(line) for line in path.read_text().splitlines())
    assert "prompt" not in first and first["key_id"] == "abc" and "time" in first
    assert second["prompt"] == "reach me at [EMAIL]"


def test_chat_template_is_sandboxed() -> None:
    class FakeTok:  # only what ServerTokenizer needs for rendering
        pass

    tok = ServerTokenizer(
        FakeTok(),
        chat_template=(
            "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
            "{% if add_generation_prompt %}<assistant>{% endif %}"
        ),
        bos_token="<s>",
    )
    out = tok.apply_chat_template([{"role": "user", "content": "hi"}])
    assert out == "<s><user>hi<assistant>"
    evil = ServerTokenizer(
        FakeTok(), chat_template="{{ ''.__class__.__mro__[1].__subclasses__() }}"
    )
    with pytest.raises(ChatTemplateError):
        evil.apply_chat_template([])
    raising = ServerTokenizer(
        FakeTok(), chat_template="{{ raise_exception('roles must alternate') }}"
    )
    with pytest.raises(ChatTemplateError, match="alternate"):
        raising.apply_chat_template([])
    with pytest.raises(ChatTemplateError, match="no chat template"):
        ServerTokenizer(FakeTok()).apply_chat_template([])


def test_v2_settings_precedence_and_errors() -> None:
    s = parse_settings(
        {"max_tokens": 5, "temperature": 0.5},
        {"temperature": 0.0},
        json.dumps({"top_k": 3, "stop": "x"}),
        default_stream=False,
    )
    assert s.params.max_tokens == 5 and s.params.temperature == 0.0 and s.params.top_k == 3
    assert s.params.stop == ("x",) and s.exclude_input and not s.stream
    with pytest.raises(APIError) as err:
        parse_settings({"max_tokens": "many"}, default_stream=False)
    assert err.value.status == 400
    with pytest.raises(APIError):
        parse_settings("{not json", default_stream=True)
    with pytest.raises(APIError):
        parse_settings({"top_p": 3}, default_stream=True)


def test_bytes_tensor_codec_roundtrip() -> None:
    items = [b"hello", b"", "h\u00e9".encode()]
    assert decode_bytes_tensor(encode_bytes_tensor(items)) == items


def test_limits_and_refusals() -> None:
    assert resolve_max_tokens(None, [[1] * 10], 64, 16) == 16
    assert resolve_max_tokens(None, [[1] * 60], 64, None) == 4
    with pytest.raises(APIError) as err:
        resolve_max_tokens(60, [[1] * 10], 64, 16)
    assert err.value.param == "max_tokens"

    busy = engine_refusal(QueueFullError("full"), 3)
    assert busy.status == 429 and busy.headers["Retry-After"] == "3"
    assert engine_refusal(EngineError("bad"), 3).status == 400


def test_engine_option_mappings() -> None:
    cfg = ServerConfig(
        model="/models/ds",
        engine="vllm",
        tensor_parallel_size=8,
        pipeline_parallel_size=2,
        enable_expert_parallel=True,
        quantization="fp8",
        kv_cache_dtype="fp8",
        max_model_len=32768,
        gpu_memory_utilization=0.85,
        served_model_name="deepseek-r1",
    )
    options = backend_options(cfg)
    assert isinstance(options, VLLMEngineOptions)
    args = vllm_engine_args(options)
    assert args["tensor_parallel_size"] == 8 and args["pipeline_parallel_size"] == 2
    assert args["enable_expert_parallel"] is True and args["quantization"] == "fp8"
    assert args["kv_cache_dtype"] == "fp8" and args["max_model_len"] == 32768
    assert args["gpu_memory_utilization"] == 0.85
    assert args["served_model_name"] == ["deepseek-r1"] and args["model"] == "/models/ds"
    plain = backend_options(ServerConfig(model="m", engine="vllm"))
    assert isinstance(plain, VLLMEngineOptions)
    assert "quantization" not in vllm_engine_args(plain)
    sp = SamplingParams(max_tokens=9, top_k=0, stop=("a",), seed=4, logprobs=2)
    kw = vllm_sampling_kwargs(sp)
    assert kw["top_k"] == -1 and kw["stop"] == ["a"] and kw["seed"] == 4 and kw["n"] == 1
    assert kw["logprobs"] == 2
    tp = triton_sampling_parameters(sp)
    assert tp["max_tokens"] == 9 and tp["stop"] == ["a"] and tp["top_k"] == -1
    nk = backend_options(ServerConfig(model="m", max_waiting=5))
    assert isinstance(nk, NativeEngineOptions)
    device = resolve_device(nk.device)
    assert resolve_dtype(nk.dtype, "cpu") == "float32" and nk.max_waiting == 5
    assert resolve_device("cpu") == "cpu" and device in ("cpu", "cuda")
    assert nk.model_dir == Path("m") and nk.debug_checks is False
    debug = backend_options(ServerConfig(model="m", debug_checks=True))
    assert isinstance(debug, NativeEngineOptions) and debug.debug_checks is True
    remote = backend_options(ServerConfig(model="m", engine="triton", triton_model="ds"))
    assert isinstance(remote, TritonEngineOptions) and remote.remote_model == "ds"


def test_engine_defaults_have_one_home() -> None:
    """The server's engine options default to the engine's and the native backend's own
    values (one definition each), which are the ones the server has always served with."""
    from deepseek_runtime.engine import EngineConfig  # noqa: PLC0415

    server = ServerConfig(model="m")
    engine = EngineConfig(max_model_len=2)
    native = NativeEngineOptions(model_dir=Path("m"))
    for name in ("max_num_seqs", "max_num_batched_tokens", "max_waiting", "enable_prefix_caching"):
        assert getattr(server, name) == getattr(engine, name) == getattr(native, name), name
    for name in ("block_size", "dtype", "device"):
        assert getattr(server, name) == getattr(native, name), name
    assert (server.max_num_seqs, server.max_waiting) == (64, 256)
    # unset: the int4 kernel's own default applies (backends.native passes it)
    assert server.quantization_group_size is None and native.quantization_group_size is None


def test_missing_engine_package_says_what_to_install() -> None:
    import importlib.util  # noqa: PLC0415

    from deepseek_runtime.backends import EngineUnavailable, check_available  # noqa: PLC0415

    check_available(NativeEngineOptions(model_dir=Path("m")))  # native: torch is here
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    with pytest.raises(EngineUnavailable, match=r"pip install .*vllm"):
        check_available(backend_options(ServerConfig(model="m", engine="vllm")))


async def test_vllm_adapter_turns_cumulative_outputs_into_deltas() -> None:
    from types import SimpleNamespace as Ns  # noqa: PLC0415

    from deepseek_runtime.backends.vllm import VLLMEngine  # noqa: PLC0415
    from deepseek_runtime.engine.api import FinishReason  # noqa: PLC0415

    lp = Ns  # vLLM's Logprob has .logprob

    aborted: list[str] = []

    class FakeVLLM:  # the shape of vllm.AsyncLLMEngine.generate's outputs
        async def generate(self, prompt: dict[str, list[int]], sp: object, rid: str):  # type: ignore[no-untyped-def]
            assert prompt == {"prompt_token_ids": [1, 2, 3]}
            steps = [([7], "a", None), ([7, 8], "ab", None), ([7, 8, 9], "abc", "length")]
            for ids, text, reason in steps:
                logprobs = [{t: lp(logprob=-0.5), 4: lp(logprob=-1.5)} for t in ids]
                yield Ns(
                    finished=reason is not None,
                    outputs=[Ns(token_ids=ids, text=text, finish_reason=reason, logprobs=logprobs)],
                )

        async def abort(self, rid: str) -> None:
            aborted.append(rid)

    engine = VLLMEngine(FakeVLLM(), lambda **kw: kw, max_model_len=16)
    outs = [o async for o in engine.generate("r", [1, 2, 3], SamplingParams(max_tokens=3))]
    assert [o.new_token_ids for o in outs] == [[7], [8], [9]]
    assert "".join(o.text for o in outs) == "abc"
    assert [o.completion_tokens for o in outs] == [1, 2, 3]
    assert outs[-1].finished and outs[-1].finish_reason is FinishReason.LENGTH
    assert outs[1].logprobs[0].token_id == 8 and outs[1].logprobs[0].top[0] == (8, -0.5)
    with pytest.raises(EngineError, match="max_model_len"):
        engine.generate("r2", list(range(20)), SamplingParams())
    # what only the native engine implements is refused (400), never silently dropped
    with pytest.raises(EngineError, match="structured outputs"):
        engine.generate("r3", [1], SamplingParams(guided=GuidedDecoding("json_object")))
    with pytest.raises(EngineError, match="prompt logprobs"):
        engine.generate("r4", [1], SamplingParams(prompt_logprobs=1))
    await engine.abort("r")
    assert aborted == ["r"]
