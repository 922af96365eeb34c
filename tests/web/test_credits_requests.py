"""The Credits page's holds and grants in one request each (issue 14): GET /v1/ledger/holds and
GET /v1/ledger/grants answer for every queue the caller may see, exactly what the per-queue
routes answer put together; a member never sees another queue's. The page's own requests are
checked in Chromium (tests/web/test_browser_first_hour.py)."""

from __future__ import annotations

from typing import Any

from .rig import Dash


def _get(dash: Dash, path: str, who: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    r = dash.client.get(path, headers=who, params=params)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert isinstance(answer, list)
    return answer


def test_every_visible_queues_holds_and_grants_in_one_request(dash: Dash) -> None:
    for queue, amount in (("team-a", "100.00"), ("team-b", "50.00")):
        r = dash.client.post("/v1/ledger/grants", headers=dash.admin,
                             json={"queue": queue, "amount": amount})
        assert r.status_code == 201, r.text
    held = [dash.submit(who, queue=queue, gpus=1, gpu_models=["H100"], max_runtime="1h")
            for who, queue in ((dash.ann, "team-a"), (dash.bob, "team-b"))]
    dash.step()
    for wid in held:
        dash.backend.start(wid)
    dash.step()

    for who, queues in ((dash.admin, ["team-a", "team-b"]), (dash.ann, ["team-a"]),
                        (dash.bob, ["team-b"])):
        for kind, params in (("holds", {"open_only": True}), ("grants", {})):
            together = _get(dash, f"/v1/ledger/{kind}", who, **params)
            one_by_one = [x for q in queues
                          for x in _get(dash, f"/v1/ledger/queues/{q}/{kind}", dash.admin,
                                        **params)]
            key = "ref" if kind == "holds" else "key"
            assert sorted(x[key] for x in together) == sorted(x[key] for x in one_by_one)
            assert {x["queue"] for x in together} == set(queues), (kind, queues)
    assert {h["workload_id"] for h in _get(dash, "/v1/ledger/holds", dash.admin,
                                           open_only=True)} == set(held)
