"""Default values of the DeepSeekDeployment API, in one place.

These numbers carry the operating practice the project is built on (DESIGN.md §3): probes,
autoscaling bounds, canary steps, outlier ejection and alert thresholds.  The spec models
use them as field defaults, so they also appear as ``default:`` in the generated CRD and in
``docs/api.md``.  Change a value here and regenerate (``deepseek-operator crd``).
"""

from __future__ import annotations

from typing import Final

# Images (pinned tags; override with spec.engine.image).
NATIVE_IMAGE: Final = "ghcr.io/deepseek-k8s/deepseek-runtime:0.1.0"
VLLM_IMAGE: Final = "docker.io/vllm/vllm-openai:v0.10.1"
SERVING_PORT: Final = 8000

# Model and engine.
MAX_MODEL_LEN: Final = 32768
GPU_MEMORY_UTILIZATION: Final = 0.90
MAX_NUM_SEQS: Final = 256
MAX_NUM_BATCHED_TOKENS: Final = 8192
KV_BLOCK_SIZE: Final = 16
MIN_CONCURRENT_SEQUENCES: Final = 4

# Health: liveness every 30 s, restart after 3 failures.
PROBE_PERIOD_SECONDS: Final = 30
PROBE_FAILURE_THRESHOLD: Final = 3
PROBE_TIMEOUT_SECONDS: Final = 5

# Autoscaling between 2 and 10 replicas.
MIN_REPLICAS: Final = 2
MAX_REPLICAS: Final = 10
SCALE_DOWN_STABILIZATION_SECONDS: Final = 300
QUEUE_DEPTH_TARGET: Final = 5.0
# The native autoscaler (Knative KPA style): a 60 s stable window, a short panic window
# (a few Prometheus samples, not Knative's 6 s), panic at 2x the ready capacity.
NATIVE_INTERVAL: Final = "15s"
NATIVE_STABLE_WINDOW: Final = "60s"
NATIVE_PANIC_WINDOW: Final = "15s"
NATIVE_PANIC_THRESHOLD_PERCENT: Final = 200.0

# Canary: the first step sends 10 % of traffic.
CANARY_STEPS: Final = ((10, "5m"), (25, "5m"), (50, "10m"))
ANALYSIS_INTERVAL: Final = "1m"
ANALYSIS_FAILURE_LIMIT: Final = 3

# Traffic and resilience: outlier ejection after consecutive 5xx, circuit opens at 5 %.
REQUEST_TIMEOUT: Final = "600s"
RETRY_ATTEMPTS: Final = 2
RETRY_PER_TRY_TIMEOUT: Final = "300s"
RETRY_ON: Final = "connect-failure,refused-stream,unavailable,reset"
CONSECUTIVE_5XX_ERRORS: Final = 5
EJECTION_INTERVAL: Final = "30s"
BASE_EJECTION_TIME: Final = "60s"
MAX_EJECTION_PERCENT: Final = 50
MAX_PENDING_REQUESTS: Final = 1024
CIRCUIT_ERROR_RATE_PERCENT: Final = 5.0
CIRCUIT_WINDOW: Final = "1m"
CIRCUIT_COOL_DOWN: Final = "60s"
CIRCUIT_HALF_OPEN_PERCENT: Final = 10
CIRCUIT_CLOSE_AFTER: Final = "60s"

# Alerts: GPU utilisation > 90 % for 5 m, KV cache fragmentation > 30 %,
# p95 latency > 500 ms, error rate > 1 %.
ALERT_GPU_UTILIZATION_PERCENT: Final = 90.0
ALERT_GPU_UTILIZATION_FOR: Final = "5m"
ALERT_KV_FRAGMENTATION_PERCENT: Final = 30.0
ALERT_P95_LATENCY_MILLISECONDS: Final = 500
ALERT_ERROR_RATE_PERCENT: Final = 1.0
ALERT_FOR: Final = "5m"
RUNBOOK_BASE_URL: Final = "https://github.com/deepseek-k8s/deepseek-k8s/blob/main/docs/runbooks"
PROMETHEUS_ADDRESS: Final = "http://prometheus-operated.monitoring.svc:9090"
SCRAPE_INTERVAL: Final = "15s"
