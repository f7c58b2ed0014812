"""``deepseek-runtime make-tiny``: config overrides, layout, tokenizer and chat template."""

from __future__ import annotations

import json
from pathlib import Path

import jinja2
import pytest
from tokenizers import Tokenizer

from deepseek_runtime.checkpoint.make_tiny import parse_overrides, parse_value
from deepseek_runtime.cli import main

pytestmark = pytest.mark.unit


def test_cli_writes_a_hf_layout_with_overrides(tmp_path: Path) -> None:
    out = tmp_path / "tiny"
    args = ["make-tiny", "--arch", "v2", "--out", str(out), "--seed", "3", "--shards", "2"]
    args += ["--set", "n_group=2", "--set", "rope_scaling=null", "--set", "norm_topk_prob=true"]
    args += ["--set", "routed_scaling_factor=1.5", "--set", "vocab_size=640"]
    assert main(args) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "deepseek_v2"
    assert config["architectures"] == ["DeepseekV2ForCausalLM"]
    assert config["n_group"] == 2 and config["rope_scaling"] is None
    assert config["norm_topk_prob"] is True and config["routed_scaling_factor"] == 1.5
    expected = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"}
    expected |= {"model.safetensors.index.json"}
    expected |= {f"model-0000{i}-of-00002.safetensors" for i in (1, 2)}
    assert {p.name for p in out.iterdir()} == expected
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert tokenizer.get_vocab_size() == 640


def test_cli_rejects_a_bad_override(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["make-tiny", "--out", str(tmp_path / "x"), "--set", "n_group=3"]) == 2
    assert "n_group" in capsys.readouterr().out


def test_override_values_are_parsed() -> None:
    assert parse_value("3") == 3 and parse_value("0.5") == 0.5
    assert parse_value("true") is True and parse_value("False") is False
    assert parse_value("null") is None and parse_value("[1, 2]") == [1, 2]
    assert parse_value("yarn") == "yarn"
    assert parse_overrides(['rope_scaling={"type": "yarn", "factor": 2}']) == {
        "rope_scaling": {"type": "yarn", "factor": 2}
    }
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["novalue"])


def test_tokenizer_round_trips_utf8_and_has_deepseek_specials(make_ckpt: object) -> None:
    out = make_ckpt("v3-default", "v3")  # type: ignore[operator]
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert tokenizer.get_vocab_size() == 512
    assert tokenizer.token_to_id("<｜begin▁of▁sentence｜>") == 0
    assert tokenizer.token_to_id("<｜end▁of▁sentence｜>") == 1
    for text in ["Hello, world!", "naïve café — 東京 🚀", "  spaces\tand\nnewlines "]:
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        assert tokenizer.decode(ids) == text
    assert tokenizer.encode("hi").ids[0] == 0  # BOS added by the post-processor
    sentence = "The scheduler looks at the queue."
    prose = tokenizer.encode(sentence, add_special_tokens=False).ids
    assert len(prose) <= len(sentence) // 2  # merges learned from the shipped corpus


def test_chat_template_renders_deepseek_style(make_ckpt: object) -> None:
    out = make_ckpt("v3-default", "v3")  # type: ignore[operator]
    config = json.loads((out / "tokenizer_config.json").read_text())
    template = jinja2.Environment().from_string(config["chat_template"])
    text = template.render(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Tea?"},
        ],
        bos_token=config["bos_token"],
        add_generation_prompt=True,
    )
    assert text == (
        "<｜begin▁of▁sentence｜>Be brief.<｜User｜>Hi<｜Assistant｜>Hello"
        "<｜end▁of▁sentence｜><｜User｜>Tea?<｜Assistant｜>"
    )
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    assert ids[0] == 0 and tokenizer.token_to_id("<｜User｜>") in ids


@pytest.mark.parametrize(
    ("arch", "architecture"), [("qwen2", "Qwen2ForCausalLM"), ("llama", "LlamaForCausalLM")]
)
def test_distill_checkpoints_and_their_chat_template(
    tmp_path: Path, arch: str, architecture: str
) -> None:
    out = tmp_path / arch
    assert main(["make-tiny", "--arch", arch, "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == arch and config["architectures"] == [architecture]
    assert config["num_attention_heads"] % config["num_key_value_heads"] == 0
    tok_config = json.loads((out / "tokenizer_config.json").read_text())
    template = jinja2.Environment().from_string(tok_config["chat_template"])
    text = template.render(
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "<think>\nplan\n</think>\n\nHello"},
            {"role": "user", "content": "Tea?"},
        ],
        bos_token=tok_config["bos_token"],
        add_generation_prompt=True,
    )
    # earlier reasoning is dropped; the generation prompt opens a new reasoning block
    assert text == (
        "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜>\n\nHello"
        "<｜end▁of▁sentence｜><｜User｜>Tea?<｜Assistant｜><think>\n"
    )


def test_setting_heads_derives_kv_heads(tmp_path: Path) -> None:
    """As in transformers' configs, ``num_key_value_heads`` follows the head count unless set."""
    mla = tmp_path / "v3"
    assert main(["make-tiny", "--out", str(mla), "--set", "num_attention_heads=6"]) == 0
    assert json.loads((mla / "config.json").read_text())["num_key_value_heads"] == 6
    gqa = tmp_path / "qwen2"
    args = ["make-tiny", "--arch", "qwen2", "--out", str(gqa), "--set", "num_attention_heads=8"]
    assert main([*args, "--set", "num_key_value_heads=2"]) == 0
    assert json.loads((gqa / "config.json").read_text())["num_key_value_heads"] == 2


def test_distills_refuse_what_the_engine_cannot_honour(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["make-tiny", "--arch", "qwen2", "--out", str(tmp_path / "x")]
    assert main([*base, "--set", "use_sliding_window=true"]) == 2
    assert "use_sliding_window" in capsys.readouterr().out
    assert main([*base, "--set", "num_key_value_heads=3"]) == 2
    assert "num_key_value_heads" in capsys.readouterr().out
    assert main([*base, "--fp8"]) == 2
    assert "fp8" in capsys.readouterr().out
    llama = ["make-tiny", "--arch", "llama", "--out", str(tmp_path / "y")]
    assert main([*llama, "--set", 'rope_scaling={"rope_type": "dynamic", "factor": 2}']) == 2
    assert "dynamic" in capsys.readouterr().out
