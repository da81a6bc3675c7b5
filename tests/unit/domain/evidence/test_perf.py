"""k6 summaries (both JSON shapes) and Locust stats CSV → p95/p99/error rate/throughput."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipwarden.domain.evidence import EvidenceError, parse_k6_summary, parse_locust_stats

DATA = Path(__file__).parents[3] / "data" / "evidence"


def read(name: str) -> bytes:
    return (DATA / name).read_bytes()


class TestK6:
    def test_summary_export_shape(self) -> None:
        r = parse_k6_summary(read("k6-summary-export.json"), source="k6.json")
        assert r.tool == "k6"
        assert r.p95_ms == pytest.approx(231.56)
        assert r.p99_ms == pytest.approx(512.02)
        # http_req_failed's "passes" count failed requests; the fraction is "value"
        assert r.error_rate == pytest.approx(0.002)
        assert (r.requests, r.throughput_rps) == (5000, pytest.approx(83.31))
        # bare booleans in --summary-export mean "breached"
        assert r.tool_thresholds == {
            "http_req_duration: p(95)<300": True,
            "http_req_duration: p(99)<400": False,
            "http_req_failed: rate<0.01": True,
        }
        assert r.digest.startswith("sha256:")

    def test_handle_summary_shape_without_p99(self) -> None:
        r = parse_k6_summary(read("k6-handle-summary.json"))
        assert r.p95_ms == pytest.approx(188.9)
        assert r.p99_ms is None  # default summaryTrendStats has no p(99): unknown, not zero
        assert r.error_rate == pytest.approx(0.0125)
        assert (r.requests, r.throughput_rps) == (2400, pytest.approx(79.99))
        assert r.tool_thresholds == {
            "http_req_duration: p(95)<200": True,
            "http_req_failed: rate<0.01": False,
        }

    def test_grpc_only_test_is_measured_by_grpc_req_duration(self) -> None:
        """A gRPC service's k6 test has no http_* metrics (k6-reporter's real gRPC summary)."""
        real = Path(__file__).parents[3] / "fixtures" / "real" / "k6" / "k6-reporter-grpc.json"
        r = parse_k6_summary(real.read_bytes(), source="grpc.json")
        assert (r.p95_ms, r.p99_ms, r.error_rate) == (pytest.approx(2.5228432), None, None)
        assert (r.requests, r.throughput_rps) == (9615, pytest.approx(2833.55024))
        assert r.tool_thresholds == {"fake_rate: rate >= 0.8": False, "grpc_req_duration: med <= 2": True}

    def test_missing_duration_metric(self) -> None:
        with pytest.raises(EvidenceError) as exc:
            parse_k6_summary(read("k6-no-duration.json"))
        assert exc.value.path == "$.metrics.http_req_duration"

    def test_non_numeric_percentile_names_path(self) -> None:
        with pytest.raises(EvidenceError) as exc:
            parse_k6_summary(read("k6-bad-p95.json"))
        assert exc.value.path == '$.metrics.http_req_duration["p(95)"]'
        assert "expected a number" in exc.value.message

    def test_not_json(self) -> None:
        with pytest.raises(EvidenceError) as exc:
            parse_k6_summary(b"running (1m00.0s), 00/10 VUs\n")
        assert exc.value.line == 1

    def test_metrics_must_be_object(self) -> None:
        with pytest.raises(EvidenceError) as exc:
            parse_k6_summary('{"metrics": []}')
        assert exc.value.path == "$.metrics"


class TestLocust:
    def test_aggregated_row(self) -> None:
        r = parse_locust_stats(read("locust_stats.csv"), source="run_stats.csv")
        assert r.tool == "locust"
        assert r.requests == 7000
        assert r.error_rate == pytest.approx(22 / 7000)
        assert (r.p95_ms, r.p99_ms, r.throughput_rps) == (170.0, 410.0, pytest.approx(116.67))

    def test_non_numeric_cell_names_line_and_column(self) -> None:
        with pytest.raises(EvidenceError) as exc:
            parse_locust_stats(read("locust_stats_bad.csv"), source="bad.csv")
        assert exc.value.line == 3
        assert "'95%'" in exc.value.message and "'fast'" in exc.value.message

    def test_failures_csv_is_not_stats(self) -> None:
        with pytest.raises(EvidenceError, match="Request Count") as exc:
            parse_locust_stats(read("locust_failures.csv"))
        assert exc.value.line == 1

    def test_missing_aggregated_row(self) -> None:
        header = read("locust_stats.csv").decode().splitlines()[0]
        with pytest.raises(EvidenceError, match="Aggregated"):
            parse_locust_stats(header + "\nGET,/,1,0,1,1,1,1,1,1,0,1,1,1,1,1,1,1,1,1,1,1\n")

    def test_ragged_row(self) -> None:
        header = read("locust_stats.csv").decode().splitlines()[0]
        with pytest.raises(EvidenceError, match="fields") as exc:
            parse_locust_stats(header + "\nGET,/,1\n")
        assert exc.value.line == 2

    def test_pre_1_0_format(self) -> None:
        old = (
            '"Type","Name","# requests","# failures","Median response time","Average response time",'
            '"Min response time","Max response time","Average Content Size","Requests/s"\n'
            '"GET","/",51,1,4,3,2,6,12274,0.89\n'
            '"None","Total",51,1,4,3,2,6,12274,0.89\n'
        )
        r = parse_locust_stats(old)
        assert (r.requests, r.p95_ms, r.throughput_rps) == (51, None, 0.89)
        assert r.error_rate == pytest.approx(1 / 51)

    def test_empty(self) -> None:
        with pytest.raises(EvidenceError, match="empty"):
            parse_locust_stats(b"")
