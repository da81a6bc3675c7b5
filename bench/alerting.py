"""Alerting (E8): ingest rate, threshold → notification latency, and no loss / no duplicate
across kill -9 and a receiver that is down.  Run: ``nice -n 19 python bench/alerting.py``.

* **ingest** — Alertmanager webhooks (version 4, ``--batch`` alerts each) through
  ``AlertingService.receive`` (authentication, contract, durable write to SQLite, grouping and
  deduplication), in-process and over HTTP to ``shipwarden serve``; then the same webhooks again
  (all duplicates); then one flush of every group.
* **latency** — real Prometheus (1 s scrape and evaluation) evaluates the rules shipwarden
  generated from ``monitoring.custom`` conditions over a gauge the bench flips, and posts its
  alerts straight to ``serve``'s ``/api/v2/alerts``; the notice lands at a local webhook
  receiver (Apprise ``json://``).  Measured: flip at the source → notice received, for the firing
  and the resolved notice, and Prometheus' ``activeAt`` (the evaluation that crossed) → notice.
* **durability** — ``--alerts`` alerts (one group each) fire and then resolve, posted with
  retries as a sender does, while ``serve`` is killed with SIGKILL ``--kills`` times at random
  moments and the receiver answers 503 for ``--down`` seconds; at the end every alert must have
  exactly one firing and one resolved notice (notice ids counted at the receiver).

Figures on a shared, loaded machine are direction only: the load average is recorded beside
them.  Writes ``bench/results/alerting.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from _common import ROOT, machine_info, write_result
from tests.fixtures.alerting import start_prometheus

from shipwarden.adapters.net import free_port
from shipwarden.adapters.store.alerting_repo import AlertingRepo
from shipwarden.adapters.store.engine import make_engine, migrate
from shipwarden.adapters.store.repository import Store
from shipwarden.domain.alerting import AlertingPolicy
from shipwarden.domain.alerting.model import fingerprint
from shipwarden.services.alerting.pipeline import AlertPipeline
from shipwarden.services.alerting.service import AlertingService

TOKEN = "bench-token-0123456789abcdef"
CLI = [sys.executable, "-m", "shipwarden.entrypoints.cli"]


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return round(s[min(len(s) - 1, int(q * len(s)))], 3)


def summary(xs: list[float]) -> dict[str, Any]:
    return {
        "n": len(xs),
        "p50": pct(xs, 0.5),
        "p90": pct(xs, 0.9),
        "p99": pct(xs, 0.99),
        "max": round(max(xs), 3) if xs else None,
    }


# -- a receiver for Apprise's json:// ---------------------------------------------------------------
class Receiver:
    def __init__(self) -> None:
        self.got: list[tuple[float, dict[str, Any]]] = []
        self.down = False
        self.refused = 0
        self.lock = threading.Lock()
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                if outer.down:
                    with outer.lock:
                        outer.refused += 1
                    self.send_response(503)
                else:
                    with outer.lock:
                        outer.got.append((time.time(), json.loads(body or b"{}")))
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self.port = free_port()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), H)
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/notify"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# -- shipwarden serve -------------------------------------------------------------------------------
def policy_text(services: list[str], sections: str) -> str:
    lines = ["apiVersion: shipwarden/v1", "team: bench", "services:"]
    for s in services:
        p = free_port()
        lines += [
            f"  - name: {s}",
            "    run:",
            '      command: ["{python}", "-c", "pass"]',
            "      portEnv: PORT",
            "    routing:",
            f"      port: {p}",
            f"      previewPort: {p + 1 if p < 65535 else p - 1}",
            "    strategy:",
            "      blueGreen: {autoPromotion: true}",
        ]
    return "\n".join(lines) + "\n" + sections


class Serve:
    def __init__(self, root: Path, policy: Path, env: dict[str, str]) -> None:
        self.root, self.port = root, free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPWARDEN_")}
        self.env.update(
            SHIPWARDEN_STATE_DIR=str(root / "state"),
            SHIPWARDEN_POLICY=str(policy),
            SHIPWARDEN_ACTOR="bench",
            SHIPWARDEN_SECRET_ALERT_WEBHOOK_TOKEN=TOKEN,
            **env,
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts: list[float] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> None:
        t = time.monotonic()
        log = open(self.root / "serve.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*CLI, "serve", "--insecure-http", "--port", str(self.port), "--no-controller"],
            env=self.env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    self.starts.append(time.monotonic() - t)
                    return
            except httpx.HTTPError:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"serve exited {self.proc.returncode}; see {self.root / 'serve.log'}"
                    ) from None
            time.sleep(0.1)
        raise RuntimeError("serve did not come up")

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill9()


def post(url: str, path: str, doc: Any, *, retry_until: float) -> int:
    """POST as a sender does: until a 200 (a refusal or a dead server is retried)."""
    body = json.dumps(doc).encode()
    hdr = {"content-type": "application/json", "authorization": f"Bearer {TOKEN}"}
    tries = 0
    while True:
        tries += 1
        try:
            r = httpx.post(url + path, content=body, headers=hdr, timeout=30)
            if r.status_code == 200:
                return tries
        except httpx.HTTPError:
            pass
        if time.monotonic() > retry_until:
            raise RuntimeError(f"POST {path} never accepted")
        time.sleep(0.2)


# -- ingest -----------------------------------------------------------------------------------------
def webhook(i0: int, n: int, status: str = "firing", *, with_fingerprint: bool = True) -> dict[str, Any]:
    """Alertmanager's webhook of ``n`` alerts; each carries its ``fingerprint``, as Alertmanager's
    always does (``with_fingerprint=False``: empty, shipwarden hashes the labels itself)."""
    alerts = []
    for i in range(i0, i0 + n):
        labels = {
            "alertname": f"Bench{i % 50}",
            "service": f"s{i % 20}",
            "instance": f"host-{i}",
            "severity": "warning" if i % 3 else "critical",
        }
        alerts.append(
            {
                "status": status,
                "labels": labels,
                "annotations": {"summary": f"value {i}"},
                "startsAt": "2026-12-03T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus/graph",
                "fingerprint": fingerprint(labels) if with_fingerprint else "",
            }
        )
    return {
        "version": "4",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "shipwarden",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "",
        "alerts": alerts,
    }


INGEST_POLICY = {
    "receivers": [{"name": "ops", "apprise": ["OPS"]}, {"name": "pager", "pagerduty": ["PD"]}],
    "route": {
        "receiver": "ops",
        "groupBy": ["alertname", "service"],
        "groupWait": "0s",
        "routes": [
            {"match": {"severity": "critical"}, "receiver": "pager", "continue": True},
            {"receiver": "ops"},
        ],
    },
}


def bench_ingest(root: Path, total: int, batch: int) -> dict[str, Any]:
    engine = make_engine(f"sqlite:///{root / 'ingest.db'}")
    migrate(engine)
    store = Store(engine)
    pipeline = AlertPipeline(
        AlertingRepo(store), AlertingPolicy.model_validate(INGEST_POLICY), channel_for=lambda t: None
    )  # type: ignore[arg-type,return-value]
    svc = AlertingService(pipeline, None, token=lambda: TOKEN)
    hdr = {"authorization": f"Bearer {TOKEN}"}
    bodies = [json.dumps(webhook(i, batch)).encode() for i in range(0, total, batch)]
    t, c = time.perf_counter(), time.process_time()
    changed = sum(svc.receive(hdr, b, "webhook")["changed"] for b in bodies)
    first, first_cpu = time.perf_counter() - t, time.process_time() - c
    t, c = time.perf_counter(), time.process_time()
    again = sum(svc.receive(hdr, b, "webhook")["changed"] for b in bodies)
    dup, dup_cpu = time.perf_counter() - t, time.process_time() - c
    t, c = time.perf_counter(), time.process_time()
    notices = 0
    while True:
        n = pipeline.flush(limit=500)
        notices += n
        if (
            not store.engine.connect()
            .execute(  # noqa: SIM102
                __import__("sqlalchemy").text(
                    "select count(*) from alerting_groups where next_flush_at <= :n"
                ),
                {"n": time.time()},
            )
            .scalar()
        ):
            break
    flush, flush_cpu = time.perf_counter() - t, time.process_time() - c
    engine.dispose()
    return {
        "alerts": total,
        "batch": batch,
        "changed_first": changed,
        "changed_again": again,
        "first_alerts_per_s": round(total / first),
        "first_alerts_per_cpu_s": round(total / first_cpu),
        "duplicates_alerts_per_cpu_s": round(total / dup_cpu),
        "duplicates_alerts_per_s": round(total / dup),
        "groups_notified": notices,
        "flush_s": round(flush, 2),
        "flush_cpu_s": round(flush_cpu, 2),
        "flush_cpu_ms_per_group": round(1000 * flush_cpu / max(1, notices), 1),
        "cpu_us_per_alert_first": round(1e6 * first_cpu / total),
        "load": load(),
    }


def bench_ingest_http(root: Path, total: int, batch: int, threads: int = 4) -> dict[str, Any]:
    policy = root / "ingest-policy.yaml"
    sections = "alerting: " + json.dumps(INGEST_POLICY) + "\n"
    policy.write_text(policy_text(["web"], sections))
    serve = Serve(root / "ingest-serve", policy, {"SHIPWARDEN_SECRET_OPS": "json://127.0.0.1:9/x"})
    (root / "ingest-serve").mkdir()
    serve.start()
    try:
        bodies = [webhook(1_000_000 + i, batch) for i in range(0, total, batch)]
        done: list[int] = []

        def worker(k: int) -> None:
            for b in bodies[k::threads]:
                post(serve.url, "/alerting/webhook", b, retry_until=time.monotonic() + 60)
                done.append(1)

        t = time.perf_counter()
        ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
        for th in ts:
            th.start()
        for th in ts:
            th.join()
        took = time.perf_counter() - t
    finally:
        serve.stop()
    return {
        "alerts": total,
        "batch": batch,
        "threads": threads,
        "alerts_per_s": round(total / took),
        "load": load(),
    }


# -- latency ----------------------------------------------------------------------------------------
class Gauges:
    def __init__(self, services: list[str]) -> None:
        self.values = dict.fromkeys(services, 0.0)
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                body = "".join(
                    f'bench_value{{service="{s}"}} {v}\n' for s, v in outer.values.items()
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a: Any) -> None:
                pass

        self.port = free_port()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), H)
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


def _wait(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return False


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (``/proc/PID/stat``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _crossing(prom_url: str, service: str, since: float, high: bool) -> float | None:
    """When Prometheus' series first crossed after ``since``: the timestamp of the first scraped
    sample on the other side of the threshold (0.5) — the crossing as the monitoring sees it."""
    q = f'bench_value{{service="{service}"}}[30s]'
    body = httpx.get(f"{prom_url}/api/v1/query", params={"query": q}, timeout=5).json()
    for series in body.get("data", {}).get("result", []):
        for ts, value in series["values"]:
            if float(ts) >= since and (float(value) >= 0.5) == high:
                return float(ts)
    return None


def _stages(db: Path, actives: list[tuple[str, float, float]]) -> dict[str, Any]:
    """Split Prometheus' ``activeAt`` → notice received at the ``alert.notice`` audit entry (the
    flush that queued it): activeAt → flushed (Prometheus' send, HTTP, ingest, wake-up, flush) and
    flushed → received (outbox claim, Apprise, the receiver)."""
    from datetime import datetime

    store = Store(make_engine(f"sqlite:///{db}"))
    try:
        notices = [
            (e.service, datetime.fromisoformat(e.ts.replace("Z", "+00:00")).timestamp())
            for e in store.audit_entries(action="alert.notice")
            if (e.detail or {}).get("status") == "firing"
        ]
    finally:
        store.engine.dispose()
    to_flush, to_receiver = [], []
    for service, active, received in actives:
        at = [t for s, t in notices if s == service and active - 0.05 <= t <= received]
        if at:
            to_flush.append(at[0] - active)
            to_receiver.append(received - at[0])
    return {
        "activeAt_to_flushed_s": summary(to_flush),
        "flushed_to_received_s": summary(to_receiver),
    }


def bench_latency(root: Path, rounds: int, per_round: int) -> dict[str, Any]:
    services = [f"svc{i}" for i in range(per_round)]
    receiver = Receiver()
    gauges = Gauges(services)
    rules = root / "rules.yml"
    sections = (
        "alerting:\n  receivers: [{name: hook, apprise: [HOOK]}]\n"
        "  route: {receiver: hook, groupBy: [alertname, service], groupWait: 0s, groupInterval: 1s}\n"
        "monitoring:\n  evaluationInterval: 1s\n  services:\n"
        + "".join(
            f"    {s}:\n      custom:\n        - {{name: BenchHigh, "
            f"promql: 'max(bench_value{{service=\"{s}\"}})', critical: 0.5, for: 0s}}\n"
            for s in services
        )
    )
    policy = root / "latency-policy.yaml"
    policy.write_text(policy_text(services, sections))
    (root / "latency-serve").mkdir()
    serve = Serve(
        root / "latency-serve",
        policy,
        {"SHIPWARDEN_SECRET_HOOK": receiver.url(), "SHIPWARDEN_PROMETHEUS_RULES_FILE": str(rules)},
    )
    r = subprocess.run([*CLI, "alerts", "rules", "--write"], env=serve.env, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    serve.start()
    prom = start_prometheus(
        root / "prom",
        [{"job_name": "bench", "static_configs": [{"targets": [f"127.0.0.1:{gauges.port}"]}]}],
        rule_files=[rules],
    )
    # Prometheus posts its alerts to shipwarden directly (as to an Alertmanager), with the token
    cfg = json.loads((root / "prom" / "prometheus.yml").read_text())
    cfg["alerting"] = {
        "alertmanagers": [
            {
                "static_configs": [{"targets": [f"127.0.0.1:{serve.port}"]}],
                "authorization": {"type": "Bearer", "credentials": TOKEN},
            }
        ]
    }
    (root / "prom" / "prometheus.yml").write_text(json.dumps(cfg))
    httpx.post(f"{prom.url}/-/reload", timeout=30)
    fire, resolve, eval_to_notice = [], [], []
    cross_fire: list[float] = []  # from the first scraped sample over the threshold
    cross_resolve: list[float] = []
    actives: list[tuple[str, float, float]] = []  # (service, activeAt, notice received)
    assert serve.proc is not None
    cpu0 = _cpu_s(serve.proc.pid)
    try:
        time.sleep(3)
        for rnd in range(rounds + 1):  # round 0 warms up (the first page imports Apprise's plugins)
            chosen = services[:]
            t_flip: dict[str, float] = {}
            for s in chosen:
                time.sleep(random.uniform(0, 0.3))
                gauges.values[s] = 1.0
                t_flip[s] = time.time()

            def got(kind: str, since: float) -> dict[str, float]:
                out: dict[str, float] = {}
                with receiver.lock:
                    for at, body in receiver.got:
                        m = re.search(r"\] (svc\d+): BenchHigh", body.get("title", ""))
                        if at >= since and m and (("RESOLVED" in body["title"]) == (kind == "resolved")):
                            out.setdefault(m.group(1), at)
                return out

            start = min(t_flip.values())
            if not _wait(lambda start=start, chosen=chosen: len(got("firing", start)) == len(chosen), 30):
                raise RuntimeError(f"firing notices missing: {got('firing', start)}")
            arrived = got("firing", start)
            if rnd:
                fire += [arrived[s] - t_flip[s] for s in chosen]
                for s in chosen:
                    c = _crossing(prom.url, s, t_flip[s], True)
                    if c is not None:
                        cross_fire.append(arrived[s] - c)
            active = httpx.get(f"{prom.url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
            for a in active:
                s = a["labels"].get("service")
                if rnd and s in arrived and a.get("activeAt"):
                    when = a["activeAt"].replace("Z", "+00:00")
                    from datetime import datetime

                    eval_to_notice.append(arrived[s] - datetime.fromisoformat(when).timestamp())
                    actives.append((s, datetime.fromisoformat(when).timestamp(), arrived[s]))
            t_back: dict[str, float] = {}
            for s in chosen:
                time.sleep(random.uniform(0, 0.3))
                gauges.values[s] = 0.0
                t_back[s] = time.time()
            start = min(t_back.values())
            if not _wait(lambda start=start, chosen=chosen: len(got("resolved", start)) == len(chosen), 30):
                raise RuntimeError(f"resolved notices missing: {got('resolved', start)}")
            back = got("resolved", start)
            if rnd:
                resolve += [back[s] - t_back[s] for s in chosen]
                for s in chosen:
                    c = _crossing(prom.url, s, t_back[s], False)
                    if c is not None:
                        cross_resolve.append(back[s] - c)
            time.sleep(random.uniform(0.5, 1.5))
        serve_cpu = _cpu_s(serve.proc.pid) - cpu0
        metrics = httpx.get(f"{serve.url}/metrics", timeout=10).text
        posts = {
            line.split("status=")[1].split('"')[1]: float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("shipwarden_http_requests_total") and 'route="/api/v2/alerts"' in line
        }
    finally:
        prom.stop()
        serve.stop()
        receiver.close()
        gauges.httpd.shutdown()
    stages = _stages(root / "latency-serve" / "state" / "shipwarden.db", actives)
    return {
        "rounds": rounds,
        "warmup_rounds": 1,
        "services": per_round,
        "scrape_and_eval_interval_s": 1,
        "flip_to_firing_notice_s": summary(fire),
        "flip_to_resolved_notice_s": summary(resolve),
        "crossing_sample_to_firing_notice_s": summary(cross_fire),
        "crossing_sample_to_resolved_notice_s": summary(cross_resolve),
        "prometheus_activeAt_to_notice_s": summary(eval_to_notice),
        "prometheus_posts_by_status": posts,
        **stages,
        "serve_cpu_s": round(serve_cpu, 2),
        "serve_cpu_ms_per_notice": round(1000 * serve_cpu / max(1, 2 * (rounds + 1) * per_round), 1),
        "load": load(),
    }


# -- durability -------------------------------------------------------------------------------------
def bench_durability(root: Path, n: int, kills: int, down: float, batch: int = 20) -> dict[str, Any]:
    receiver = Receiver()
    sections = (
        "alerting:\n  receivers: [{name: hook, apprise: [HOOK]}]\n"
        "  route: {receiver: hook, groupBy: [alertname, instance], groupWait: 0s, groupInterval: 1s}\n"
    )
    policy = root / "durability-policy.yaml"
    policy.write_text(policy_text(["web"], sections))
    (root / "durability-serve").mkdir()
    serve = Serve(root / "durability-serve", policy, {"SHIPWARDEN_SECRET_HOOK": receiver.url()})
    serve.start()
    now = time.time()

    def alerts(i0: int, resolved: bool) -> list[dict[str, Any]]:
        iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1 if resolved else now + 3600))
        return [
            {
                "labels": {
                    "alertname": "Durable",
                    "instance": f"i{i}",
                    "service": "web",
                    "severity": "critical",
                },
                "annotations": {},
                "startsAt": iso,
                "endsAt": end,
            }
            for i in range(i0, min(n, i0 + batch))
        ]

    sent = {"firing": 0, "resolved": 0}
    posts_retried = [0]
    stop_sending = threading.Event()

    def sender() -> None:
        for phase in ("firing", "resolved"):
            for i0 in range(0, n, batch):
                tries = post(
                    serve.url,
                    "/api/v2/alerts",
                    alerts(i0, phase == "resolved"),
                    retry_until=time.monotonic() + 600,
                )
                posts_retried[0] += tries - 1
                sent[phase] += min(batch, n - i0)
                time.sleep(0.05)
            if phase == "firing":
                time.sleep(5)  # let some firing notices out before the resolves
        stop_sending.set()

    killed_at: list[float] = []
    th = threading.Thread(target=sender, daemon=True)
    t0 = time.monotonic()
    th.start()
    down_at = random.uniform(5, 20)
    down_done = False
    try:
        for _ in range(kills):
            time.sleep(random.uniform(0.5, 4.0))
            if not down_done and time.monotonic() - t0 > down_at:
                receiver.down = True
                threading.Timer(down, lambda: setattr(receiver, "down", False)).start()
                down_done = True
            serve.kill9()
            killed_at.append(round(time.monotonic() - t0, 1))
            serve.start()
        if not down_done:
            receiver.down = True
            time.sleep(down)
            receiver.down = False
        th.join(900)
        expected = 2 * n

        def ids() -> list[str]:
            with receiver.lock:
                return [
                    m.group(1)
                    for _, b in receiver.got
                    if (m := re.search(r"notice: (\S+)", b.get("message", "")))
                ]

        _wait(lambda: len(set(ids())) >= expected, 600)
        time.sleep(3)  # anything still to come would be a duplicate
        got = ids()
        per = Counter(got)
        titles = Counter()
        with receiver.lock:
            for _, b in receiver.got:
                titles["resolved" if "RESOLVED" in b.get("title", "") else "firing"] += 1
    finally:
        serve.stop()
        receiver.close()
    return {
        "alerts": n,
        "kills": len(killed_at),
        "killed_at_s": killed_at,
        "receiver_down_s": down,
        "receiver_refusals": receiver.refused,
        "sender_retries": posts_retried[0],
        "expected_notices": expected,
        "distinct_notices": len(per),
        "lost": expected - len(per),
        "duplicated": sum(c - 1 for c in per.values() if c > 1),
        "by_kind": dict(titles),
        "serve_start_s": summary(serve.starts),
        "wall_s": round(time.monotonic() - t0, 1),
        "load": load(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["all", "ingest", "latency", "durability"], default="all")
    ap.add_argument("--ingest-alerts", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--services", type=int, default=5)
    ap.add_argument("--alerts", type=int, default=1000)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--down", type=float, default=60.0)
    args = ap.parse_args()
    out_path = ROOT / "bench" / "results" / "alerting.json"
    result: dict[str, Any] = json.loads(out_path.read_text()) if out_path.exists() else {}
    result["machine"] = machine_info()
    with tempfile.TemporaryDirectory(prefix="sw-bench-alerting-") as tmp:
        root = Path(tmp)

        def done(part: str, value: dict[str, Any]) -> None:
            result[part] = {**value, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            print(part, value, flush=True)
            write_result("alerting", result)  # after each part: a later failure keeps the figures

        if args.part in ("all", "ingest"):
            done("ingest", bench_ingest(root, args.ingest_alerts, args.batch))
            done("ingest_http", bench_ingest_http(root, args.ingest_alerts // 2, args.batch))
        if args.part in ("all", "latency"):
            done("latency", bench_latency(root, args.rounds, args.services))
        if args.part in ("all", "durability"):
            done("durability", bench_durability(root, args.alerts, args.kills, args.down))


if __name__ == "__main__":
    main()
