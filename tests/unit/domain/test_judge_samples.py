"""Sample format: JSON-lines parsing with line-numbered errors, histogram semantics."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from shipwarden.domain.judge import Sample, SampleParseError, parse_samples


def test_parses_raw_and_histogram_lines_skipping_blanks_and_comments() -> None:
    text = "\n".join(
        [
            "# baseline, 1-minute intervals",
            json.dumps({"t": 0, "requests": 4, "errors": 1, "latencies_ms": [10, 20, 30, 400]}),
            "",
            json.dumps(
                {"t": 60, "requests": 10, "errors": 0, "latency_buckets": {"50": 6, "+Inf": 10, "100": 9}}
            ),
        ]
    )
    raw, hist = parse_samples(text, "b.jsonl")
    assert (raw.t, raw.requests, raw.errors, raw.line, raw.latency_count) == (0.0, 4, 1, 2, 4)
    assert raw.count_above(30) == 1
    assert hist.line == 4 and hist.latency_count == 10
    assert list(hist.bucket_bounds) == [50.0, 100.0, math.inf]  # type: ignore[arg-type]
    assert hist.count_above(50.0) == 4 and hist.count_above(100.0) == 1
    with pytest.raises(ValueError, match="not a bucket bound"):
        hist.count_above(75.0)


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    (s,) = parse_samples(json.dumps({"t": 0, "requests": 100, "errors": 0,
                                     "latency_buckets": {"100": 50, "200": 100, "+Inf": 100}}))  # fmt: skip
    assert s.quantile(0.5) == pytest.approx(100.0)
    assert s.quantile(0.75) == pytest.approx(150.0)
    raw = Sample(0, 3, 0, np.array([1.0, 2.0, 3.0]))
    assert raw.quantile(0.5) == pytest.approx(2.0)
    assert math.isnan(Sample(0, 0, 0).quantile(0.5))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"t": 0, "requests": 10}', "missing 'errors'"),
        ('{"t": 0, "requests": 10, "errors": 11}', "more than 'requests'"),
        ('{"t": 0, "requests": -1, "errors": 0}', "cannot be negative"),
        ('{"t": 0, "requests": 1.5, "errors": 0}', "whole number"),
        ('{"t": 0, "requests": 10, "errors": 0, "latency": [1]}', "unknown key"),
        ('{"t": 0, "requests": 10, "errors": 0, "latencies_ms": [1, -2]}', "finite and ≥ 0"),
        ('{"t": 0, "requests": 10, "errors": 0, "latency_buckets": {"50": 9, "100": 3}}', "cumulative"),
        ('{"t": 0, "requests": 10, "errors": 0, "latency_buckets": {"fast": 9}}', "not a number"),
        (
            '{"t": 0, "requests": 2, "errors": 0, "latencies_ms": [1], "latency_buckets": {"5": 1}}',
            "not both",
        ),
    ],
)
def test_bad_lines_are_reported_with_file_and_line(line: str, message: str) -> None:
    good = '{"t": 0, "requests": 10, "errors": 0}'
    with pytest.raises(SampleParseError) as e:
        parse_samples(f"{good}\n\n{line}\n", "canary.jsonl")
    (issue,) = e.value.issues
    assert issue.line == 3 and issue.source == "canary.jsonl"
    assert message in issue.message
    assert str(issue).startswith("canary.jsonl:3: ")


def test_every_bad_line_is_reported_and_time_must_not_go_backwards() -> None:
    lines = ['{"t": 60, "requests": 1, "errors": 0}', '{"t": 0, "requests": 1, "errors": 0}', "oops"]
    with pytest.raises(SampleParseError) as e:
        parse_samples("\n".join(lines), "x")
    assert [i.line for i in e.value.issues] == [2, 3]
    assert "goes backwards" in e.value.issues[0].message


def test_empty_input_is_an_error() -> None:
    with pytest.raises(SampleParseError, match="no samples"):
        parse_samples("# only a comment\n", "x")


def test_to_json_round_trips() -> None:
    text = json.dumps({"t": 5, "requests": 3, "errors": 1, "latency_buckets": {"10": 1, "20": 3, "+Inf": 3}})
    (s,) = parse_samples(text)
    (again,) = parse_samples(json.dumps(s.to_json()))
    assert again.count_above(10.0) == s.count_above(10.0) == 2
