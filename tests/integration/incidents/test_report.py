"""The post-incident report: HTML opened in real headless Chromium (screenshot kept as a CI artefact),
the PDF Chromium printed read back with pypdf, the JSON checked against the audit chain."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from pypdf import PdfReader

from shipwarden.adapters.metrics.router_history import SampleHistory
from shipwarden.adapters.reports.incident import ChromiumReportWriter, chromium, render_html, run_chromium
from shipwarden.adapters.store.incidents_repo import analysis_samples
from shipwarden.domain.incidents import verify_report
from shipwarden.domain.rollout import Phase
from shipwarden.services.incidents import IncidentReports
from tests.integration.incidents.conftest import World

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"


def _samples(w: World, dep_id: str, start: float, n: int, bad_from: float) -> None:
    """Judge samples as the analysis controller stores them: 10 s intervals, errors after ``bad_from``."""
    for i in range(n):
        t = start + 10 * i
        errors = 40 if t >= bad_from else 0
        w.store.record_analysis(dep_id, key="bg", kind="judge", name="judge", at=t, step_index=0,
                                baseline={"t": t, "requests": 500, "errors": 0},
                                canary={"t": t, "requests": 500, "errors": errors})  # fmt: skip


def _incident_with_history(w: World) -> tuple[str, str]:
    w.deploy("checkout", "v2")
    w.clock.advance(1800)
    start = w.clock.t
    bad = w.deploy("checkout", "v3", frm="v2", phases=(Phase.STARTING, Phase.CANARY_STEP))
    onset = w.clock.advance(120)
    _samples(w, bad.id, start, 60, onset.timestamp())
    w.clock.advance(45)
    w.alerting.change("HighErrorRate", service="checkout", status="firing", starts_at=onset,
                      annotations={"summary": "<script>alert(1)</script> 5xx above 4 %"})  # fmt: skip
    [inc] = w.incidents.find()
    w.clock.advance(30)
    w.incidents.acknowledge(inc.id, actor="carol")
    w.incidents.set_status(inc.id, "identified", actor="carol", note="v3 canary")
    w.clock.advance(60)
    w.incidents.set_status(inc.id, "monitoring", actor="carol")
    w.incidents.add_item(inc.id, "gate canaries on 5xx ratio", actor="carol", owner="dave", due="2027-02-01")
    w.incidents.set_notes(inc.id, "root_cause", "v3 dropped the connection pool size", actor="carol")
    return inc.id, bad.id


def test_report_html_pdf_and_json(world: World, tmp_path: Path) -> None:
    if chromium() is None:
        pytest.skip("Debian's chromium is not installed (make sysdeps installs it)")
    w = world
    w.incidents.metrics = SampleHistory(lambda s, a, b: analysis_samples(w.store, s, a, b))
    inc_id, bad_id = _incident_with_history(w)
    reports = IncidentReports(w.incidents, ChromiumReportWriter(require_pdf=True))
    files = reports.write(inc_id, tmp_path / "report", actor="carol")
    doc = json.loads(files.json.read_text())
    # the figures
    assert doc["times"]["time_to_detect_s"] == 45.0 and doc["times"]["time_to_acknowledge_s"] == 30.0
    assert doc["times"]["time_to_restore_s"] == 135.0
    assert doc["affected"]["source"] == "store samples (analysis)"
    assert doc["affected"]["failed"] == 40 * 13  # 10 s samples in (onset, restored]
    top = doc["correlation"]["suspects"][0]
    assert top["ref"] == f"deployment:{bad_id}" and not doc["correlation"]["no_change"]
    assert [a["title"] for a in doc["action_items"]] == ["gate canaries on 5xx ratio"]
    # every timeline line is an audit entry of the chain
    chain = {e.seq: e.hash for e in w.audit.entries()}
    assert doc["timeline"] and verify_report(doc, chain) == []
    # HTML: escaped, self-contained
    html = files.html.read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert 'src="data:image/png;base64,' in html and "http://" not in html and "https://" not in html
    for section in ("Summary", "Impact and response", "Suspected triggers", "Key metrics", "Timeline",
                    "Root cause", "Action items", "Lessons learned"):  # fmt: skip
        assert f">{section}</h2>" in html
    # the PDF Chromium printed
    reader = PdfReader(str(files.pdf))
    text = "\n".join(p.extract_text() or "" for p in reader.pages)
    # ids and words copy out as typed: no ﬀ/ﬁ/ﬂ ligature glyphs ("inc-…-97a2ff" came out as "97a2ﬀ")
    assert not [c for c in text if "\ufb00" <= c <= "\ufb06"], "ligatures in the PDF's text"
    assert len(reader.pages) >= 2 and inc_id in text and "Suspected triggers" in text and bad_id in text
    # opened in headless Chromium: a screenshot kept for CI
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "incident-report.png"
    shot.unlink(missing_ok=True)
    binary = chromium()
    assert binary is not None
    run_chromium(binary, [f"--screenshot={shot}", "--window-size=1280,2400", files.html.resolve().as_uri()])
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    shutil.copy(files.pdf, ARTIFACTS / "incident-report.pdf")
    print(f"\nreport screenshot: {shot}\nreport PDF: {ARTIFACTS / 'incident-report.pdf'}")
    # writing it was audited
    [entry] = list(w.audit.entries(action="incident.report"))
    assert entry.detail["incident"] == inc_id and entry.detail["pdf"] is True


def test_report_without_metrics_or_chromium_still_writes_html(world: World, tmp_path: Path) -> None:
    w = world
    inc = w.incidents.open(title="by hand", service="checkout", severity="sev4", actor="bob",
                           onset=w.clock.now() - timedelta(minutes=5))  # fmt: skip
    reports = IncidentReports(w.incidents, ChromiumReportWriter(binary=None))
    reports.writer.binary = None  # type: ignore[union-attr]
    files = reports.write(inc.id, tmp_path / "r", actor="bob")
    assert files.pdf is None and files.plots == ()
    html = files.html.read_text()
    assert "No metric history: none (no metric source configured)" in html
    assert "no change caused this" in html
    doc = json.loads(files.json.read_text())
    assert doc["affected"] is None and doc["times"]["open"] is True


def test_report_template_escapes_everything_people_and_alerts_wrote() -> None:
    evil = '"><img src=x onerror=alert(1)>'
    doc = {
        "format": "shipwarden.incident-report.v1", "created_at": "2027-01-01T00:00:00.000000Z",
        "incident": {"id": "inc-20270101-abcdef", "title": evil, "service": evil, "severity": "sev1",
                     "status": "resolved", "commander": evil, "onset_at": "x", "detected_at": "x",
                     "summary": evil},
        "times": {"time_to_detect_s": 1.0, "time_to_acknowledge_s": None, "time_to_restore_s": None,
                  "duration_s": 1.0, "open": False},
        "affected": None, "detection": {"by": evil},
        "timeline": [{"ts": "2027-01-01T00:00:00.000000Z", "kind": "alert", "title": evil, "actor": evil,
                      "seq": 1, "hash": "ab" * 32}],
        "correlation": {"verdict": evil, "suspects": [], "threshold": 0.5},
        "metrics": {"source": evil}, "markers": [], "action_items": [{"number": 1, "title": evil,
                    "owner": evil, "due": None, "status": "open", "closed_at": None, "note": evil}],
        "sections": {"root_cause": evil, "lessons": evil}, "audit_head": None,
    }  # fmt: skip
    html = render_html(doc, None)
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
