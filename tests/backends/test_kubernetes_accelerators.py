"""Non-NVIDIA nodes on the Kubernetes backend, against the in-memory API server
(corral.backends.kubernetes_fake, behind the official client's transport): the node's vendor
comes from the device plugin resource it offers; its pods ask for that resource and get that
vendor's variables, not CUDA_VISIBLE_DEVICES."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.core.model import LABEL_VENDOR

from .conftest import make_spec

pytest.importorskip("kubernetes", reason="kubernetes is not installed: pip install -e '.[k8s]'")

from corral.backends.kubernetes import KubernetesBackend
from corral.backends.kubernetes_fake import FakeKubernetes
from corral.backends.kubernetes_objects import pod_name


@pytest.fixture
def fake() -> FakeKubernetes:
    k = FakeKubernetes()
    k.add_node("amd-a", gpus=8, product="AMD_Instinct_MI300X", resource="amd.com/gpu")
    k.add_node("nv-b", gpus=8)
    k.add_node("gaudi-c", gpus=8, resource="habana.ai/gaudi")
    return k


def _container(fake: FakeKubernetes, wid: str, worker: int) -> dict:
    pod = fake.pod(pod_name(wid, 0, worker))
    return pod["spec"]["containers"][0]


def test_inventory_reads_each_vendors_device_plugin(fake: FakeKubernetes, tmp_path: Path) -> None:
    backend = KubernetesBackend(tmp_path / "work", image="img", api_client=fake.api_client())
    nodes = {n.id: n for n in backend.inventory()}
    assert (nodes["amd-a"].gpu_count, nodes["amd-a"].gpu_model,
            nodes["amd-a"].label(LABEL_VENDOR)) == (8, "AMD_Instinct_MI300X", "amd")
    assert (nodes["nv-b"].gpu_count, nodes["nv-b"].label(LABEL_VENDOR)) == (8, "nvidia")
    assert (nodes["gaudi-c"].gpu_count, nodes["gaudi-c"].label(LABEL_VENDOR)) == (8, "intel")


def test_a_pod_on_an_amd_node_asks_amd_gpus_and_sees_rocm_variables(
        fake: FakeKubernetes, tmp_path: Path) -> None:
    backend = KubernetesBackend(tmp_path / "work", image="img", api_client=fake.api_client())
    spec = (make_spec("mixed").workers(3).on("amd-a", "nv-b", "gaudi-c").devices(5, 6)
            .command("train").build())
    backend.launch(spec)
    amd, nvidia, gaudi = (_container(fake, "mixed", i) for i in range(3))
    env = [{e["name"]: e["value"] for e in c["env"]} for c in (amd, nvidia, gaudi)]
    assert amd["resources"]["limits"] == {"amd.com/gpu": "2"}
    assert (env[0]["ROCR_VISIBLE_DEVICES"], env[0]["HIP_VISIBLE_DEVICES"]) == ("0,1", "0,1")
    assert not any(k.startswith("CUDA_") for k in env[0])
    assert nvidia["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    assert env[1]["CUDA_VISIBLE_DEVICES"] == "0,1" and "ROCR_VISIBLE_DEVICES" not in env[1]
    assert gaudi["resources"]["limits"] == {"habana.ai/gaudi": "2"}
    assert env[2]["HABANA_VISIBLE_MODULES"] == "0,1" and "CUDA_VISIBLE_DEVICES" not in env[2]


def test_a_pinned_gpu_resource_still_counts_only_that_resource(
        fake: FakeKubernetes, tmp_path: Path) -> None:
    backend = KubernetesBackend(tmp_path / "work", image="img", api_client=fake.api_client(),
                                gpu_resource="nvidia.com/gpu")
    nodes = {n.id: n for n in backend.inventory()}
    assert (nodes["amd-a"].gpu_count, nodes["nv-b"].gpu_count) == (0, 8)
