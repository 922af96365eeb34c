"""The prober against real replicas: it moves them between starting, ready and unhealthy by
their /healthz, reports the ones that stayed unhealthy, leaves draining ones alone. One round
is `probe_once()`: no sleeping, no timing."""

from __future__ import annotations

import httpx

from corral.gateway import Prober, ProbeSpec, ReplicaState, RouteTable

from .harness import closed_port, replica, run

S = ReplicaState


def test_probes_move_replicas_by_their_thresholds_and_report_stuck_ones() -> None:
    async def main() -> None:
        reported: list[tuple[str, str]] = []
        spec = ProbeSpec(success_threshold=2, failure_threshold=2, startup_failure_threshold=3,
                         replace_after=2, timeout_s=5)
        dead = f"http://127.0.0.1:{closed_port()}"
        async with replica("a") as (ua, a), replica("b") as (ub, _), \
                httpx.AsyncClient() as client:
            table = RouteTable()
            table.set_service("toy")
            table.set_replica("toy", "a", ua)
            table.set_replica("toy", "dead", dead)
            table.set_replica("toy", "b", ub, S.DRAINING)
            prober = Prober(table, client, on_unhealthy=lambda s, r: reported.append((s, r)))
            prober.set_spec("toy", spec)

            def states() -> dict[str, str]:
                return {r.id: r.state.value for r in table.service("toy").replicas.values()}  # type: ignore[union-attr]

            history = []
            for healthy in (True, True, False, False, False, False, True, True):
                a.healthy = healthy
                await prober.probe_once()
                history.append(states())
            for rid in ("a", "dead"):  # both broke a stream off; only "a" answers its probe
                table.mark_suspect("toy", rid, 1e12)
            await prober.probe_once()
            suspects = {r.id for r in table.service("toy").replicas.values()  # type: ignore[union-attr]
                        if r.suspect_until}
        assert suspects == {"dead"}
        assert [h["a"] for h in history] == ["starting", "ready", "ready", "unhealthy",
                                             "unhealthy", "unhealthy", "unhealthy", "ready"]
        assert [h["dead"] for h in history][:3] == ["starting", "starting", "unhealthy"]
        assert {h["b"] for h in history} == {"draining"}  # never probed back to ready
        # each reported once, after replace_after failures in the unhealthy state
        assert sorted(reported) == [("toy", "a"), ("toy", "dead")]
        assert prober.stuck() == [("toy", "dead")]  # a recovered
    run(main())


def test_a_probe_port_and_path_other_than_the_traffic_ones() -> None:
    async def main() -> None:
        async with replica("a") as (ua, _), httpx.AsyncClient() as client:
            port = int(ua.rsplit(":", 1)[1])
            table = RouteTable()
            table.set_service("toy")
            table.set_replica("toy", "a", f"http://127.0.0.1:{closed_port()}")
            table.set_replica("toy", "wrong-path", ua)
            prober = Prober(table, client, ProbeSpec(port=port))
            prober.set_spec("toy", ProbeSpec(port=port, success_threshold=1))
            await prober.probe_once()
            ready_via_port = table.replica("toy", "a").state  # type: ignore[union-attr]
            prober.set_spec("toy", ProbeSpec(path="/nowhere", startup_failure_threshold=1))
            table.set_state("toy", "wrong-path", S.STARTING)
            await prober.probe_once()
        assert ready_via_port is S.READY  # probed on `port`, not on the URL's closed one
        assert table.replica("toy", "wrong-path").state is S.UNHEALTHY  # type: ignore[union-attr]
    run(main())
