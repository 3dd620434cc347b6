"""Reading a rule file's text into plain data, with the line and column of every key and value.

YAML goes through PyYAML's safe composer and is turned into data here, node by node, so that only
plain data can come out: tags that would build Python objects are refused, duplicate keys are an
error, and the size, nesting depth and alias expansion are bounded. JSON goes through a small parser
of our own that records the same positions. Both return the data and a :class:`SourceMap`, from which
later stages turn a path inside the document (``("rules", 2, "lr_mult")``) into ``file:line:col``.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import re
import stat
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from .errors import Location, RuleError, RuleFileError

MAX_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_NODES = 200_000

Loc = tuple[str | int, ...]

_STR, _INT, _FLOAT, _BOOL, _NULL, _SEQ, _MAP, _TIMESTAMP = (
    "tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null", "seq", "map", "timestamp")
)


@dataclass(frozen=True)
class Spot:
    """Where a key or value starts (1-based), and how a scalar was quoted (``'``, ``"`` or ``""``)."""

    line: int
    col: int
    quote: str = ""
    single_line: bool = True
    path: str = ""  # the file, where it is not the map's own (inherited through 'extends')


@dataclass
class SourceMap:
    """Positions of the values (and of the keys) of one document, by their path in it."""

    path: str
    values: dict[Loc, Spot] = field(default_factory=dict)
    keys: dict[Loc, Spot] = field(default_factory=dict)

    def spot(self, loc: Sequence[str | int], key: bool = False) -> Spot | None:
        """The position of ``loc``, or of its nearest enclosing part that has one."""
        loc = tuple(loc)
        if key and loc in self.keys:
            return self.keys[loc]
        for n in range(len(loc), -1, -1):
            found = self.values.get(loc[:n])
            if found is not None:
                return found
        return None

    def locate(self, loc: Sequence[str | int], key: bool = False, offset: int | None = None) -> Location:
        """``file:line:col`` of ``loc``; ``offset`` moves the column into a one-line scalar's text."""
        spot = self.spot(loc, key)
        if spot is None:
            return Location(self.path)
        col = spot.col
        if offset is not None and spot.single_line:
            col += len(spot.quote) + offset
        return Location(spot.path or self.path, spot.line, col)

    def graft(self, other: SourceMap, src: Loc, dst: Loc, heads: Mapping[str | int, str | int] | None = None) -> None:
        """Copy ``other``'s positions under ``src`` to this map under ``dst``, keeping their file.

        With ``heads``, only the parts of ``src`` whose first key is in it move, each under its new
        key (``{3: 0}``: what was ``src[3]`` becomes ``dst[0]``), in one pass over ``other`` however
        many parts move: merging a long list or mapping part by part would be quadratic.

        >>> base = parse("rules: [{name: a}, {name: b}]", "base.yaml")[1]
        >>> out = SourceMap("child.yaml"); out.graft(base, ("rules",), ("rules",), {1: 0})
        >>> str(out.locate(("rules", 0, "name")))
        'base.yaml:1:27'
        """
        n = len(src)
        for mine, theirs in ((self.values, other.values), (self.keys, other.keys)):
            for loc, spot in theirs.items():
                if loc[:n] != src:
                    continue
                rest = loc[n:]
                if heads is not None:
                    if not rest or rest[0] not in heads:
                        continue
                    rest = (heads[rest[0]], *rest[1:])
                mine[dst + rest] = spot if spot.path else replace(spot, path=other.path)

    def error(self, message: str, loc: Sequence[str | int] = (), **kw: Any) -> RuleError:
        key = kw.pop("key", False)
        return RuleError(message, self.locate(loc, key, kw.get("offset")), loc, **kw)


def read(path: str | Path) -> tuple[Any, SourceMap]:
    """Read a rule file: its data and positions. Raises :class:`RuleFileError` with the place."""
    name = str(path)
    if "\0" in name:
        raise _fail(name.replace("\0", "\\0"), "a file name cannot hold a NUL character")
    try:
        # Opened without blocking and checked before reading: a FIFO or a device given as the rule
        # file would otherwise wait for a writer, or never end.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise _fail(name, "no such file; give the path of a YAML or JSON rule file") from None
    except OSError as exc:
        raise _fail(name, f"cannot be read: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise _fail(name, "is a directory; give the path of a YAML or JSON rule file")
        if not stat.S_ISREG(mode):
            raise _fail(name, "is not a regular file (a pipe, device or socket); give the path of a rule file")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise _fail(name, f"cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)
    fmt = "json" if name.endswith(".json") else "yaml"
    return parse(raw, name, fmt)


def _newcomer_hint(message: str) -> str:
    """What to write instead, for the YAML mistakes a newcomer to rule files makes first."""
    if "alias" in message:  # match: *.bias -- a leading '*' starts a YAML alias
        return "; a value starting with '*' must be quoted: match: '*.bias'"
    if "unknown escape" in message:  # "^layer(\d)" -- double quotes read backslash escapes
        return "; in double quotes YAML reads backslashes as escapes: write the regex in single quotes ('^layer(\\d)')"
    return ""


def parse(raw: bytes | str, path: str = "<rules>", fmt: str = "yaml") -> tuple[Any, SourceMap]:
    """Parse YAML (``fmt="yaml"``) or JSON text into data and a :class:`SourceMap`."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if len(raw) > MAX_BYTES:
        raise _fail(path, f"is larger than {MAX_BYTES // 1024} KiB; a rule file is a short list of rules")
    text = _decode(raw, path)
    if not text.strip():
        raise _fail(path, "is empty; a rule file needs at least 'version: 1' and 'defaults'", 1, 1)
    if fmt == "json":
        return _Json(text, path).document()
    return _Yaml(text, path).document()


def _fail(path: str, message: str, line: int = 0, col: int = 0) -> RuleFileError:
    return RuleFileError([RuleError(message, Location(path, line, col))])


def _decode(raw: bytes, path: str) -> str:
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        raise _fail(path, f"is not UTF-8 text (byte 0x{raw[exc.start]:02x}); save it as UTF-8", line, col) from None


class _SafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader with the YAML 1.2 core schema's plain scalars, as JSON reads them:
    ``010`` is 10 (not octal 8), ``1:30`` and ``1_000`` are text (not base 60 or 1000), ``yes`` and
    ``on`` are text (not booleans), ``1e-3`` is a number."""

    yaml_implicit_resolvers: dict[Any, Any] = {}


for _tag, _pattern, _first in (
    (_BOOL, r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    (_NULL, r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    (_INT, r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (_FLOAT, r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)"
             r"|\.(?:nan|NaN|NAN))$", "-+.0123456789"),
    ("tag:yaml.org,2002:merge", r"^(?:<<)$", "<"),  # only to refuse merge keys by name
):
    _SafeLoader.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))

#: The most digits an integer may have: a float, which every number becomes, ends near 1.8e308.
MAX_INT_DIGITS = 309


def number(text: str) -> int | float:
    """A YAML 1.2 / JSON number's value; ``ValueError`` with the reason for one beyond a float's range.

    >>> number("010"), number("0x1f"), number("-.inf")
    (10, 31, -inf)
    """
    body = text.lstrip("+-")
    sign = -1 if text.startswith("-") else 1
    if body[:2] in ("0o", "0x"):
        value: int | float = sign * int(body[2:], 8 if body[1] == "o" else 16) if len(body) <= 260 else math.inf
    elif body.isdigit():
        # Counted before int() runs: Python refuses more than 4,300 digits with its own error.
        value = int(text) if len(body) <= MAX_INT_DIGITS else math.inf
    elif body.lower() in (".inf", ".nan"):
        return sign * math.inf if body.lower() == ".inf" else math.nan
    else:
        value = float(text)
    if abs(value) > sys.float_info.max:
        raise ValueError(f"number {_clip(text)} is too large (the largest is about 1.8e308)")
    return value


def _clip(text: str) -> str:
    return text if len(text) <= 24 else f"{text[:12]}...{text[-6:]} ({len(text)} characters)"


#: Whether rule files are read with libyaml's C parser (pyyaml ships it where libyaml was found at
#: install time); the pure-Python parser is the fallback, and tests/test_reader_c.py checks they agree.
C_LOADER: bool = bool(getattr(yaml, "__with_libyaml__", False))

#: Characters YAML allows in a stream (its "printable" set); anything else is refused with its place.
_NOT_PRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_CONTROL_NAMES = {0: "NUL", 0x1B: "ESC", 0x7F: "DEL", 0x08: "backspace", 0x0C: "form feed"}


class _Resolver(yaml.resolver.Resolver):
    """The plain-scalar schema of :class:`_SafeLoader`, for tags resolved while composing from events."""

    yaml_implicit_resolvers = _SafeLoader.yaml_implicit_resolvers


class _Yaml:
    def __init__(self, text: str, path: str, c: bool | None = None) -> None:
        self.text = text
        self.map = SourceMap(path)
        self.nodes = 0
        self.open: set[int] = set()  # the collections being read, to refuse an alias to one of them
        self.c = C_LOADER if c is None else c

    def fail(self, message: str, mark: Any) -> RuleFileError:
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
        return _fail(self.map.path, message, line, col)

    def document(self) -> tuple[Any, SourceMap]:
        bad = _NOT_PRINTABLE.search(self.text)
        if bad is not None:
            # Found here, for both parsers alike: PyYAML's reader would give only a character offset.
            code = ord(bad.group())
            name = f" ({_CONTROL_NAMES[code]})" if code in _CONTROL_NAMES else ""
            line = self.text.count("\n", 0, bad.start()) + 1
            col = bad.start() - (self.text.rfind("\n", 0, bad.start()) + 1) + 1
            raise _fail(self.map.path, f"invalid YAML: the character #x{code:04x}{name} is not allowed in YAML "
                        "text; remove it (write it as an escape, such as \\x1b, inside double quotes)", line, col)
        try:
            node = self.compose()
        except yaml.MarkedYAMLError as exc:
            if self.c and "nesting depth" in str(exc.problem):
                # libyaml stops at its own depth (1000), scanning ahead of the events that reach
                # ours: the pure-Python parser finds the place where the 65th level opens.
                return _Yaml(self.text, self.map.path, c=False).document()
            mark = exc.problem_mark or exc.context_mark
            message = exc.problem or exc.context or "invalid YAML"
            if exc.context and exc.problem:
                message = f"{exc.context}, {exc.problem}"
            raise self.fail(f"invalid YAML: {message}{_newcomer_hint(message)}", mark) from None
        except yaml.YAMLError as exc:
            raise self.fail(f"invalid YAML: {exc}", None) from None
        if node is None:
            raise _fail(self.map.path, "holds no document; a rule file needs at least 'version: 1'", 1, 1)
        return self.value(node, ()), self.map

    def compose(self) -> yaml.Node | None:
        """The document's node tree, composed from the parser's events in one pass, without recursion,
        as PyYAML's composer would compose it; depth and document count are bounded on the way."""
        loader = (yaml.CBaseLoader if self.c else yaml.BaseLoader)(self.text)
        resolver = _Resolver()
        anchors: dict[str, yaml.Node] = {}
        stack: list[tuple[yaml.Node, list[Any]]] = []
        root: yaml.Node | None = None
        documents = 0
        try:
            while loader.check_event():
                event = loader.get_event()
                kind = type(event)
                if kind is yaml.ScalarEvent or kind is yaml.AliasEvent:
                    if kind is yaml.AliasEvent:
                        if event.anchor not in anchors:
                            raise yaml.composer.ComposerError(None, None, f"found undefined alias {event.anchor!r}",
                                                              event.start_mark)
                        node = anchors[event.anchor]
                    else:
                        tag = event.tag
                        if tag is None or tag == "!":
                            tag = resolver.resolve(yaml.ScalarNode, event.value, event.implicit)
                        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
                        self._anchor(anchors, event, node)
                    if stack:
                        stack[-1][1].append(node)
                    else:
                        root = node
                elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                    if len(stack) >= MAX_DEPTH:
                        raise self.fail(f"nests deeper than {MAX_DEPTH} levels", event.start_mark)
                    mapping = kind is yaml.MappingStartEvent
                    node_class = yaml.MappingNode if mapping else yaml.SequenceNode
                    tag = event.tag
                    if tag is None or tag == "!":
                        tag = resolver.resolve(node_class, None, event.implicit)
                    node = node_class(tag, [], event.start_mark, None, flow_style=event.flow_style)
                    self._anchor(anchors, event, node)
                    if stack:
                        stack[-1][1].append(node)
                    else:
                        root = node
                    stack.append((node, []))
                elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                    node, items = stack.pop()
                    node.end_mark = event.end_mark
                    if kind is yaml.MappingEndEvent:
                        node.value.extend(zip(items[::2], items[1::2]))
                    else:
                        node.value.extend(items)
                elif kind is yaml.DocumentStartEvent:
                    documents += 1
                    if documents > 1:
                        raise self.fail("holds several YAML documents ('---'); keep one rule file per file",
                                        event.start_mark)
        finally:
            loader.dispose()
        return root

    @staticmethod
    def _anchor(anchors: dict[str, yaml.Node], event: Any, node: yaml.Node) -> None:
        if event.anchor is not None:
            if event.anchor in anchors:  # as PyYAML's composer refuses it
                raise yaml.composer.ComposerError(f"found duplicate anchor {event.anchor!r}; first occurrence",
                                                  anchors[event.anchor].start_mark, "second occurrence",
                                                  event.start_mark)
            anchors[event.anchor] = node

    def value(self, node: yaml.Node, loc: Loc) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.fail(f"expands to more than {MAX_NODES} values (too many aliases?)", node.start_mark)
        mark = node.start_mark
        if isinstance(node, yaml.ScalarNode):
            multi = node.end_mark.line != mark.line
            quote = {"'": "'", '"': '"'}.get(node.style or "", "")
            self.map.values[loc] = Spot(mark.line + 1, mark.column + 1, quote, not multi)
            return self.scalar(node)
        self.map.values[loc] = Spot(mark.line + 1, mark.column + 1, "", False)
        if id(node) in self.open:  # the composer lets an alias point into its own anchor's value
            raise self.fail("an alias refers to the list or mapping that holds it; write the value out", mark)
        self.open.add(id(node))
        try:
            return self.collection(node, loc)
        finally:
            self.open.discard(id(node))

    def collection(self, node: yaml.Node, loc: Loc) -> Any:
        mark = node.start_mark
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ:
                raise self.fail(f"tag '{node.tag}' is not allowed: a rule file holds plain data", mark)
            return [self.value(item, loc + (i,)) for i, item in enumerate(node.value)]
        if node.tag != _MAP:
            raise self.fail(f"tag '{node.tag}' is not allowed: a rule file holds plain data", mark)
        out: dict[str, Any] = {}
        first: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise self.fail("merge keys ('<<') are not supported; write the keys out", key_node.start_mark)
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail("a key must be a plain name, not a list or mapping", key_node.start_mark)
            key = self.scalar(key_node)
            if not isinstance(key, str):
                key = str(key_node.value)
            if key in first:
                seen = first[key].start_mark
                raise self.fail(f"duplicate key '{key}' (first at line {seen.line + 1}); "
                                "remove one of them", key_node.start_mark)
            first[key] = key_node
            km = key_node.start_mark
            self.map.keys[loc + (key,)] = Spot(km.line + 1, km.column + 1)
            out[key] = self.value(value_node, loc + (key,))
        return out

    def scalar(self, node: yaml.ScalarNode) -> Any:
        tag, text = node.tag, node.value
        if tag == _STR:
            return text
        if tag == _NULL and _NULL_TEXT.match(text):
            return None
        if tag == _BOOL and _BOOL_TEXT.match(text):
            return text.lower() == "true"
        if tag in (_INT, _FLOAT) and _NUMBER_TEXT.match(text):
            try:
                return number(text)
            except ValueError as exc:
                raise self.fail(str(exc), node.start_mark) from None
        if tag in (_INT, _FLOAT, _BOOL, _NULL):  # an explicit tag (!!int 1:30) on text the schema does not read so
            raise self.fail(f"'{_clip(text)}' is not a YAML 1.2 {tag.rsplit(':', 1)[1]}", node.start_mark)
        raise self.fail(f"tag '{tag}' is not allowed: a rule file holds plain data", node.start_mark)


_NULL_TEXT = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL_TEXT = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_NUMBER_TEXT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+|[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)"
                          r"(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")


class _Json:
    """A JSON parser that records where each key and value starts. Strict: no NaN, no duplicates."""

    _NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?")
    _SPACE = re.compile(r"[ \t\n\r]*")
    _LITERALS = {"true": True, "false": False, "null": None}

    def __init__(self, text: str, path: str) -> None:
        self.text = text
        self.pos = 0
        self.map = SourceMap(path)
        self.nodes = 0
        # Where each line starts, found once: a position's line is then a binary search, so the
        # reader stays linear in the size of the text (counting newlines per value was quadratic).
        self.lines = [0] + [m.end() for m in re.finditer("\n", text)]

    def spot(self, pos: int | None = None) -> Spot:
        pos = self.pos if pos is None else pos
        line = bisect.bisect_right(self.lines, pos)
        return Spot(line, pos - self.lines[line - 1] + 1)

    def fail(self, message: str, pos: int | None = None) -> RuleFileError:
        spot = self.spot(pos)
        return _fail(self.map.path, f"invalid JSON: {message}", spot.line, spot.col)

    def skip(self) -> None:
        self.pos = self._SPACE.match(self.text, self.pos).end()  # type: ignore[union-attr]

    def document(self) -> tuple[Any, SourceMap]:
        self.skip()
        value = self.value((), 0)
        self.skip()
        if self.pos != len(self.text):
            raise self.fail("extra text after the document")
        return value, self.map

    def value(self, loc: Loc, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise self.fail(f"nests deeper than {MAX_DEPTH} levels")
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.fail(f"holds more than {MAX_NODES} values; a rule file is a short list of rules")
        here = self.spot()
        char = self.text[self.pos : self.pos + 1]
        if char == "{":
            self.map.values[loc] = here
            return self.object(loc, depth)
        if char == "[":
            self.map.values[loc] = here
            return self.array(loc, depth)
        self.map.values[loc] = Spot(here.line, here.col, '"' if char == '"' else "")
        if char == '"':
            return self.string()
        found = self._NUMBER.match(self.text, self.pos)
        if found and found.group():
            try:
                value = number(found.group())
            except ValueError as exc:
                raise _fail(self.map.path, str(exc), here.line, here.col) from None
            self.pos = found.end()
            return value
        for word, literal in self._LITERALS.items():
            if self.text.startswith(word, self.pos):
                self.pos += len(word)
                return literal
        if not char:
            raise self.fail("the text ends where a value was expected")
        raise self.fail(f"unexpected {char!r} where a value was expected")

    def string(self) -> str:
        try:
            value, self.pos = json.decoder.scanstring(self.text, self.pos + 1, True)  # type: ignore[attr-defined]
        except json.JSONDecodeError as exc:
            raise self.fail(exc.msg, exc.pos) from None
        return value

    def object(self, loc: Loc, depth: int) -> dict[str, Any]:
        self.pos += 1
        out: dict[str, Any] = {}
        first: dict[str, Spot] = {}
        self.skip()
        if self.text.startswith("}", self.pos):
            self.pos += 1
            return out
        while True:
            self.skip()
            if not self.text.startswith('"', self.pos):
                raise self.fail("expected a key in double quotes")
            key_pos = self.pos
            key_spot = self.spot()
            key = self.string()
            if key in first:
                raise self.fail(f"duplicate key '{key}' (first at line {first[key].line}); remove one of them",
                                key_pos)
            first[key] = key_spot
            self.map.keys[loc + (key,)] = key_spot
            self.skip()
            if not self.text.startswith(":", self.pos):
                raise self.fail("expected ':' after the key")
            self.pos += 1
            self.skip()
            out[key] = self.value(loc + (key,), depth + 1)
            self.skip()
            if self.text.startswith(",", self.pos):
                self.pos += 1
                continue
            if self.text.startswith("}", self.pos):
                self.pos += 1
                return out
            raise self.fail("expected ',' or '}'")

    def array(self, loc: Loc, depth: int) -> list[Any]:
        self.pos += 1
        out: list[Any] = []
        self.skip()
        if self.text.startswith("]", self.pos):
            self.pos += 1
            return out
        while True:
            self.skip()
            out.append(self.value(loc + (len(out),), depth + 1))
            self.skip()
            if self.text.startswith(",", self.pos):
                self.pos += 1
                continue
            if self.text.startswith("]", self.pos):
                self.pos += 1
                return out
            raise self.fail("expected ',' or ']'")
