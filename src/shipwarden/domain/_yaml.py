"""Reading a policy document: bytes or text in, a YAML node tree and plain data out — or ``PolicyError``.

Every policy file (the team policy, a judge policy) goes through :func:`read_document`, so
``shipwarden policy check``, ``deploy``, the API and the controller accept exactly the same
files.  ``yaml.safe_load`` alone is not enough for a file that decides what runs in production:

* **Duplicate keys** are legal for PyYAML (the last one wins), so a second ``services:`` at the
  end of a file silently replaces every service.  Here every duplicate is an error naming both
  lines.  Keys brought in by a merge key (``<<: *defaults``) are not duplicates: overriding
  them is what a merge is for.
* **Depth and size.**  PyYAML composes and constructs recursively: ``[[[[…`` a few hundred
  levels deep is a ``RecursionError`` traceback, and aliases can make a small file expand into
  billions of nodes for the validator.  The composer here refuses to go deeper than
  :data:`MAX_DEPTH`, counts nodes *as expanded through aliases* (at most :data:`MAX_NODES`),
  refuses recursive aliases, and the input is at most :data:`MAX_BYTES`.
* **Encoding.**  Bytes are decoded as strict UTF-8; a bad byte is reported with its offset,
  line and column instead of a ``UnicodeDecodeError`` traceback.
* **Values PyYAML cannot build** (``2024-13-45`` as a timestamp, an int of 10,000 digits,
  ``!!float abc``) raise ``ValueError`` & co. from deep inside the constructor; they become
  issues at the node's line.

Pure: no files, no I/O; the caller reads the bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from shipwarden.domain._base import PolicyError, PolicyIssue

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "Document", "line_of", "path_text", "read_document"]

MAX_BYTES = 1 << 20
"""A policy is a few kilobytes; a megabyte is a mistake (or an attack on the parser)."""
MAX_DEPTH = 48
"""Nesting levels (mappings and sequences); the deepest real policy path is about 10."""
MAX_NODES = 200_000
"""Nodes after alias expansion — what the validator will walk."""

_MERGE_TAG = "tag:yaml.org,2002:merge"
_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")  # what YAML (and so every mark) counts as a line break


def _line_at(text: str, index: int) -> tuple[int, int]:
    """(line, column), 1-based, of ``text[index]`` counted as YAML counts them."""
    breaks = list(_BREAK.finditer(text, 0, index))
    start = breaks[-1].end() if breaks else 0
    return len(breaks) + 1, index - start + 1


@dataclass(frozen=True)
class Document:
    """A parsed policy document: the node tree (for line numbers), the data, the decoded text."""

    root: yaml.Node | None
    data: Any
    text: str


class _Limit(yaml.MarkedYAMLError):  # type: ignore[misc]
    """A document too deep, too big after alias expansion, or with a recursive alias."""


class _Loader(yaml.SafeLoader):  # type: ignore[misc]
    """SafeLoader whose composer bounds depth and expanded size, and whose constructor turns any
    exception raised while building a value into a marked ``yaml.constructor.ConstructorError``."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._sizes: dict[int, int] = {}  # id(node) -> nodes it stands for, once composed

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if self._depth >= MAX_DEPTH:
            raise _Limit(None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        if isinstance(event, yaml.AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None and id(target) not in self._sizes:
                raise _Limit(
                    None, None, f"alias *{event.anchor} refers to a node that contains it", event.start_mark
                )
        self._depth += 1
        try:
            node: yaml.Node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if id(node) not in self._sizes:
            size = 1
            if isinstance(node, yaml.MappingNode):
                size += sum(self._sizes.get(id(k), 1) + self._sizes.get(id(v), 1) for k, v in node.value)
            elif isinstance(node, yaml.SequenceNode):
                size += sum(self._sizes.get(id(v), 1) for v in node.value)
            if size > MAX_NODES:
                raise _Limit(
                    None,
                    None,
                    f"expands to more than {MAX_NODES} values (through aliases?)",
                    node.start_mark,
                )
            self._sizes[id(node)] = size
        return node

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, OverflowError, ArithmeticError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this {_kind(node)}: {exc}", node.start_mark
            ) from None


def _kind(node: yaml.Node) -> str:
    tag = str(node.tag).rsplit(":", 1)[-1]
    return f"value as {tag}" if isinstance(node, yaml.ScalarNode) else tag


def _scalar_key(node: yaml.Node, constructor: yaml.constructor.SafeConstructor) -> Any:
    """A mapping key as YAML means it (``yes`` and ``true`` are the same key); None if not a scalar
    (or not buildable: the real construction reports that)."""
    if not isinstance(node, yaml.ScalarNode) or node.tag == _MERGE_TAG:
        return None
    try:
        value = constructor.construct_object(node)
        hash(value)
    except Exception:  # noqa: BLE001 - any failure here is reported by the real construction
        return None
    return (node.tag, value)


_PLAIN_KEY = re.compile(r"[^\s.\[\]'\"]+")


def path_text(path: tuple[Any, ...]) -> str:
    """``("services", 0, "run")`` → ``services[0].run``.

    A key is the file's own text: one that is not plain (empty, spaces, dots, brackets, quotes,
    control or invisible characters) is quoted, ``env['A B']``, so a message never carries a raw
    tab, newline or terminal escape and always says exactly which key it means."""
    text = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        elif isinstance(part, str) and part.isprintable() and _PLAIN_KEY.fullmatch(part):
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text


def _duplicates(root: yaml.Node, source: str) -> list[PolicyIssue]:
    """Every key that appears twice in one mapping, with both lines (iterative: depth is bounded
    anyway, and a node reached twice through aliases is checked once)."""
    issues: list[PolicyIssue] = []
    seen: set[int] = set()
    constructor = yaml.constructor.SafeConstructor()
    stack: list[tuple[yaml.Node, tuple[Any, ...]]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, (*path, i)) for i, child in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            first: dict[Any, yaml.Node] = {}
            for k, v in node.value:
                key = _scalar_key(k, constructor)
                if key is not None:
                    if key in first:
                        a, b = first[key].start_mark.line + 1, k.start_mark.line + 1
                        issues.append(
                            PolicyIssue(
                                source,
                                b,
                                path_text(path),
                                f"duplicate key {k.value!r} at lines {a} and {b}: YAML would silently keep "
                                "only the last one; remove one of them",
                            )
                        )
                    else:
                        first[key] = k
                stack.append((v, (*path, k.value if isinstance(k, yaml.ScalarNode) else "?")))
    issues.sort(key=lambda i: i.line or 0)
    return issues


def _decode(raw: bytes, source: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, _ = _line_at(raw[: exc.start].decode("utf-8"), exc.start)
        column = exc.start - (max(raw.rfind(b"\n", 0, exc.start), raw.rfind(b"\r", 0, exc.start)) + 1) + 1
        raise PolicyError(
            [
                PolicyIssue(
                    source,
                    line,
                    "",
                    f"not UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start} (line {line}, "
                    f"column {column}): {exc.reason}",
                )
            ]
        ) from None


def _yaml_issue(exc: yaml.YAMLError, text: str, source: str) -> PolicyIssue:
    if isinstance(exc, yaml.reader.ReaderError):
        line, column = _line_at(text, exc.position)
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        return PolicyIssue(
            source,
            line,
            "",
            f"not valid YAML: character U+{ord(char):04X} (column {column}) is not allowed in YAML text",
        )
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        if exc.context and exc.problem and not isinstance(exc, yaml.constructor.ConstructorError | _Limit):
            problem = f"{exc.context}: {exc.problem}"
        prefix = "" if isinstance(exc, _Limit | yaml.constructor.ConstructorError) else "not valid YAML: "
        return PolicyIssue(source, mark.line + 1 if mark else None, "", prefix + problem)
    return PolicyIssue(source, None, "", f"not valid YAML: {exc}")


def read_document(content: str | bytes, source: str) -> Document:
    """Parse one YAML (or JSON) document; raises ``PolicyError`` with file:line issues, never
    anything else, whatever the input."""
    if isinstance(content, str):
        try:
            raw = content.encode("utf-8")
        except UnicodeEncodeError as exc:
            line, _ = _line_at(content, exc.start)
            raise PolicyError(
                [PolicyIssue(source, line, "", f"not UTF-8 text: {exc.reason} at character {exc.start}")]
            ) from None
    else:
        raw = content
    if len(raw) > MAX_BYTES:
        raise PolicyError(
            [PolicyIssue(source, None, "", f"larger than {MAX_BYTES} bytes: a policy is a few kilobytes")]
        )
    text = _decode(raw, source)
    loader = None
    try:
        loader = _Loader(text)  # checks every character is allowed in YAML (ReaderError)
        root = loader.get_single_node()
        if root is None:
            return Document(None, None, text)
        duplicates = _duplicates(root, source)
        if duplicates:
            raise PolicyError(duplicates)
        data = loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise PolicyError([_yaml_issue(exc, text, source)]) from None
    except RecursionError:  # a backstop: MAX_DEPTH keeps PyYAML far from the interpreter's limit
        raise PolicyError([PolicyIssue(source, None, "", "nested too deeply")]) from None
    finally:
        if loader is not None:
            loader.dispose()
    return Document(root, data, text)


def line_of(root: yaml.Node | None, path: tuple[Any, ...]) -> int | None:
    """Line (1-based) of the node at ``path`` (keys and indexes) in the tree, or of its nearest parent."""
    if root is None:
        return None
    node = root
    line: int = node.start_mark.line + 1
    for key in path:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(key):
                    node = v
                    line = int(k.start_mark.line) + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
            node = node.value[key]
            line = int(node.start_mark.line) + 1
        else:
            return line
    return line
