"""Train a ``make-tiny`` checkpoint for a few seconds on English text, so demos print words.

A random-weight checkpoint streams byte noise, which a newcomer reads as a broken server.
``make-tiny --train-seconds 60`` (see :mod:`.make_tiny`) calls :func:`train_checkpoint`:
next-token training on text shipped in the repository (the package's own corpus, plus
any ``--train-text`` files such as the docs) for at most that many seconds of CPU time,
one torch thread. The result is still a ~0.3M-parameter toy that imitates its training
text; ``MODEL_CARD.md`` in the checkpoint says so, and says what it was trained on.

The trainer is transformers' implementation of the same architecture (the ``test``
extra); the runtime matches it numerically (the ``reference`` tests), so the trained
weights mean the same thing to ``deepseek-runtime serve``. Tensors are written back under
the checkpoint's own names (transformers fuses routed experts into 3-D tensors when
loading; :func:`_unfuse` undoes that and is checked on the untrained weights first).

Trained checkpoints are cached by content hash (config, tokenizer, training text, budget,
seed, this module's source and the transformers version) under
``$DSK_CACHE/tiny-trained/`` (default ``~/.cache/deepseek-k8s``), so a second run copies.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from deepseek_runtime.checkpoint.tokenizer_build import ASSISTANT, BOS, EOS, USER, corpus_text

WEIGHTS = "model.safetensors"
PEAK_LR = 1e-2
CARD = "MODEL_CARD.md"
REPORT = "training.json"
_EXPERT = re.compile(r"^(model\.layers\.\d+\.mlp\.experts)\.(\d+)\.(gate|up|down)_proj\.weight$")


@dataclass(frozen=True, slots=True)
class TrainReport:
    """What one training run did (written to ``training.json``)."""

    steps: int
    seconds: float
    tokens_seen: int
    corpus_tokens: int
    loss_first: float
    loss_last: float
    parameters: int
    sources: list[str]


def cache_root() -> Path:
    """``$DSK_CACHE/tiny-trained`` (the project's cache outside the clone)."""
    base = Path(os.environ.get("DSK_CACHE", str(Path.home() / ".cache" / "deepseek-k8s")))
    return base.expanduser() / "tiny-trained"


def _unfuse(fused: dict[str, torch.Tensor], names: list[str]) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors by their own names, from transformers' state dict."""
    out: dict[str, torch.Tensor] = {}
    for name in names:
        match = _EXPERT.match(name)
        if match is None:
            out[name] = fused[name]
            continue
        prefix, expert, proj = match.group(1), int(match.group(2)), match.group(3)
        if proj == "down":
            out[name] = fused[f"{prefix}.down_proj"][expert]
        else:
            gate_up = fused[f"{prefix}.gate_up_proj"][expert]
            half = gate_up.shape[0] // 2
            out[name] = gate_up[:half] if proj == "gate" else gate_up[half:]
    return {n: t.detach().contiguous().clone() for n, t in out.items()}


def prose(markdown: str) -> str:
    """The running text of a Markdown page: no code blocks, tables, markup or link targets.

    Tables and code dominate reference docs; a toy trained on them answers in table rows.
    """
    text = re.sub(r"^\s*```.*?^\s*```[^\n]*$", "", markdown, flags=re.MULTILINE | re.DOTALL)
    lines = [
        line for line in text.splitlines() if not line.lstrip().startswith(("|", "<!--", "    "))
    ]
    text = "\n".join(lines)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # [text](target) -> text
    text = re.sub(r"^\s*#+\s*", "", text, flags=re.MULTILINE)
    text = re.sub(r"^\s*[-*]\s+|^\s*\d+\.\s+", "", text, flags=re.MULTILINE)
    return text.replace("`", "").replace("**", "")


def chat_samples(markdown: str, topic: str) -> list[str]:
    """Each paragraph as one chat turn: "Tell me about <its section>." answered by it.

    Training in the chat template's own shape teaches the toy what follows
    ``<｜Assistant｜>``, so a chat completion (what the demo asks for) answers in prose.
    """
    samples: list[str] = []
    for block in re.split(r"\n\s*\n", markdown):
        heading = (
            re.match(r"^\s*#+\s*(.+)$", block.strip().splitlines()[0]) if block.strip() else None
        )
        if heading:
            topic = prose(heading.group(1)).strip().rstrip(".:") or topic
        text = " ".join(prose(block).split())
        if heading:
            text = " ".join(prose("\n".join(block.strip().splitlines()[1:])).split())
        if len(text.split()) >= 8:
            samples.append(f"{BOS}{USER}Tell me about {topic}.{ASSISTANT}{text}{EOS}")
    return samples


def _token_stream(model_dir: Path, samples: list[str]) -> torch.Tensor:
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    ids: list[int] = []
    for sample in samples:
        ids += tokenizer.encode(sample, add_special_tokens=False).ids
    return torch.tensor(ids, dtype=torch.long)


def train_in_place(
    model_dir: Path, samples: list[str], sources: list[str], seconds: float, seed: int = 0
) -> TrainReport:
    """Train the checkpoint in ``model_dir`` on ``samples`` (chat-formatted text) for at
    most ``seconds`` of CPU time; rewrite its weights."""
    from transformers import AutoModelForCausalLM  # noqa: PLC0415 (the test extra)

    if seconds <= 0:
        raise ValueError("train seconds: must be > 0")
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matmuls: more threads mostly add synchronisation
    try:
        original = load_file(str(model_dir / WEIGHTS))
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        names = list(original)
        unfused = _unfuse(model.state_dict(), names)
        if any(not torch.equal(unfused[n], original[n]) for n in names):
            raise RuntimeError("tiny_train: transformers' weight layout changed; fix _unfuse")
        stream = _token_stream(model_dir, samples)
        window, batch = 128, 8
        if stream.numel() <= window + 1:
            raise ValueError("train text: too short to train on")
        optimizer = torch.optim.AdamW(model.parameters(), lr=PEAK_LR, weight_decay=0.01)
        model.train()
        losses: list[float] = []
        started = time.process_time()
        while (progress := (time.process_time() - started) / seconds) < 1:
            # Short warm-up, then cosine decay over the time budget.
            warm = min(1.0, (len(losses) + 1) / 20)
            for group in optimizer.param_groups:
                group["lr"] = PEAK_LR * warm * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))
            starts = torch.randint(0, stream.numel() - window - 1, (batch,))
            x = torch.stack([stream[s : s + window] for s in starts.tolist()])
            loss = model(input_ids=x, labels=x).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
        spent = time.process_time() - started
        trained = _unfuse(model.state_dict(), names)
    finally:
        torch.set_num_threads(threads)
    save_file(trained, str(model_dir / WEIGHTS), metadata={"format": "pt"})
    head = losses[: max(1, len(losses) // 20)]
    tail = losses[-max(1, len(losses) // 20) :]
    return TrainReport(
        steps=len(losses),
        seconds=round(spent, 1),
        tokens_seen=len(losses) * batch * window,
        corpus_tokens=int(stream.numel()),
        loss_first=round(sum(head) / len(head), 3),
        loss_last=round(sum(tail) / len(tail), 3),
        parameters=sum(t.numel() for t in trained.values()),
        sources=sources,
    )


def _card(arch: str, report: TrainReport) -> str:
    return (
        f"# A toy, not DeepSeek\n\n"
        f"A {report.parameters / 1e6:.2f}M-parameter model with the DeepSeek-{arch.upper()} "
        f"architecture (MLA attention, routed + shared experts), written by "
        f"`deepseek-runtime make-tiny` and trained for {report.seconds:.0f} CPU seconds "
        f"({report.steps} steps, {report.tokens_seen} tokens; loss {report.loss_first} -> "
        f"{report.loss_last}) on {report.corpus_tokens} tokens of this repository's own text: "
        f"{', '.join(report.sources)}.\n\n"
        "It imitates the wording of that text and knows nothing else. It exists so demos and "
        "tests exercise the real serving path with output a person can read.\n"
    )


def _key(model_dir: Path, texts: list[str], seconds: float, seed: int) -> str:
    import transformers  # noqa: PLC0415

    digest = hashlib.sha256()
    for part in (
        (model_dir / "config.json").read_bytes(),
        (model_dir / "tokenizer.json").read_bytes(),
        (model_dir / WEIGHTS).read_bytes(),
        Path(__file__).read_bytes(),
        f"{seconds}|{seed}|{transformers.__version__}|{torch.__version__}".encode(),
        *(t.encode() for t in texts),
    ):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:20]


def train_checkpoint(
    model_dir: Path,
    arch: str,
    seconds: float,
    text_files: list[Path] | None = None,
    *,
    seed: int = 0,
    cache: Path | None = None,
) -> TrainReport:
    """Train the fresh checkpoint in ``model_dir``, or copy the cached result of an equal run.

    Args:
        model_dir: a checkpoint just written by ``make_tiny_checkpoint`` (single file).
        arch: its architecture name, for the model card.
        seconds: CPU-time budget of the training loop.
        text_files: extra English text to train on, besides the package's corpus.
        seed: sampling seed of the training windows.
        cache: cache root; :func:`cache_root` when None.
    """
    if not (model_dir / WEIGHTS).is_file():
        raise ValueError("train: needs a single-file checkpoint (no --shards)")
    if "quantization_config" in json.loads((model_dir / "config.json").read_text()):
        raise ValueError("train: needs full-precision weights (no --fp8)")
    files = list(text_files or [])
    texts = [
        *chat_samples(corpus_text(), "this project"),
        *(s for f in files for s in chat_samples(f.read_text(encoding="utf-8"), f.stem)),
    ]
    sources = ["deepseek_runtime/checkpoint/data/corpus.txt", *(f.name for f in files)]
    root = cache or cache_root()
    hit = root / _key(model_dir, texts, seconds, seed)
    if not (hit / REPORT).is_file():
        root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="train-", dir=root))
        shutil.copy2(model_dir / WEIGHTS, work / WEIGHTS)
        for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
            shutil.copy2(model_dir / name, work / name)
        report = train_in_place(work, texts, sources, seconds, seed)
        (work / REPORT).write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")
        (work / CARD).write_text(_card(arch, report), encoding="utf-8")
        if hit.exists():  # a concurrent run finished first: keep its result
            shutil.rmtree(work)
        else:
            work.rename(hit)
    for name in (WEIGHTS, REPORT, CARD):
        shutil.copy2(hit / name, model_dir / name)
    return TrainReport(**json.loads((hit / REPORT).read_text(encoding="utf-8")))
