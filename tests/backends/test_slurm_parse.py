"""Reading Slurm's output (pure): gres strings, node lines, node states, job lines, the --gres
asked for a share, and the inventory built from it. No Slurm needed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.backends.slurm_parse import (
    gres_request,
    node_is_lost,
    parse_gres,
    parse_nodes,
    parse_sinfo,
    parse_squeue,
    slurm_inventory,
)
from corral.core.model import Health


@pytest.mark.parametrize(("gres", "expected"), [
    pytest.param("gpu:4,shard:8", (4, "", 8), id="gpus-and-shards"),
    pytest.param("gpu:h100:8(S:0-1)", (8, "h100", 0), id="typed-with-socket"),
    pytest.param("gpu:a100:2(S:0-1,3),shard:4", (2, "a100", 4), id="comma-inside-parens"),
    pytest.param("(null)", (0, "", 0), id="none"),
    pytest.param("", (0, "", 0), id="empty"),
    pytest.param("mps:100,gpu:2", (2, "", 0), id="other-gres-ignored"),
])
def test_parse_gres(gres: str, expected: tuple[int, str, int]) -> None:
    assert parse_gres(gres) == expected


SCONTROL = (
    "NodeName=gpu1 Arch=x86_64 CPUTot=4 Gres=gpu:h100:4,shard:8 NodeAddr=10.0.0.1 "
    "RealMemory=4096 State=IDLE Partitions=gpu\n"
    "NodeName=gpu2 CPUTot=8 Gres=gpu:4 NodeAddr=10.0.0.2 RealMemory=8192 "
    "State=DOWN+NOT_RESPONDING Partitions=gpu,debug\n"
    "NodeName=cpu1 CPUTot=2 Gres=(null) RealMemory=1024 State=MIXED+DRAIN Partitions=cpu\n"
    "\n"
)


def test_parse_nodes_and_inventory() -> None:
    nodes = parse_nodes(SCONTROL)
    assert [(n.name, n.gpus, n.gpu_type, n.shards_per_gpu, n.address) for n in nodes] == [
        ("gpu1", 4, "h100", 2, "10.0.0.1"), ("gpu2", 4, "", 0, "10.0.0.2"),
        ("cpu1", 0, "", 0, "cpu1")]
    inv = slurm_inventory(nodes, gpu_model="a10", gpu_memory_mib={"H100": 81559})
    assert [(n.id, n.gpu_model, n.gpu_memory_mib, n.health, n.cordoned) for n in inv] == [
        ("gpu1", "h100", 81559, Health.HEALTHY, False),
        ("gpu2", "a10", 0, Health.UNHEALTHY, False),
        ("cpu1", "none", 0, Health.HEALTHY, True)]
    assert [n.id for n in slurm_inventory(nodes, partition="debug")] == ["gpu2"]


@pytest.mark.parametrize(("state", "strict", "lenient"), [
    pytest.param("IDLE", False, False, id="idle"),
    pytest.param("idle*", False, True, id="not-responding-sinfo"),
    pytest.param("MIXED+NOT_RESPONDING", False, True, id="not-responding-scontrol"),
    pytest.param("down*", True, True, id="down"),
    pytest.param("DOWN+DRAIN", True, True, id="down-drain"),
    pytest.param("drained", False, False, id="drained-is-a-cordon-not-a-loss"),
    pytest.param("fail", True, True, id="fail"),
    pytest.param("POWERED_DOWN", True, True, id="powered-down"),
    pytest.param("allocated", False, False, id="allocated"),
])
def test_node_is_lost(state: str, strict: bool, lenient: bool) -> None:
    assert node_is_lost(state) is strict
    assert node_is_lost(state, not_responding_is_lost=True) is lenient


def test_parse_sinfo_and_squeue() -> None:
    assert parse_sinfo("gpu1|idle\ngpu2|down*\n") == {"gpu1": "idle", "gpu2": "down*"}
    jobs = parse_squeue("12|RUNNING|gpu1|None\n13|CANCELLED by 0|gpu2|\n13.batch|CANCELLED||\n")
    assert {j: (v.state, v.nodes) for j, v in jobs.items()} == {
        "12": ("RUNNING", "gpu1"), "13": ("CANCELLED", "gpu2")}


@pytest.mark.parametrize(("devices", "milli", "spg", "gres", "noted"), [
    pytest.param(2, 1000, 2, "gpu:2", False, id="whole"),
    pytest.param(1, 500, 2, "shard:1", False, id="exact-half"),
    pytest.param(1, 250, 2, "shard:1", True, id="rounded-up"),
    pytest.param(1, 250, 4, "shard:1", False, id="exact-quarter"),
    pytest.param(1, 600, 4, "shard:3", True, id="three-quarters-for-0.6"),
    pytest.param(1, 250, 0, "gpu:1", True, id="no-shards-whole-gpu"),
    pytest.param(0, 0, 2, "", False, id="cpu-only"),
])
def test_gres_request(devices: int, milli: int, spg: int, gres: str, noted: bool) -> None:
    asked, note = gres_request(devices, milli, spg)
    assert (asked, bool(note)) == (gres, noted)


@given(st.integers(1, 999), st.sampled_from([1, 2, 4, 5, 8, 10]))
def test_a_share_always_gets_at_least_what_it_asked(milli: int, spg: int) -> None:
    asked, _ = gres_request(1, milli, spg)
    shards = int(asked.split(":")[1])
    assert shards * 1000 // spg >= milli or shards == spg
    assert shards <= spg
