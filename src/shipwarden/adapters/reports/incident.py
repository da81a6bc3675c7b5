"""Writes an incident report document as files: ``report.json``, ``metrics.png``, ``report.html``,
``report.pdf``.  Implements ``ports.incidents.ReportWriter``.

* HTML: Jinja2 with autoescaping on, so nothing an alert, a commit message or a person wrote can
  become markup; the page is self-contained (the plot embedded as a ``data:`` URI, styles inline)
  and its Content-Security-Policy allows no script and no network fetch.
* PDF: headless Chromium's ``--print-to-pdf`` over that very HTML file (Debian's ``chromium``),
  started with the flags this machine needs (no sandbox as root, no GPU, no background network,
  a fresh empty profile), bounded in time.  No Chromium: the PDF is skipped and ``pdf`` is None —
  unless it was required, then :class:`ReportError`.
* JSON: the document itself, canonical JSON (keys sorted), which ``incident verify-report`` checks
  against an audit export offline.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from shipwarden.domain.audit import canonical_json
from shipwarden.ports.incidents import ReportError, ReportFiles

__all__ = ["CHROMIUM_FLAGS", "ChromiumReportWriter", "ReportError", "chromium", "render_html"]

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--no-pdf-header-footer",
)


def chromium() -> str | None:
    """Path of a Chromium binary (``SHIPWARDEN_CHROMIUM`` first), or None."""
    env = os.environ.get("SHIPWARDEN_CHROMIUM")
    if env:
        return env
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


_ENV = Environment(
    loader=PackageLoader("shipwarden.adapters.reports", "templates"),
    autoescape=select_autoescape(["html", "j2"], default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _secs(value: float | None) -> str:
    if value is None:
        return "—"
    v = float(value)
    if v < 120:
        return f"{v:.1f} s"
    if v < 7200:
        return f"{v / 60:.1f} min"
    return f"{v / 3600:.1f} h"


def render_html(doc: Mapping[str, Any], plot_png: bytes | None) -> str:
    return _ENV.get_template("incident_report.html.j2").render(
        doc=doc,
        inc=doc["incident"],
        times=doc["times"],
        plot=base64.b64encode(plot_png).decode() if plot_png else None,
        secs=_secs,
    )


def run_chromium(binary: str, args: Sequence[str], *, timeout: float = 60.0) -> None:
    """Run headless Chromium once with a fresh, empty profile; raises :class:`ReportError`."""
    with tempfile.TemporaryDirectory(prefix="sw-chromium-") as profile:
        cmd = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise ReportError(f"chromium did not finish in {timeout:.0f} s") from None
        except OSError as exc:
            raise ReportError(f"cannot run {binary}: {exc}") from None
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise ReportError(f"chromium exited {done.returncode}: {' | '.join(tail)}")


class ChromiumReportWriter:
    def __init__(
        self, binary: str | None = None, *, require_pdf: bool = False, timeout: float = 60.0
    ) -> None:
        self.binary = binary or chromium()
        self.require_pdf, self.timeout = require_pdf, timeout

    def html(self, doc: Mapping[str, Any]) -> str:
        from shipwarden.adapters.reports.plots import metric_figure  # matplotlib: +29 MB, when used

        return render_html(doc, metric_figure(doc))

    def write(self, doc: Mapping[str, Any], directory: Path, *, pdf: bool = True) -> ReportFiles:
        directory.mkdir(parents=True, exist_ok=True)
        json_path = directory / "report.json"
        json_path.write_text(canonical_json(dict(doc)) + "\n", encoding="utf-8")
        from shipwarden.adapters.reports.plots import metric_figure  # matplotlib: +29 MB, when used

        png = metric_figure(doc)
        plots: list[Path] = []
        if png is not None:
            plot_path = directory / "metrics.png"
            plot_path.write_bytes(png)
            plots.append(plot_path)
        html_path = directory / "report.html"
        html_path.write_text(render_html(doc, png), encoding="utf-8")
        pdf_path: Path | None = None
        if pdf:
            if self.binary is None:
                if self.require_pdf:
                    raise ReportError("no Chromium found for the PDF (install Debian's chromium)")
            else:
                pdf_path = directory / "report.pdf"
                pdf_path.unlink(missing_ok=True)
                run_chromium(self.binary, [f"--print-to-pdf={pdf_path}", html_path.resolve().as_uri()],
                             timeout=self.timeout)  # fmt: skip
                if not pdf_path.exists() or pdf_path.stat().st_size == 0:
                    raise ReportError("chromium wrote no PDF")
        return ReportFiles(directory, json_path, html_path, pdf_path, tuple(plots))
