"""Ray's node table as corral nodes (pure): ids, GPUs, model, memory, topology labels, health."""

from __future__ import annotations

from corral.backends.ray_nodes import NODE_ID_LABEL, ray_inventory, view_ray_nodes
from corral.core.model import Health

GPU_NODE = {"NodeID": "ee7f0fd9508a49260c93860a3d49700e", "Alive": True,
            "NodeManagerAddress": "10.0.0.5",
            "Resources": {"GPU": 8.0, "CPU": 32.0, "memory": 64 * 2**30,
                          "accelerator_type:A100-80G": 1.0, "node:10.0.0.5": 1.0},
            "Labels": {"ray.io/node-id": "ee7f", "corral.io/zone": "z1", "corral.io/rack": "r7"}}
HEAD = {"NodeID": "79d23e01225d299ec9a42f74fe30c21f", "Alive": True,
        "Resources": {"CPU": 1.0, "memory": 2**30}, "Labels": {}}
NAMED = {"NodeID": "aa", "Alive": True, "Resources": {"GPU": 2.0, "accelerator_type:L4": 1.0},
         "Labels": {NODE_ID_LABEL: "rack7-box3", "corral.io/gpu-memory-mib": "20000"}}


def test_a_gpu_node() -> None:
    [node] = ray_inventory([GPU_NODE])
    assert (node.id, node.provider, node.gpu_count, node.gpu_model, node.gpu_memory_mib,
            node.cpu_milli, node.memory_mib, node.zone, node.rack, node.health) == (
        "ray-ee7f0fd9508a", "ray", 8, "A100-80G", 81920, 32000, 65536, "z1", "r7",
        Health.HEALTHY)
    assert dict(node.labels)["ray.io/node-id"] == GPU_NODE["NodeID"]


def test_head_without_gpus_and_an_operator_named_node() -> None:
    head, named = ray_inventory([HEAD, NAMED], prefix="c1-")
    assert (head.id, head.gpu_count, head.gpu_model) == ("c1-79d23e01225d", 0, "none")
    assert (named.id, named.gpu_model, named.gpu_memory_mib) == ("rack7-box3", "L4", 20000)


def test_a_dead_node_is_unhealthy_and_a_live_entry_wins() -> None:
    dead = {**GPU_NODE, "Alive": False}
    assert [n.health for n in ray_inventory([dead])] == [Health.UNHEALTHY]
    [view] = view_ray_nodes([dead, GPU_NODE])
    assert view.alive and view.ray_id == GPU_NODE["NodeID"]
    assert [n.gpu_memory_mib for n in ray_inventory([GPU_NODE], gpu_memory_mib={
        "A100-80G": 80000})] == [80000]
