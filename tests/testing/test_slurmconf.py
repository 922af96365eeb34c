"""The test cluster's slurm.conf / gres.conf: every daemon file under the temp dir, one port per
slurmd, GPUs and shards tied to the fake device files."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.testing.slurmconf import (
    SlurmLayout,
    SlurmNode,
    SlurmSettings,
    render_gres_conf,
    render_slurm_conf,
)

ROOT = Path("/tmp/corral-slurm-test")
LAYOUT = SlurmLayout(
    root=ROOT,
    controller_host="vm",
    controller_port=6817,
    nodes=(SlurmNode("gpu1", 7001), SlurmNode("gpu2", 7002)),
)


def _settings(**kw: object) -> SlurmSettings:
    return SlurmSettings(**kw)  # type: ignore[arg-type]


def _conf(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, _, value = line.partition("=")
        out.setdefault(key, []).append(value)
    return out


def test_every_path_in_slurm_conf_lives_under_the_temp_dir() -> None:
    conf = _conf(render_slurm_conf(LAYOUT, SlurmSettings()))
    for key in (
        "StateSaveLocation",
        "SlurmdSpoolDir",
        "SlurmctldPidFile",
        "SlurmdPidFile",
        "SlurmctldLogFile",
        "SlurmdLogFile",
        "JobCompLoc",
    ):
        assert conf[key][0].startswith(str(ROOT)), key
    assert conf["AuthInfo"] == [f"socket={ROOT}/run/munge.sock"]


def test_each_node_has_its_own_port_and_the_partition_holds_them_all() -> None:
    text = render_slurm_conf(LAYOUT, SlurmSettings())
    node_lines = [line for line in text.splitlines() if line.startswith("NodeName=")]
    assert [line.split()[0] for line in node_lines] == ["NodeName=gpu1", "NodeName=gpu2"]
    assert ["Port=7001" in node_lines[0], "Port=7002" in node_lines[1]] == [True, True]
    assert "PartitionName=gpu Nodes=gpu1,gpu2 Default=YES" in text


@pytest.mark.parametrize(
    ("settings", "node_gres", "gres_types"),
    [
        (_settings(), "Gres=gpu:4,shard:8", "gpu,shard"),
        (_settings(gpu_type="h100", shards_per_gpu=0), "Gres=gpu:h100:4", "gpu"),
        (_settings(gpus_per_node=2, shards_per_gpu=3), "Gres=gpu:2,shard:6", "gpu,shard"),
        (_settings(gpus_per_node=0, shards_per_gpu=0), None, None),
    ],
    ids=["default", "typed-no-shards", "two-gpus-three-shards", "cpu-only"],
)
def test_gres_in_slurm_conf(
    settings: SlurmSettings, node_gres: str | None, gres_types: str | None
) -> None:
    conf = _conf(render_slurm_conf(LAYOUT, settings))
    node_line = conf["NodeName"][0]
    assert (node_gres in node_line) if node_gres else ("Gres=" not in node_line)
    assert conf.get("GresTypes") == ([gres_types] if gres_types else None)


def test_gres_conf_ties_each_shard_group_to_one_gpu_file() -> None:
    lines = render_gres_conf(LAYOUT, _settings(gpus_per_node=2, shards_per_gpu=3)).splitlines()
    assert lines == [
        f"Name=gpu File={ROOT}/dev/nvidia0",
        f"Name=gpu File={ROOT}/dev/nvidia1",
        f"Name=shard Count=3 File={ROOT}/dev/nvidia0",
        f"Name=shard Count=3 File={ROOT}/dev/nvidia1",
    ]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"cpus_per_node": 0}, "cpus_per_node"),
        ({"slurmd_timeout_s": 0}, "slurmd_timeout_s"),
        ({"gpus_per_node": -1}, "gpus_per_node"),
        ({"gpus_per_node": 0, "shards_per_gpu": 2}, "shards_per_gpu"),
    ],
    ids=["no-cpus", "zero-timeout", "negative-gpus", "shards-without-gpus"],
)
def test_bad_settings_name_the_field(kwargs: dict[str, int], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        SlurmSettings(**kwargs)  # type: ignore[arg-type]
