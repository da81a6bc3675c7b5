"""SARIF 2.1.0 security scans → ``SecurityReport``.

Severity follows GitHub code scanning, because that is what teams already see
for the same files:

* A rule (or, more specifically, a result) with ``properties["security-severity"]``
  — a CVSS-like score, usually a numeric *string* such as ``"9.8"`` — is bucketed
  by score: ``>= 9.0`` critical, ``7.0–8.9`` high, ``4.0–6.9`` medium,
  ``0.1–3.9`` low, ``0.0`` none.  GitHub's text says "over 9.0" for critical
  and "7.0 to 8.9" for high, leaving **exactly 9.0** in no range; we put it in
  *critical* — CVSS v3 itself rates 9.0 critical, and for a deployment gate the
  stricter reading is the safe one.  Scores between the documented ranges
  (e.g. 8.95) fall into the bucket of the range they exceed.  A score that is
  not a number or is outside 0–10 is a malformed report, not "no severity".
* Otherwise the SARIF ``level`` decides (result ``level``, else the rule's
  ``defaultConfiguration.level``, else SARIF's default ``warning``):
  ``error`` → high, ``warning`` → medium, ``note`` → low, ``none`` → none.
  A scanner that found something it calls an error should not slip past a
  "no high findings" limit just because it does not emit scores.
* Between the two: a scanner that keeps its severity in its own property
  (AppScan's ``properties.Severity: "High"``, Bandit's ``issue_severity``) is
  read from that property — on the result, else on its rule — when the value is
  a severity word (critical, high, medium/moderate, low, info/none).
* A ``security-severity`` that is explicitly *no value* — ``"undefined"``,
  ``"null"``, ``""``, JSON ``null`` (Snyk writes ``"undefined"`` for licence
  issues) — is absent, not malformed; any other non-number is malformed.

Results with an accepted suppression (``suppressions[]`` entry whose status is
absent or ``accepted``) are reported separately and not counted; results whose
``baselineState`` is ``absent`` (already fixed) are skipped, and so are results
of ``kind`` ``pass`` or ``notApplicable`` (a rule that was checked and held).

**A scan that did not complete is not a clean scan.**  A run whose
``invocations[].executionSuccessful`` is ``false``, or that has error-level
``toolExecutionNotifications`` and no results (the scanner crashed before it
reported anything), is recorded in ``SecurityReport.incomplete``; the gate
fails on it and says so.
"""

from __future__ import annotations

from typing import Any, Literal

from shipwarden.domain.evidence._json import JsonReader, key_path, load_json
from shipwarden.domain.evidence.model import SecurityFinding, SecurityReport, Severity, sha256_digest

_LEVELS = {"error": Severity.HIGH, "warning": Severity.MEDIUM, "note": Severity.LOW, "none": Severity.NONE}
#: severity words scanners write in their own properties (and some in security-severity)
_WORDS = {
    "critical": Severity.CRITICAL,
    "very high": Severity.CRITICAL,
    "high": Severity.HIGH,
    "medium": Severity.MEDIUM,
    "moderate": Severity.MEDIUM,
    "low": Severity.LOW,
    "info": Severity.NONE,
    "informational": Severity.NONE,
    "information": Severity.NONE,
    "none": Severity.NONE,
    "negligible": Severity.NONE,
}
#: "no value" spellings of security-severity
_NO_VALUE = frozenset({"", "undefined", "null", "none", "n/a", "unknown"})
#: property names (compared case-insensitively) that hold a scanner's own severity word
_VENDOR_KEYS = ("severity", "issue_severity", "security_severity_level", "impact")
_NOT_FINDINGS = frozenset({"pass", "notApplicable"})


def severity_from_score(score: float) -> Severity:
    """Bucket a ``security-severity`` score (0–10) the way GitHub does; 9.0 counts as critical."""
    if score >= 9.0:
        return Severity.CRITICAL
    if score >= 7.0:
        return Severity.HIGH
    if score >= 4.0:
        return Severity.MEDIUM
    if score > 0.0:
        return Severity.LOW
    return Severity.NONE


class _Run:
    def __init__(self, r: JsonReader, run: dict[str, Any], path: str) -> None:
        self.r = r
        self.path = path
        tool = r.obj(run.get("tool"), f"{path}.tool")
        driver = r.obj(tool.get("driver"), f"{path}.tool.driver")
        self.tool = r.string(driver.get("name"), f"{path}.tool.driver.name")
        # rules by (component index, rule index) and by id; component -1 = driver
        self.rules_by_index: dict[tuple[int, int], tuple[dict[str, Any], str]] = {}
        self.rules_by_id: dict[str, tuple[dict[str, Any], str]] = {}
        components = [(-1, driver, f"{path}.tool.driver")]
        if "extensions" in tool:
            for i, ext in enumerate(r.arr(tool["extensions"], f"{path}.tool.extensions")):
                epath = f"{path}.tool.extensions[{i}]"
                components.append((i, r.obj(ext, epath), epath))
        for ci, comp, cpath in components:
            for ri, rule in enumerate(r.arr(comp.get("rules", []), f"{cpath}.rules")):
                rpath = f"{cpath}.rules[{ri}]"
                rule = r.obj(rule, rpath)
                rid = r.string(rule.get("id"), f"{rpath}.id")
                self.rules_by_index[(ci, ri)] = (rule, rpath)
                self.rules_by_id.setdefault(rid, (rule, rpath))

    def rule_for(self, result: dict[str, Any], path: str) -> tuple[dict[str, Any], str] | None:
        ref = result.get("rule")
        index: Any = result.get("ruleIndex")
        component = -1
        rid = result.get("ruleId")
        if ref is not None:
            ref = self.r.obj(ref, f"{path}.rule")
            index = ref.get("index", index)
            rid = ref.get("id", rid)
            comp = ref.get("toolComponent")
            if isinstance(comp, dict) and isinstance(comp.get("index"), int):
                component = comp["index"]
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, int):
                raise self.r.error(f"{path}.ruleIndex", "expected an integer rule index")
            if index >= 0:
                found = self.rules_by_index.get((component, index))
                if found is None:
                    raise self.r.error(f"{path}.ruleIndex", f"rule index {index} is not in the tool's rules")
                return found
        if isinstance(rid, str):
            return self.rules_by_id.get(rid) or self.rules_by_id.get(rid.split("/", 1)[0])
        return None

    def score(self, holder: dict[str, Any], path: str) -> float | None:
        """The ``security-severity`` score of a result or rule, ``None`` when it has none."""
        props = holder.get("properties")
        if props is None:
            return None
        props = self.r.obj(props, f"{path}.properties")
        if "security-severity" not in props:
            return None
        spath = f'{path}.properties["security-severity"]'
        raw = props["security-severity"]
        if raw is None:
            return None
        if isinstance(raw, str):
            text = raw.strip().lower()
            if text in _NO_VALUE:
                return None
            try:
                value = float(text)
            except ValueError:
                raise self.r.error(spath, f"security-severity {raw!r} is not a number") from None
        else:
            value = self.r.number(raw, spath)
        if not 0.0 <= value <= 10.0:
            raise self.r.error(spath, f"security-severity {value} is outside 0.0–10.0")
        return value

    def vendor(self, holder: dict[str, Any]) -> Severity | None:
        """A scanner's own severity word (``properties.Severity: "High"``), if it has one we know."""
        props = holder.get("properties")
        if not isinstance(props, dict):
            return None
        keys = {k.lower(): k for k in props if isinstance(k, str)}
        for name in _VENDOR_KEYS:
            value = props.get(keys.get(name, ""))
            if isinstance(value, str) and value.strip().lower() in _WORDS:
                return _WORDS[value.strip().lower()]
        return None

    def level(self, value: Any, path: str) -> str:
        level = self.r.string(value, path)
        if level not in _LEVELS:
            raise self.r.error(path, f"level {level!r} is not one of none, note, warning, error")
        return level

    def finding(self, result: dict[str, Any], path: str) -> SecurityFinding:
        r = self.r
        message = r.obj(result.get("message"), f"{path}.message")
        text = message.get("text")
        text = r.string(text, f"{path}.message.text") if text is not None else str(message.get("id", ""))
        rule = self.rule_for(result, path)
        rule_id = result.get("ruleId")
        if rule_id is None and isinstance(result.get("rule"), dict):
            rule_id = result["rule"].get("id")
        if rule_id is None and rule is not None:
            rule_id = rule[0]["id"]
        rule_id = r.string(rule_id, f"{path}.ruleId") if rule_id is not None else "<no rule id>"

        score = self.score(result, path)
        if score is None and rule is not None:
            score = self.score(rule[0], rule[1])
        vendor = self.vendor(result) or (self.vendor(rule[0]) if rule is not None else None)
        level: str | None = None
        if "level" in result:
            level = self.level(result["level"], f"{path}.level")
        elif rule is not None:
            config = rule[0].get("defaultConfiguration")
            if config is not None:
                config = r.obj(config, f"{rule[1]}.defaultConfiguration")
                if "level" in config:
                    level = self.level(config["level"], f"{rule[1]}.defaultConfiguration.level")
        if level is None:
            # SARIF §3.27.10: a result whose kind is not "fail" defaults to level "none"
            level = "warning" if result.get("kind", "fail") == "fail" else "none"
        source: Literal["security-severity", "vendor", "level"]
        if score is not None:
            severity, source = severity_from_score(score), "security-severity"
        elif vendor is not None:
            severity, source = vendor, "vendor"
        else:
            severity, source = _LEVELS[level], "level"

        uri: str | None = None
        line: int | None = None
        locations = result.get("locations")
        if isinstance(locations, list) and locations and isinstance(locations[0], dict):
            phys = locations[0].get("physicalLocation")
            if isinstance(phys, dict):
                art = phys.get("artifactLocation")
                if isinstance(art, dict) and isinstance(art.get("uri"), str):
                    uri = art["uri"]
                region = phys.get("region")
                if isinstance(region, dict) and isinstance(region.get("startLine"), int):
                    line = region["startLine"]
        return SecurityFinding(rule_id, severity, text, source, score, level, uri, line, self.tool)


def _suppressed(r: JsonReader, result: dict[str, Any], path: str) -> bool:
    sups = result.get("suppressions")
    if sups is None:
        return False
    for i, s in enumerate(r.arr(sups, f"{path}.suppressions")):
        s = r.obj(s, f"{path}.suppressions[{i}]")
        if s.get("status", "accepted") == "accepted":
            return True
    return False


def _incomplete(r: JsonReader, run: dict[str, Any], path: str, *, has_results: bool) -> str:
    """Why this run did not complete ("" if it did): the tool says so, or it crashed silently."""
    invocations = run.get("invocations")
    if invocations is None:
        return ""
    errors: list[str] = []
    for k, inv in enumerate(r.arr(invocations, f"{path}.invocations")):
        ipath = f"{path}.invocations[{k}]"
        inv = r.obj(inv, ipath)
        notes = inv.get("toolExecutionNotifications") or []
        for n, note in enumerate(r.arr(notes, f"{ipath}.toolExecutionNotifications")):
            note = r.obj(note, f"{ipath}.toolExecutionNotifications[{n}]")
            if note.get("level", "warning") == "error":
                msg = note.get("message")
                text = msg.get("text") if isinstance(msg, dict) else None
                errors.append(str(text or "error")[:200])
        ok = inv.get("executionSuccessful")
        if ok is False:
            cause = f": {errors[0]}" if errors else ""
            exit_code = inv.get("exitCode")
            code = f" (exit code {exit_code})" if isinstance(exit_code, int) else ""
            return f"the tool reports executionSuccessful: false{code}{cause}"
    if errors and not has_results:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return f"error notifications and no results: {errors[0]}{more}"
    return ""


def parse_sarif(data: bytes | str, *, source: str = "<sarif>") -> SecurityReport:
    """Parse a SARIF 2.1.0 log; raises ``EvidenceError`` with the JSON path of the first bad value."""
    r = JsonReader(source)
    doc = r.obj(load_json(data, source), "$")
    version = doc.get("version")
    if version != "2.1.0":
        raise r.error("$.version", f"expected SARIF version '2.1.0', got {version!r}")
    runs = r.arr(doc.get("runs"), "$.runs")
    tools: list[str] = []
    findings: list[SecurityFinding] = []
    suppressed: list[SecurityFinding] = []
    incomplete: list[str] = []
    for i, raw_run in enumerate(runs):
        rpath = f"$.runs[{i}]"
        run = _Run(r, r.obj(raw_run, rpath), rpath)
        tools.append(run.tool)
        run_results = raw_run.get("results")
        if run_results is None:
            # SARIF: absent results means "the tool did not run to completion" — not a clean scan.
            raise r.error(key_path(rpath, "results"), "missing: a run without 'results' did not complete")
        run_results = r.arr(run_results, f"{rpath}.results")
        why = _incomplete(r, raw_run, rpath, has_results=bool(run_results))
        if why:
            incomplete.append(f"{run.tool} ({rpath}): {why}")
        for j, res in enumerate(run_results):
            path = f"{rpath}.results[{j}]"
            res = r.obj(res, path)
            if res.get("baselineState") == "absent" or res.get("kind") in _NOT_FINDINGS:
                continue
            finding = run.finding(res, path)
            (suppressed if _suppressed(r, res, path) else findings).append(finding)
    if not runs:
        raise r.error("$.runs", "no runs: the log does not show that any scan ran")
    return SecurityReport(
        tools=tuple(tools),
        findings=tuple(findings),
        digest=sha256_digest(data),
        source=source,
        suppressed=tuple(suppressed),
        incomplete=tuple(incomplete),
    )
