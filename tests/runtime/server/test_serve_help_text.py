"""``deepseek-runtime serve --help`` describes our own flags in our words (issue 9 item 5).

The options are the runtime's; vLLM is one engine they can drive (``--engine vllm``), so a
help line may say what that engine does differently, never call the flag itself vLLM's.
The multi-node flags say where their defaults come from (the LeaderWorkerSet).
"""

from __future__ import annotations

import argparse
import re

import pytest

from deepseek_runtime.server.config import add_config_arguments, config_from_args

pytestmark = pytest.mark.unit


def _help() -> str:
    parser = argparse.ArgumentParser(prog="deepseek-runtime serve")
    add_config_arguments(parser)
    return " ".join(parser.format_help().split())


def test_no_flag_is_described_as_vllms() -> None:
    text = _help()
    assert not re.search(r"vLLM's|for vLLM|vLLM:|\(vLLM\)", text), text
    for flag in ("--tensor-parallel-size", "--pipeline-parallel-size", "--nnodes"):
        assert flag in text


def test_multi_node_defaults_come_from_the_leaderworkerset_env() -> None:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    args = parser.parse_args(["--model", "m"])
    lws = {"LWS_GROUP_SIZE": "2", "LWS_WORKER_INDEX": "1", "LWS_LEADER_ADDRESS": "10.0.0.7"}
    config = config_from_args(args, lws)
    assert (config.nnodes, config.node_rank, config.master_addr) == (2, 1, "10.0.0.7")
    assert config.group_master_port == 29500
    ours = config_from_args(args, {**lws, "DSR_NODE_RANK": "0"})
    assert ours.node_rank == 0  # DSR_* wins over the LWS variables
    flags = parser.parse_args(["--model", "m", "--nnodes", "1", "--master-port", "4000"])
    alone = config_from_args(flags, lws)
    assert (alone.nnodes, alone.group_master_port) == (1, 4000)
    assert config_from_args(args, {}).group_master_port is None  # one node: a free port
