"""Issue 9, class 2: a file ``policy check`` passes is a file ``deploy`` accepts and means what it says.

Every case here was accepted (or crashed with a traceback) before the loader was hardened:
duplicate keys, placeholders the platform does not fill in, ``str.format`` attribute access,
invalid environment names, ``.inf``/``.nan``/zero durations, invalid UTF-8, deep nesting.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from shipwarden.domain.analysis import load_judge_spec_text
from shipwarden.domain.policy import PolicyError, PolicyIssue, load_policy_text

EXAMPLE = (Path(__file__).parents[3] / "examples" / "policy.yaml").read_text()

BASE = """\
apiVersion: shipwarden/v1
team: demo
services:
  - name: web
    run:
      command: ["{python}", "app.py", "--port", "{port}"]
      env:
        APP_VERSION: "{version}"
      workdir: "releases/{version}"
    routing: {port: 18080, previewPort: 18081}
    strategy:
      blueGreen: {scaleDownDelay: 5s}
"""


def issues(text: str | bytes, source: str = "p.yaml") -> list[PolicyIssue]:
    with pytest.raises(PolicyError) as exc:
        load_policy_text(text, source)
    assert exc.value.issues, "a PolicyError always lists its issues"
    return exc.value.issues


def one(text: str | bytes) -> PolicyIssue:
    found = issues(text)
    assert len(found) == 1, found
    return found[0]


def test_the_base_policy_loads() -> None:
    assert load_policy_text(BASE, "p.yaml").policy.service("web").run.workdir == "releases/{version}"


# -- duplicate keys ---------------------------------------------------------------------------------
class TestDuplicateKeys:
    def test_a_second_services_section_is_an_error_naming_both_lines(self) -> None:
        text = BASE + "services:\n  - name: other\n"
        issue = one(text)
        assert issue.line == 13 and "duplicate key 'services'" in issue.message
        assert "lines 3 and 13" in issue.message and str(issue).startswith("p.yaml:13: ")

    def test_a_second_name_inside_a_service(self) -> None:
        text = BASE.replace("  - name: web\n", "  - name: web\n    name: api\n")
        issue = one(text)
        assert (issue.line, issue.field) == (5, "services[0]")
        assert "duplicate key 'name' at lines 4 and 5" in issue.message

    def test_every_duplicate_is_reported_at_every_level(self) -> None:
        text = BASE.replace(
            'APP_VERSION: "{version}"\n', 'APP_VERSION: "{version}"\n        APP_VERSION: x\n'
        )
        text = text.replace("team: demo\n", "team: demo\nteam: other\n")
        found = issues(text)
        assert [(i.line, i.field) for i in found] == [(3, ""), (10, "services[0].run.env")]

    def test_keys_equal_as_yaml_values_are_duplicates(self) -> None:
        from shipwarden.domain._yaml import read_document

        # `yes` and `true` are the same boolean key; "1" (a string) and 1 (an int) are not
        doc = "a: {yes: 1, true: 2}\n"
        with pytest.raises(PolicyError, match="duplicate key 'true'"):
            read_document(doc, "d.yaml")
        assert read_document("a: {'1': x, 1: y}\n", "d.yaml").data == {"a": {"1": "x", 1: "y"}}

    def test_a_merge_key_overriding_is_not_a_duplicate(self) -> None:
        text = BASE.replace(
            "    routing: {port: 18080, previewPort: 18081}\n",
            "    routing:\n      <<: &ports {port: 1, previewPort: 18081}\n      port: 18080\n",
        )
        assert load_policy_text(text, "p.yaml").policy.service("web").routing.port == 18080

    def test_the_judge_policy_goes_through_the_same_reader(self) -> None:
        with pytest.raises(PolicyError) as exc:
            load_judge_spec_text("alpha: 0.01\nsamples: 10\nalpha: 0.2\n", "judge.yaml")
        assert exc.value.issues[0].line == 3 and "lines 1 and 3" in exc.value.issues[0].message


# -- templates and environment names -----------------------------------------------------------------
class TestTemplates:
    @pytest.mark.parametrize(
        ("template", "message"),
        [
            ("{versoin}", "unknown placeholder '{versoin}'"),
            ("{version.__class__}", "uses attribute or index access"),
            ("{version.__class__.__mro__}", "uses attribute or index access"),
            ("{port[0]}", "uses attribute or index access"),
            ("{version!r}", "no conversion or format spec"),
            ("{port:>8}", "no conversion or format spec"),
            ("{version:{port}}", "no conversion or format spec"),
            ("{}", "positional placeholder"),
            ("{0}", "positional placeholder"),
            ("v{", "Single '{'"),
            ("v}", "Single '}'"),
        ],
    )
    @pytest.mark.parametrize("where", ["command", "env", "workdir"])
    def test_only_bare_known_placeholders(self, template: str, message: str, where: str) -> None:
        if where == "command":
            text = BASE.replace('"--port", "{port}"', f'"--port", "{template}"')
            field, line = "services[0].run.command[3]", 6
        elif where == "env":
            text = BASE.replace('APP_VERSION: "{version}"', f'APP_VERSION: "{template}"')
            field, line = "services[0].run.env.APP_VERSION", 8
        else:
            text = BASE.replace('workdir: "releases/{version}"', f'workdir: "releases/{template}"')
            field, line = "services[0].run.workdir", 9
        issue = one(text)
        assert (issue.field, issue.line) == (field, line) and message in issue.message
        assert "allowed: {port}, {python}, {service}, {version}" in issue.message or "Single" in message

    def test_literal_braces_are_written_doubled_and_render_as_one(self) -> None:
        text = BASE.replace('"--port", "{port}"', '"--json", "{{\\"v\\": \\"{version}\\"}}"')
        run = load_policy_text(text, "p.yaml").policy.service("web").run
        rendered = run.render(version="1.2", port="8000", service="web", python="/usr/bin/python3")
        assert rendered.argv == ["/usr/bin/python3", "app.py", "--json", '{"v": "1.2"}']
        assert rendered.env == {"APP_VERSION": "1.2"} and rendered.workdir == "releases/1.2"

    def test_render_fills_in_exactly_the_declared_placeholders(self) -> None:
        from shipwarden.domain.policy import RUN_PLACEHOLDERS

        assert RUN_PLACEHOLDERS == {"version", "port", "service", "python", "zone"}
        text = BASE.replace('"--port", "{port}"', '"{service}", "{port}", "{version}", "{python}"')
        run = load_policy_text(text, "p.yaml").policy.service("web").run
        assert run.render(version="v", port="1", service="s", python="py").argv == [
            "py",
            "app.py",
            "s",
            "1",
            "v",
            "py",
        ]

    @pytest.mark.parametrize("name", ["BAD-NAME", "1ABC", "A B", "", "É", "A=B", "APP\\n"])
    def test_env_names_are_posix(self, name: str) -> None:
        issue = one(BASE.replace("APP_VERSION:", f'"{name}":'))
        assert "is not an environment variable name" in issue.message and issue.line == 8

    def test_port_env_is_an_env_name_and_not_overridden_by_env(self) -> None:
        assert (
            "not an environment variable name"
            in one(BASE.replace("    run:\n", "    run:\n      portEnv: a-b\n")).message
        )
        clash = BASE.replace('APP_VERSION: "{version}"', 'PORT: "9999"')
        assert "would be replaced by the instance's port" in one(clash).message

    def test_nul_characters_cannot_reach_a_process(self) -> None:
        assert "NUL" in one(BASE.replace('"app.py"', '"app\\0.py"')).message

    def test_an_unsplittable_command_string(self) -> None:
        text = BASE.replace(
            'command: ["{python}", "app.py", "--port", "{port}"]', "command: 'python \"app.py'"
        )
        assert "cannot split the command" in one(text).message


# -- numbers and durations --------------------------------------------------------------------------
class TestDurations:
    @pytest.mark.parametrize(
        ("value", "message"),
        [
            (".inf", "finite"),
            ("-.inf", "finite"),
            (".nan", "finite"),
            ("0", "longer than 0"),
            ("0s", "longer than 0"),
            ("0ms", "longer than 0"),
            ("9999999h", "longer than ten years"),
            ("1.0e+400", "finite"),
        ],
    )
    def test_a_time_out_is_finite_and_positive(self, value: str, message: str) -> None:
        text = BASE.replace("    routing:", f"    health: {{timeout: {value}}}\n    routing:")
        issue = one(text)
        assert issue.field == "services[0].health.timeout" and message in issue.message

    def test_zero_is_fine_where_it_means_no_delay(self) -> None:
        text = BASE.replace("scaleDownDelay: 5s", "scaleDownDelay: 0")
        bg = load_policy_text(text, "p.yaml").policy.service("web").strategy.blue_green
        assert bg is not None and bg.scale_down_delay == 0.0

    def test_a_trailing_newline_is_not_part_of_a_valid_name(self) -> None:
        # Python's `$` matches before a final newline: every name check uses fullmatch
        text = BASE + 'delivery:\n  repository: {url: x}\n  services: ["web\\n"]\n'
        text += '  approvers: {"cab\\n": [a]}\n'
        assert {(i.field, i.message.split(" ")[0]) for i in issues(text)} == {
            ("delivery.services", "invalid"),
            ("delivery.approvers", "invalid"),
        }

    def test_inf_and_nan_are_refused_in_every_float_setting(self) -> None:
        text = BASE + (
            "delivery:\n  repository: {url: x}\n  services: [web]\n"
            "  postDeployment: {performance: {maxRegression: .inf, slackMs: .nan}}\n"
        )
        fields = {i.field for i in issues(text)}
        assert fields == {
            "delivery.postDeployment.performance.maxRegression",
            "delivery.postDeployment.performance.slackMs",
        }


# -- bytes, depth, size ------------------------------------------------------------------------------
class TestReading:
    def test_invalid_utf8_is_reported_with_offset_and_line(self) -> None:
        raw = BASE.encode().replace(b"team: demo", b"team: d\xe9mo")
        issue = one(raw)
        assert issue.line == 2 and "not UTF-8: byte 0xe9 at offset 33 (line 2, column 8)" in issue.message

    def test_a_lone_surrogate_in_text_is_not_utf8(self) -> None:
        assert "not UTF-8" in one(BASE.replace("demo", "d\ud800mo")).message

    @pytest.mark.parametrize("opener", ["[", "{a: "])
    def test_deep_flow_nesting_is_an_error_not_a_recursion_error(self, opener: str) -> None:
        closer = "]" if opener == "[" else "}"
        text = BASE + "x: " + opener * 5000 + closer * 5000 + "\n"
        issue = one(text)
        assert issue.line == 13 and "nested deeper than 48 levels" in issue.message

    def test_deep_block_nesting(self) -> None:
        text = "a:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(400))
        assert "nested deeper than" in one(text).message

    def test_an_alias_bomb_is_refused_before_it_expands(self) -> None:
        lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
        lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
        issue = one("\n".join(lines) + "\n")
        assert "expands to more than" in issue.message and issue.line is not None

    def test_a_recursive_alias_is_refused(self) -> None:
        assert "refers to a node that contains it" in one("a: &x [1, *x]\n").message

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            ("2024-13-45", "cannot read this value as timestamp"),
            ("!!float abc", "cannot read this value as float"),
            ("!!int " + "9" * 5000, "cannot read this value as int"),
            ("!!python/object:os.system x", "could not determine a constructor"),
            ("!!binary a", "failed to decode base64"),
        ],
    )
    def test_values_pyyaml_cannot_build(self, value: str, message: str) -> None:
        issue = one(BASE + f"x: {value}\n")
        assert issue.line == 13 and message in issue.message

    def test_control_characters(self) -> None:
        issue = one(BASE.replace("team: demo", "team: de\x07mo"))
        assert issue.line == 2 and "U+0007" in issue.message

    def test_a_key_that_is_not_plain_text_is_quoted_in_the_field_path(self) -> None:
        # the path is the file's own text: a tab or a terminal escape is shown, never sent raw
        text = BASE.replace("  - name: web\n", '  - name: web\n    "\\t": 0\n    "\\e[2J": 1\n')
        assert {i.field for i in issues(text)} == {"services[0]['\\t']", "services[0]['\\x1b[2J']"}

    def test_the_digest_is_the_sha256_of_the_exact_bytes(self) -> None:
        raw = BASE.replace("\n", "\r\n").encode()
        assert load_policy_text(raw, "p.yaml").digest == hashlib.sha256(raw).hexdigest()
        assert load_policy_text(BASE, "p.yaml").digest == hashlib.sha256(BASE.encode()).hexdigest()

    def test_a_huge_file_is_refused_without_parsing(self) -> None:
        assert "larger than" in one(BASE + "#" * (2 << 20) + "\n").message

    def test_the_example_policy_still_loads(self) -> None:
        assert {s.name for s in load_policy_text(EXAMPLE, "examples/policy.yaml").policy.services} == {
            "hello",
            "hello-canary",
        }
