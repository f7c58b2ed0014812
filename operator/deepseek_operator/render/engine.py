"""Engine command lines and environment for the serving container.

``native`` / ``triton``: ``deepseek-runtime serve --model DIR --host 0.0.0.0 --port P
--dtype auto --engine KIND``, everything else as the ``DSR_*`` environment variables the
runtime's ``ServerConfig`` reads (``DSR_MAX_NUM_SEQS`` for ``--max-num-seqs`` …).
A multi-node replica (a LeaderWorkerSet; ``engine.kind: native`` asked for explicitly,
see ``planning/engines.py``) runs the same command in every pod with ``--nnodes N
--master-port 29500`` added: the runtime reads the node rank and the leader's address from
the ``LWS_WORKER_INDEX`` / ``LWS_LEADER_ADDRESS`` variables the LeaderWorkerSet
controller injects (``--node-rank`` / ``--master-addr`` default to them), so no shell
wraps it. Pod 0 serves the API; the others run their ranks and answer health probes.

The engine is ``plan.engine``: ``spec.engine.kind``, or what the planner chose for
``auto``. R1 and its distills get the ``deepseek_r1`` reasoning parser, V3 and R1 the
``deepseek_v3`` tool-call parser (``plan.reasoning_parser`` / ``plan.tool_call_parser``):
``DSR_REASONING_PARSER`` / ``DSR_TOOL_CALL_PARSER`` for the runtime, ``--reasoning-parser``
and ``--enable-auto-tool-choice --tool-call-parser`` for vLLM.

``vllm``: ``vllm serve DIR`` with vLLM's own flags (``--tensor-parallel-size``,
``--pipeline-parallel-size``, ``--enable-expert-parallel``, ``--max-model-len``,
``--quantization``, ``--kv-cache-dtype``, ``--gpu-memory-utilization`` …). Multi-node
vLLM replicas use Ray the way the LeaderWorkerSet guide does: the leader starts the Ray
head then ``vllm serve``; workers join the head at ``$(LWS_LEADER_ADDRESS)``.

Pure; called by :mod:`.pod`.
"""

from __future__ import annotations

import shlex
from typing import Any, Final

from deepseek_operator.api import defaults
from deepseek_operator.api.resource import DeepSeekDeployment
from deepseek_operator.planning.plan import Plan

RAY_PORT: Final = 6379
DIST_PORT: Final = 29500
API_KEYS_DIR: Final = "/etc/deepseek/auth"
FILTER_DIR: Final = "/etc/deepseek/filter"
JWKS_DIR: Final = "/etc/deepseek/jwks"
ROLES_DIR: Final = "/etc/deepseek/roles"
JWKS_KEY: Final = "jwks.json"


def engine_image(dsd: DeepSeekDeployment, plan: Plan) -> str:
    """The engine image: the spec's, else the pinned default of the engine that serves
    the plan (``plan.engine``: ``spec.engine.kind``, or what ``auto`` chose)."""
    default = defaults.VLLM_IMAGE if plan.engine == "vllm" else defaults.NATIVE_IMAGE
    return dsd.spec.engine.image or default


def _vllm_args(dsd: DeepSeekDeployment, plan: Plan, model_dir: str) -> list[str]:
    s, e = dsd.spec, dsd.spec.engine
    args = [
        model_dir,
        "--served-model-name",
        s.model.name,
        "--host",
        "0.0.0.0",
        "--port",
        str(e.port),
        "--tensor-parallel-size",
        str(plan.tensor),
        "--pipeline-parallel-size",
        str(plan.pipeline),
    ]
    if plan.data > 1:
        args += ["--data-parallel-size", str(plan.data)]
    if plan.expert > 1:
        args.append("--enable-expert-parallel")
    args += ["--max-model-len", str(s.model.max_model_len)]
    if s.model.quantization == "fp8":
        args += ["--quantization", "fp8"]
    args += [
        "--kv-cache-dtype",
        e.kv_cache.dtype,
        "--gpu-memory-utilization",
        f"{e.gpu_memory_utilization:g}",
        "--max-num-seqs",
        str(e.max_num_seqs),
        "--max-num-batched-tokens",
        str(e.max_num_batched_tokens),
        "--block-size",
        str(e.kv_cache.block_size),
        "--enable-prefix-caching" if e.kv_cache.prefix_caching else "--no-enable-prefix-caching",
    ]
    if plan.reasoning_parser:
        args += ["--reasoning-parser", plan.reasoning_parser]
    if plan.tool_call_parser:
        args += ["--enable-auto-tool-choice", "--tool-call-parser", plan.tool_call_parser]
    if plan.nodes_per_replica > 1:
        args += ["--distributed-executor-backend", "ray"]
    return args + list(e.args)


def _native_env(dsd: DeepSeekDeployment, plan: Plan) -> list[dict[str, Any]]:
    s, e = dsd.spec, dsd.spec.engine
    pairs = [
        ("DSR_SERVED_MODEL_NAME", s.model.name),
        ("DSR_MAX_MODEL_LEN", str(s.model.max_model_len)),
        ("DSR_TENSOR_PARALLEL_SIZE", str(plan.tensor)),
        ("DSR_PIPELINE_PARALLEL_SIZE", str(plan.pipeline)),
        ("DSR_ENABLE_EXPERT_PARALLEL", "true" if plan.expert > 1 else "false"),
        ("DSR_GPU_MEMORY_UTILIZATION", f"{e.gpu_memory_utilization:g}"),
        ("DSR_MAX_NUM_SEQS", str(e.max_num_seqs)),
        ("DSR_MAX_NUM_BATCHED_TOKENS", str(e.max_num_batched_tokens)),
        ("DSR_KV_CACHE_DTYPE", e.kv_cache.dtype),
        ("DSR_BLOCK_SIZE", str(e.kv_cache.block_size)),
        ("DSR_ENABLE_PREFIX_CACHING", "true" if e.kv_cache.prefix_caching else "false"),
    ]
    if plan.engine == "native" and plan.gpus_per_replica > 1:
        # the runtime sizes a one-GPU cache from a dummy batch; a group gets the planner's
        # per-GPU KV budget instead (the two agree within 10 %: tests/contract)
        pairs.append(("DSR_KV_CACHE_MEMORY_BYTES", str(plan.kv_cache_bytes_per_gpu)))
    if s.model.quantization in ("fp8", "int8", "int4"):  # auto/none: the checkpoint's own
        pairs.append(("DSR_QUANTIZATION", s.model.quantization))
    if plan.reasoning_parser:
        pairs.append(("DSR_REASONING_PARSER", plan.reasoning_parser))
    if plan.tool_call_parser:
        pairs.append(("DSR_TOOL_CALL_PARSER", plan.tool_call_parser))
    if plan.engine == "triton" and e.triton_url:
        pairs.append(("DSR_TRITON_URL", e.triton_url))
    rl = s.serving.rate_limit
    if rl.requests_per_second is not None:
        pairs.append(("DSR_RATE_LIMIT_RPS", f"{rl.requests_per_second:g}"))
    if rl.tokens_per_minute is not None:
        pairs.append(("DSR_RATE_LIMIT_TPM", str(rl.tokens_per_minute)))
    if s.serving.auth.api_keys_secret_ref is not None:
        pairs.append(("DSR_API_KEYS_FILE", f"{API_KEYS_DIR}/api-keys"))
    policy = s.serving.content_filter.config_map_ref
    if policy is not None:
        pairs.append(("DSR_CONTENT_FILTER", f"{FILTER_DIR}/{policy.key}"))
    jwt = s.serving.auth.jwt
    if jwt is not None:
        jwks = jwt.jwks_uri or f"{JWKS_DIR}/{JWKS_KEY}"
        pairs += [("DSR_JWT_JWKS", jwks), ("DSR_JWT_ISSUER", jwt.issuer)]
        pairs.append(("DSR_JWT_AUDIENCE", jwt.audience))
    roles = s.serving.auth.roles_ref
    if roles is not None:
        pairs.append(("DSR_AUTH_ROLES", f"{ROLES_DIR}/{roles.key}"))
    return [{"name": k, "value": v} for k, v in pairs]


def common_env() -> list[dict[str, Any]]:
    """Environment every engine container gets (caches on writable volumes)."""
    return [
        {"name": "HOME", "value": "/tmp"},
        {"name": "XDG_CACHE_HOME", "value": "/tmp/.cache"},
        {"name": "HF_HUB_OFFLINE", "value": "1"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]


def container_command(
    dsd: DeepSeekDeployment, plan: Plan, model_dir: str, role: str
) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """(command, args, env) of the engine container for ``role`` server or worker."""
    e = dsd.spec.engine
    env = common_env()
    if plan.engine == "vllm":
        if dsd.spec.serving.auth.api_keys_secret_ref is not None:
            ref = dsd.spec.serving.auth.api_keys_secret_ref
            env.append(
                {
                    "name": "VLLM_API_KEY",
                    "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key or "api-keys"}},
                }
            )
        env += [{"name": "VLLM_NO_USAGE_STATS", "value": "1"}]
        if plan.nodes_per_replica == 1:
            return ["vllm", "serve"], _vllm_args(dsd, plan, model_dir), env
        if role == "worker":
            script = f"ray start --address=$LWS_LEADER_ADDRESS:{RAY_PORT} --block"
        else:
            serve = shlex.join(["vllm", "serve", *_vllm_args(dsd, plan, model_dir)])
            script = f"ray start --head --port={RAY_PORT} && exec {serve}"
        return ["/bin/sh", "-c"], [script], env
    args = [
        "--model",
        model_dir,
        "--host",
        "0.0.0.0",
        "--port",
        str(e.port),
        "--dtype",
        "auto",
        "--engine",
        plan.engine,
    ]
    if plan.nodes_per_replica > 1:
        # node rank and leader address: the runtime reads LWS_WORKER_INDEX and
        # LWS_LEADER_ADDRESS, which the LeaderWorkerSet controller sets in every pod
        args += ["--nnodes", str(plan.nodes_per_replica), "--master-port", str(DIST_PORT)]
    env += _native_env(dsd, plan)
    return ["deepseek-runtime", "serve"], [*args, *e.args], env
