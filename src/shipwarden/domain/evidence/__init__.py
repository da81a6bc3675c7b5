"""Evidence parsers and types: JUnit XML, SARIF 2.1.0, k6 and Locust results (pure, bytes in)."""

from shipwarden.domain.evidence.junit import parse_junit
from shipwarden.domain.evidence.model import (
    BackupVerification,
    CiCheck,
    Evidence,
    EvidenceError,
    Migration,
    PerfReport,
    Report,
    RollbackPlan,
    SecurityFinding,
    SecurityReport,
    Severity,
    SuiteResult,
    TestCaseResult,
    TestReport,
    sha256_digest,
)
from shipwarden.domain.evidence.perf import parse_k6_summary, parse_locust_stats
from shipwarden.domain.evidence.sarif import parse_sarif, severity_from_score

__all__ = [
    "BackupVerification",
    "CiCheck",
    "Evidence",
    "EvidenceError",
    "Migration",
    "PerfReport",
    "Report",
    "RollbackPlan",
    "SecurityFinding",
    "SecurityReport",
    "Severity",
    "SuiteResult",
    "TestCaseResult",
    "TestReport",
    "parse_junit",
    "parse_k6_summary",
    "parse_locust_stats",
    "parse_sarif",
    "severity_from_score",
    "sha256_digest",
]
