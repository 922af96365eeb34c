"""deploy/helm/corral renders to valid Kubernetes objects that fit together (issue 14).

No helm binary here: the templates are rendered by `helm_render`, a stand-in for the subset of
Go templates the chart uses (it refuses anything else). Each object is then checked against
the official Kubernetes client's generated models (`kubernetes.client.models`, pydantic, extra
fields forbidden): every field name and type at every depth, and the fields they require. On top: the references between the
objects (selectors, Secret and ConfigMap names, Service ports, Ingress backends), that the pool
file in the ConfigMap is a valid corral pool, and that every `corral up` argument is a real
option of that command. Not checked: what helm itself adds (helm lint, schema of values),
an API server's admission, a real install."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from .helm_render import render

kubernetes = pytest.importorskip("kubernetes")
from kubernetes import client as k8s  # noqa: E402

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "corral"


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _render(overrides: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    values = _merge(yaml.safe_load((CHART / "values.yaml").read_text()), overrides or {})
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    ctx = {"Values": values, "Release": {"Name": "prod", "Namespace": "default"},
           "Chart": {"Name": chart["name"], "AppVersion": chart["appVersion"]}}
    docs = []
    for template in sorted((CHART / "templates").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(render(template.read_text(), ctx)) if d]
    render((CHART / "templates" / "NOTES.txt").read_text(), ctx)  # renders too
    return docs


def _model(obj: dict[str, Any]) -> str:
    version = obj["apiVersion"].split("/")[-1]
    return f"{version.capitalize()}{obj['kind']}"


VARIANTS = {
    "defaults": {},
    "ingress-and-own-secret": {"ingress": {"enabled": True, "className": "nginx",
                                           "tls": [{"secretName": "t", "hosts": ["c.example"]}],
                                           "annotations": {"a": "b"}},
                               "postgres": {"existingSecret": "corral-db"},
                               "api": {"resources": {"limits": {"cpu": "2"}}}},
}


@pytest.fixture(params=list(VARIANTS), ids=list(VARIANTS))
def objects(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return _render(VARIANTS[request.param])


def test_every_object_is_a_valid_kubernetes_object(objects: list[dict[str, Any]]) -> None:
    """The client's models forbid unknown fields at every depth, check types strictly and
    require what the API requires (a test below shows they catch a misspelt field)."""
    for obj in objects:
        getattr(k8s.models, _model(obj)).model_validate(obj)


def test_the_check_catches_a_misspelt_field() -> None:
    deployment = next(o for o in _render() if o["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(ValueError, match="imagePullPolicyy"):
        k8s.models.V1Deployment.model_validate(deployment)


def _by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def test_the_objects_refer_to_each_other_rightly(objects: list[dict[str, Any]]) -> None:
    deployments = _by_kind(objects, "Deployment")
    services = _by_kind(objects, "Service")
    assert set(deployments) == {"prod-corral-api", "prod-corral-scheduler"}
    secret_names = set(_by_kind(objects, "Secret")) | {"corral-db"}
    for d in deployments.values():
        pod = d["spec"]["template"]
        assert d["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        (container,) = pod["spec"]["containers"]
        for env in container["env"]:
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            assert ref is None or ref["name"] in secret_names
        maps = {v["configMap"]["name"] for v in pod["spec"]["volumes"] if "configMap" in v}
        assert maps <= set(_by_kind(objects, "ConfigMap"))
    for s in services.values():
        targets = [d for d in deployments.values()
                   if s["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert len(targets) == 1, s["metadata"]["name"]
        ports = {p["name"] for p in targets[0]["spec"]["template"]["spec"]["containers"][0]["ports"]}
        assert {p["targetPort"] for p in s["spec"]["ports"]} <= ports
    for ingress in _by_kind(objects, "Ingress").values():
        for path in ingress["spec"]["rules"][0]["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] in services
            assert backend["port"]["name"] in {p["name"] for p in services[backend["name"]]["spec"]["ports"]}


def test_the_gateway_service_reaches_the_scheduler_pods_and_the_api_the_replicas() -> None:
    objects = _render()
    services = _by_kind(objects, "Service")
    assert services["prod-corral-gateway"]["spec"]["selector"]["app.kubernetes.io/component"] == "scheduler"
    assert services["prod-corral-api"]["spec"]["selector"]["app.kubernetes.io/component"] == "api"
    args = {n: d["spec"]["template"]["spec"]["containers"][0]["args"]
            for n, d in _by_kind(objects, "Deployment").items()}
    assert "--no-scheduler" in args["prod-corral-api"]
    assert "--no-scheduler" not in args["prod-corral-scheduler"]


def test_the_corral_up_arguments_are_its_options(objects: list[dict[str, Any]]) -> None:
    import typer

    from corral.cli.up import up

    app = typer.Typer()
    app.command()(up)
    command = typer.main.get_command(app)
    for d in _by_kind(objects, "Deployment").values():
        argv = d["spec"]["template"]["spec"]["containers"][0]["args"]
        assert argv[0] == "up"
        command.make_context("up", list(argv[1:]))  # raises on an unknown option or bad value


def test_the_pool_file_is_a_valid_pool(objects: list[dict[str, Any]]) -> None:
    from corral.spec import PoolSpec

    (pool_map,) = _by_kind(objects, "ConfigMap").values()
    PoolSpec.model_validate(yaml.safe_load(pool_map["data"]["pool.yaml"]))


def test_no_secret_is_made_when_one_is_named() -> None:
    assert not _by_kind(_render(VARIANTS["ingress-and-own-secret"]), "Secret")
    assert not _by_kind(_render(), "Ingress")  # off by default
