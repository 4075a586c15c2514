"""`vla dashboard`: /api/arms from the arms' status files, the supervisor's view and the services'
own /healthz and /metrics; the G1 alarm; frames; server-sent events; and the page in a real
headless Chromium during a 2-arm fleet run, its numbers checked against /api/arms."""

from __future__ import annotations

import json
import time

import httpx
import numpy as np
import pytest

from vla.fleet.dashboard import Dashboard, DashboardThread, ServiceTarget, http_base, parse_service, request_totals
from vla.fleet.status import encode_frame

from .conftest import free_port


def status(label, **kw):
    base = {"label": label, "state": "running", "task": "wave", "episode": 0, "episodes_done": 0, "successes": 0,
            "control_hz": 29.8, "queue": 21, "queue_history": [[1.0, 30], [1.2, 25], [1.4, 21]], "rtt_ms": 12.5,
            "underflows": 0, "underflows_per_min": 0.0, "underflows_last_min": 0, "clamps": 3, "holds": 4,
            "frames": 0, "restarts": 0, "updated_at": time.time()}
    return {**base, **kw}


@pytest.fixture
def fleet_dir(tmp_path):
    for label, extra in (("arm02", {"underflows": 1, "underflows_last_min": 1}),
                         ("arm01", {"underflows": 5, "underflows_last_min": 3, "underflows_per_min": 2.5})):
        folder = tmp_path / "arms" / label
        folder.mkdir(parents=True)
        (folder / "status.json").write_text(json.dumps(status(label, **extra)))
    (tmp_path / "supervisor.json").write_text(json.dumps(
        {"arms": {"arm02": {"outcome": "restarting", "cause": "camera 'front' delivers no frames", "starts": 1}}}))
    return tmp_path


def test_api_arms_merges_the_status_files_raises_g1_and_reports_a_service_that_is_down(fleet_dir):
    down = ServiceTarget("policy", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    board = DashboardThread(Dashboard(fleet_dir, services=[down], refresh_s=0.2), "127.0.0.1", 0).start()
    try:
        with httpx.Client(base_url=board.url, timeout=10) as http:
            first = http.get("/api/arms").json()
            time.sleep(0.6)
            snap = http.get("/api/arms").json()
            assert snap["seq"] > first["seq"]
            arms = {a["label"]: a for a in snap["arms"]}
            assert [a["label"] for a in snap["arms"]] == ["arm01", "arm02"]
            assert arms["arm01"]["alarm"] is True and arms["arm02"]["alarm"] is False  # one a minute is allowed
            assert snap["g1_alarm"]["arms"] == ["arm01"] and "arm01" in snap["g1_alarm"]["text"]
            assert arms["arm02"]["outcome"] == "restarting" and "delivers no frames" in arms["arm02"]["cause"]
            (service,) = snap["services"]
            assert service["health"] == "down" and "Connect" in service["reason"]
            assert http.get("/api/arms/arm01/frame.jpg").status_code == 404
            frame = encode_frame(np.zeros((24, 32, 3), np.uint8))
            (fleet_dir / "arms" / "arm01" / "frame.jpg").write_bytes(frame)
            r = http.get("/api/arms/arm01/frame.jpg")
            assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content == frame
            assert http.get("/api/arms/bad%20label/frame.jpg").json()["error"]["code"] == "bad_label"
            with http.stream("GET", "/api/stream") as events:
                assert events.headers["content-type"] == "text/event-stream"
                lines = []
                for line in events.iter_lines():
                    lines.append(line)
                    if line.startswith("data: "):
                        break
            assert lines[0].startswith("id: ") and lines[1] == "event: arms"
            assert [a["label"] for a in json.loads(lines[2][6:])["arms"]] == ["arm01", "arm02"]
            assert http.get("/healthz").status_code == 200
    finally:
        board.stop()


def test_request_rates_come_from_the_services_own_counters():
    from vla.service.metrics import ServiceMetrics

    m = ServiceMetrics("vla_policy", "policy", "timed")
    m.requests.labels("arm01", "/ws", "ok").inc(7)
    m.requests.labels("arm02", "/ws", "ok").inc(3)
    m.requests.labels("unnamed", "/metrics", "200").inc(50)  # the dashboard's own scrapes do not count
    total, by_arm = request_totals(m.render()[0].decode())
    assert total == 10 and by_arm == {"arm01": 7, "arm02": 3}
    assert http_base("ws://h:8080") == "http://h:8080" and http_base("wss://h:1/") == "https://h:1"
    assert parse_service("rewarder=http://gpu:8000").url == "http://gpu:8000"
    with pytest.raises(ValueError, match="NAME=URL"):
        parse_service("gpu:8000")


def _same(dom_value: str, api_value) -> bool:
    if api_value is None:
        return dom_value == ""
    if isinstance(api_value, bool) or isinstance(api_value, str):
        return dom_value == str(api_value)
    return float(dom_value) == float(api_value)


@pytest.mark.slow
def test_the_page_in_chromium_shows_both_arms_with_the_numbers_of_api_arms(lab, policy, fleet_process, tmp_path):
    from vla.testing.browser import chromium_page

    port = free_port()
    fleet = fleet_process(lab(), tmp_path / "run", "--all", "--task", "wave", "--policy-url", policy.url,
                          "--dashboard", str(port), "--camera-hz", "2", "--for", "60")
    fleet.wait_for(lambda: all(fleet.status(a).get("frames", 0) >= 2 for a in ("arm01", "arm02")),
                   what="both arms running with camera frames")
    url = f"http://127.0.0.1:{port}"
    with chromium_page() as page:
        seen = {}  # every /api/arms reply the page received, by snapshot number

        def keep(response):
            if response.url.endswith("/api/arms") and response.ok:
                body = response.json()
                seen[body["seq"]] = body

        page.on("response", keep)
        page.goto(url + "/")
        page.wait_for_selector("section.arm[data-arm='arm02']", timeout=20_000)
        page.wait_for_function("document.body.dataset.seq !== undefined", timeout=20_000)
        page.wait_for_timeout(2500)  # a few polls
        # what the page shows, read in one go, with the number of the snapshot it drew
        shown = page.evaluate("""() => ({
            seq: Number(document.body.dataset.seq),
            arms: [...document.querySelectorAll('section.arm')].map(card => ({
                label: card.dataset.arm,
                cells: Object.fromEntries([...card.querySelectorAll('td[data-field]')].map(
                    td => [td.dataset.field, [td.dataset.value, td.textContent]])),
                frame: (img => img ? img.complete && img.naturalWidth : null)(card.querySelector('img.frame')),
                plotted: card.querySelectorAll('svg.queue polyline').length,
            })),
        })""")
        assert shown["seq"] in seen, (shown["seq"], sorted(seen))
        snap = seen[shown["seq"]]
        assert [a["label"] for a in snap["arms"]] == [a["label"] for a in shown["arms"]] == ["arm01", "arm02"]
        for arm, card in zip(snap["arms"], shown["arms"]):
            assert len(card["cells"]) == 12
            for field, (value, text) in card["cells"].items():
                assert _same(value, arm[field]), (arm["label"], field, value, arm[field])
            assert card["cells"]["task"][1] == "wave"
            assert float(card["cells"]["control_hz"][1]) == round(arm["control_hz"], 1)
            assert card["cells"]["queue"][1] == str(arm["queue"])
            assert arm["control_hz"] > 15 and arm["ticks"] > 30
            assert card["plotted"] == 1 and len(arm["queue_history"]) > 5
            assert card["frame"] == 64  # the camera frame was fetched and decoded
        (service,) = snap["services"]
        row = page.locator("tr[data-service='policy']")
        assert service["health"] == "ready" and row.locator("td[data-field='health']").inner_text() == "ready"
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
    # the policy server counted each arm's requests under its own label, and the dashboard shows the rate
    with httpx.Client(timeout=10) as http:
        for _ in range(20):
            snap = http.get(url + "/api/arms").json()
            if all(a.get("service_requests_per_s", {}).get("policy", 0) > 0 for a in snap["arms"]):
                break
            time.sleep(0.5)
    assert all(a["service_requests_per_s"]["policy"] > 0 for a in snap["arms"]), snap["arms"]
    assert snap["services"][0]["requests_per_s"] > 0
    fleet.proc.terminate()
    assert fleet.wait(60) == 143


def test_vla_dashboard_serves_a_fleet_folder_and_refuses_without_one(fleet_dir, tmp_path):
    import subprocess
    import sys

    (tmp_path / "lab").mkdir()
    config = tmp_path / "lab" / "vla.yaml"
    config.write_text("log_dir: logs\n")
    vla = [sys.executable, "-m", "vla", "--config", str(config), "dashboard"]
    refused = subprocess.run(vla, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "no fleet run under" in refused.stderr
    port = free_port()
    proc = subprocess.Popen([*vla, "--fleet", str(fleet_dir), "--port", str(port), "--service", "gpu=ws://127.0.0.1:1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "dashboard of" in proc.stdout.readline()
        snap = httpx.get(f"http://127.0.0.1:{port}/api/arms", timeout=10).json()
        assert [a["label"] for a in snap["arms"]] == ["arm01", "arm02"]
        assert [s["name"] for s in snap["services"]] == ["policy", "gpu"]
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert page.headers["content-type"].startswith("text/html") and 'id="initial"' in page.text
    finally:
        proc.terminate()
        proc.wait(20)
