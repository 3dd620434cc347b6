"""Reading a rule file's text into plain data, with the line and column of every key and value.

YAML goes through PyYAML's composer (bounded on the way) and becomes data node by node: tags that
would build objects, duplicate and merge keys and alias bombs are refused. JSON is read by ``json``
and placed by the same composer. A :class:`SourceMap` turns a path in the document into ``file:line:col``.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import sys
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

from .errors import Location, RuleError, RuleFileError

MAX_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_NODES = 200_000

Loc = tuple[str | int, ...]

_STR, _INT, _FLOAT, _BOOL, _NULL, _SEQ, _MAP = (
    "tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null", "seq", "map"))


@dataclass(frozen=True)
class Spot:
    """Where a key or value starts (1-based), how a scalar was quoted, and its file if not the map's."""

    line: int
    col: int
    quote: str = ""
    single_line: bool = True
    path: str = ""


@dataclass
class SourceMap:
    """Positions of the values (and of the keys) of one document, by their path in it."""

    path: str
    values: dict[Loc, Spot] = field(default_factory=dict)
    keys: dict[Loc, Spot] = field(default_factory=dict)

    def locate(self, loc: Sequence[str | int], key: bool = False, offset: int | None = None) -> Location:
        """``file:line:col`` of ``loc`` (its key with ``key``), or of its nearest enclosing part that
        has one; ``offset`` moves the column into a one-line scalar's text."""
        loc = tuple(loc)
        spot = self.keys.get(loc) if key else None
        spot = spot or next((self.values[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in self.values), None)
        if spot is None:
            return Location(self.path)
        col = spot.col + (len(spot.quote) + offset if offset is not None and spot.single_line else 0)
        return Location(spot.path or self.path, spot.line, col)

    def graft(self, other: SourceMap, src: Loc, dst: Loc, heads: Mapping[str | int, str | int] | None = None) -> None:
        """Copy ``other``'s positions under ``src`` to this map under ``dst``, keeping their file; with
        ``heads``, only the parts whose first key is in it, each under its new key (``{3: 0}``)."""
        n = len(src)
        for mine, theirs in ((self.values, other.values), (self.keys, other.keys)):
            for loc, spot in theirs.items():
                rest = loc[n:]
                if loc[:n] != src or heads is not None and (not rest or rest[0] not in heads):
                    continue
                if heads is not None:
                    rest = (heads[rest[0]], *rest[1:])
                mine[dst + rest] = spot if spot.path else replace(spot, path=other.path)

    def error(self, message: str, loc: Sequence[str | int] = (), key: bool = False, expr: str = "",
              offset: int | None = None) -> RuleError:
        """A :class:`RuleError` placed at ``loc`` (at its key with ``key``)."""
        return RuleError(message, self.locate(loc, key, offset), loc, expr, offset)


def read(path: str | os.PathLike[str]) -> tuple[Any, SourceMap]:
    """Read a rule file: its data and positions. Raises :class:`RuleFileError` with the place."""
    name = str(path)
    if "\0" in name:
        raise _fail(name.replace("\0", "\\0"), "a file name cannot hold a NUL character")
    try:
        # Opened without blocking and checked before reading: a FIFO or a device would never end.
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
    return parse(raw, name, "json" if name.endswith(".json") else "yaml")


def parse(raw: bytes | str, path: str = "<rules>", fmt: str = "yaml") -> tuple[Any, SourceMap]:
    """Parse YAML (``fmt="yaml"``) or JSON text into data and a :class:`SourceMap`.

    >>> parse("lr: 1e-3\\nname: 010\\n")[0]
    {'lr': 0.001, 'name': 10}
    """
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")  # a lone surrogate is then refused with its place
    if len(raw) > MAX_BYTES:
        raise _fail(path, f"is larger than {MAX_BYTES // 1024} KiB; a rule file is a short list of rules")
    # Every line end as LF: YAML reads CR LF and CR as line ends, so no value changes, and every
    # position counts lines as an editor does.
    text = _decode(raw, path).replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise _fail(path, "is empty; a rule file needs at least 'version: 1' and 'defaults'", 1, 1)
    _check_text(text, path)
    return _json(text, path) if fmt == "json" else _yaml(text, path)


def _fail(path: str, message: str, line: int = 0, col: int = 0) -> RuleFileError:
    return RuleFileError([RuleError(message, Location(path, line, col))])


def _line_col(text: str, pos: int) -> tuple[int, int]:
    return text.count("\n", 0, pos) + 1, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _decode(raw: bytes, path: str) -> str:
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        start = exc.start
        before = raw[:start]  # lines as an editor counts them: CR LF, CR and LF each end one
        line = before.count(b"\n") + before.count(b"\r") - before.count(b"\r\n") + 1
        col = len(raw[max(before.rfind(b"\n"), before.rfind(b"\r")) + 1 : start].decode("utf-8")) + 1
        if start == 0 and raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
            why = "is UTF-16 text (it starts with UTF-16's byte order mark); save it as UTF-8"
        elif raw[start] == 0xED and raw[start + 1 : start + 2] >= b"\xa0":
            why = (f"is not UTF-8 text: byte offset {start} holds a UTF-16 surrogate written as UTF-8 (CESU-8, or "
                   "Java's modified UTF-8), which UTF-8 does not allow; save it as UTF-8")
        else:
            why = f"is not UTF-8 text (byte 0x{raw[start]:02x} at byte offset {start}); save it as UTF-8"
        raise _fail(path, why, line, col) from None


#: Characters YAML allows in a stream (its "printable" set); anything else is refused with its place.
_NOT_PRINTABLE = "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
_CONTROL_NAMES = {0: "NUL", 0x1B: "ESC", 0x7F: "DEL", 0x08: "backspace", 0x0C: "form feed"}
#: Characters that make the text read differently to a person, an editor or another reader than to
#: lrrules: refused raw wherever they stand; an escape in double quotes still writes one.
_LYING = re.compile("[\x85\u2028\u2029\ufeff\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
_REFUSED = re.compile(f"{_NOT_PRINTABLE}|{_LYING.pattern}")
#: Characters that do not show, or show as a plain space (Unicode's Cf, the other spaces, fillers,
#: variation selectors): raw in a key or value (``fc.\u200bweight`` shows as ``fc.weight``) they are
#: refused; in a comment they change nothing, and an escape in double quotes shows what it writes.
_INVISIBLE = re.compile(
    "[\u00a0\u00ad\u034f\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u115f\u1160\u1680\u180e"
    "\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u2800\u3000\u3164\ufe00-\ufe0f\ufeff"
    "\uffa0\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f\U000e0100-\U000e01ef]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_MESSAGE = ("an escape writes U+{:04X}, a lone UTF-16 surrogate, which is no character (no name holds "
                      "it); write the character itself, or both halves of a pair as one \\U escape")


def _check_visible(text: str, start: int, end: int, path: str) -> None:
    """Refuse a character of ``text[start:end]`` (a key or value as written) that does not show."""
    bad = _INVISIBLE.search(text, start, end)
    if bad is not None:
        code = ord(bad.group())
        name = unicodedata.name(bad.group(), f"U+{code:04X}")
        raise _fail(path, f"a key or value holds U+{code:04X} {name}, which does not show (or shows as a plain "
                    "space): it would read as one it is not (fc.\u200bweight shows as fc.weight); remove it, or "
                    f"if it is meant, write it as an escape, \\u{code:04x}, inside double quotes",
                    *_line_col(text, bad.start()))


def _check_text(text: str, path: str) -> None:
    """Refuse the first character of ``text`` that YAML does not allow or that would make it lie."""
    bad = _REFUSED.search(text)
    if bad is None:
        return
    char, code = bad.group(), ord(bad.group())
    if code in (0x85, 0x2028, 0x2029):
        why = (f"the character U+{code:04X} {unicodedata.name(char, 'NEXT LINE (NEL)')} is a line end to some "
               "readers (YAML 1.1 and PyYAML, JavaScript, some editors) and not to others (YAML 1.2, JSON): a "
               "comment or a value would end in one place for one and in another for the next; remove it")
    elif code == 0xFEFF:
        why = ("a byte order mark (U+FEFF) stands inside the text, where it is invisible and a YAML reader "
               "takes it for the start of a new stream; remove it")
    elif _LYING.match(char):
        why = (f"the bidirectional control U+{code:04X} {unicodedata.name(char)} shows the line in another order "
               "than it reads (a comment can hide a value, a name look like another); remove it")
    else:
        name = f" ({_CONTROL_NAMES[code]})" if code in _CONTROL_NAMES else ""
        why = f"the character #x{code:04x}{name} is not allowed in a rule file's text (only printable characters are); remove it"
    escape = f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    raise _fail(path, f"{why} (or write it as an escape, {escape}, inside double quotes)", *_line_col(text, bad.start()))


#: The plain scalars of YAML 1.2's core schema, as JSON reads them: ``010`` is 10, ``1:30``,
#: ``1_000``, ``yes`` and ``on`` are text, ``1e-3`` is a number.
_NULL_TEXT = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL_TEXT = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT_TEXT = r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+"
_FLOAT_TEXT = r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
_NUMBER_TEXT = re.compile(f"^(?:{_INT_TEXT}|{_FLOAT_TEXT})$")
#: The most digits an integer may have: a float, which every number becomes, ends near 1.8e308.
MAX_INT_DIGITS = 309


def number(text: str) -> int | float:
    """A YAML 1.2 / JSON number's value (``010`` is 10); ``ValueError`` for one beyond a float's range."""
    body = text.lstrip("+-")
    sign = -1 if text.startswith("-") else 1
    if body[:2] in ("0o", "0x"):
        value: int | float = sign * int(body[2:], 8 if body[1] == "o" else 16) if len(body) <= 260 else math.inf
    elif body.isdigit():  # counted before int() runs: Python refuses more than 4,300 digits itself
        value = int(text) if len(body) <= MAX_INT_DIGITS else math.inf
    elif body.lower() in (".inf", ".nan"):
        return sign * math.inf if body.lower() == ".inf" else math.nan
    else:
        value = float(text)
    if abs(value) > sys.float_info.max:
        raise ValueError(f"number {_clip(text)} is too large (the largest is about 1.8e308)")
    return value


def plain_number(text: str) -> int | float | None:
    """``text`` read as a plain YAML scalar of a rule file: its number, or ``None`` where the file reads
    something else (``--set`` reads its values so).

    >>> plain_number("010"), plain_number("1e-3"), plain_number("yes")
    (10, 0.001, None)
    """
    return number(text) if _NUMBER_TEXT.match(text) else None


def _clip(text: str) -> str:
    return text if len(text) <= 24 else f"{text[:12]}...{text[-6:]} ({len(text)} characters)"


def _newcomer_hint(message: str) -> str:
    """What to write instead, for the YAML mistakes a newcomer to rule files makes first."""
    if "alias" in message:  # match: *.bias -- a leading '*' starts a YAML alias
        return "; a value starting with '*' must be quoted: match: '*.bias'"
    if "unknown escape" in message:  # "^layer(\d)" -- double quotes read backslash escapes
        return "; in double quotes YAML reads backslashes as escapes: write the regex in single quotes ('^layer(\\d)')"
    return ""


class _Composer(yaml.SafeLoader):
    """PyYAML's composer with YAML 1.2's plain scalars and a rule file's limits; :meth:`value` turns
    its nodes into plain data and positions."""

    yaml_implicit_resolvers: dict[Any, Any] = {}

    def __init__(self, text: str, path: str, json_text: bool = False) -> None:
        super().__init__(text)
        self.text, self.path, self.json, self.depth, self.nodes = text, path, json_text, 0, 0
        self.levels: dict[int, int] = {}  # how many levels each collection holds, aliases expanded
        self.invisible = _INVISIBLE.search(text) is not None
        self.map = SourceMap(path)
        self.open: set[int] = set()  # the collections being read, to refuse an alias into one of them

    def fail(self, message: str, mark: Any) -> RuleFileError:
        if mark is None or not 0 <= mark.index < len(self.text):  # PyYAML places the end past the last line
            return _fail(self.path, message, *(_line_col(self.text, len(self.text)) if mark else (0, 0)))
        return _fail(self.path, message, mark.line + 1, mark.column + 1)

    def event(self) -> Any:  # the next event, not taken; PyYAML's stubs leave it untyped
        return self.peek_event()  # type: ignore[no-untyped-call]

    def single(self) -> yaml.Node | None:
        node = None
        if self.check_node():  # takes the stream's start; then whether a document follows
            self.directives(self.event())
            node = self.compose_document()
        if not self.check_event(yaml.StreamEndEvent):
            raise self.fail("holds several YAML documents ('---'); keep one rule file per file", self.event().start_mark)
        return node

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.event()
        if isinstance(event, yaml.AliasEvent):
            node = self.anchors.get(event.anchor)
            if node is not None and self.depth + self.levels.get(id(node), 0) > MAX_DEPTH:
                raise self.fail(
                    f"nests deeper than {MAX_DEPTH} levels once the alias *{event.anchor} is expanded "
                    f"(its anchor, at line {node.start_mark.line + 1}, holds {self.levels[id(node)]} levels "
                    f"and the alias stands {self.depth} deep); write the value out with fewer levels",
                    event.start_mark)
            return super().compose_node(parent, index)
        if event.anchor in self.anchors:
            # YAML 1.2 lets the second definition win for the aliases after it, PyYAML refuses it,
            # other readers keep the first: a file that means different things is refused.
            first = self.anchors[event.anchor].start_mark
            raise self.fail(f"the anchor &{event.anchor} is defined twice (first at line {first.line + 1}, "
                            f"column {first.column + 1}); YAML readers disagree on which one an alias means: "
                            "give each anchor its own name", event.start_mark)
        if isinstance(event, yaml.ScalarEvent):
            if self.invisible and event.start_mark and event.end_mark:
                _check_visible(self.text, event.start_mark.index, event.end_mark.index, self.path)
            return super().compose_node(parent, index)
        if self.depth >= MAX_DEPTH:
            raise self.fail(f"nests deeper than {MAX_DEPTH} levels", event.start_mark)
        self.depth += 1
        node = super().compose_node(parent, index)
        self.depth -= 1
        parts = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else node.value if node else []
        self.levels[id(node)] = 1 + max((self.levels.get(id(part), 0) for part in parts), default=0)
        return node

    def directives(self, event: Any) -> None:
        """Refuse the directives under which another reader would read this file differently."""
        if event.version is not None and event.version != (1, 2):
            raise _fail(self.path, f"the directive '%YAML {'.'.join(map(str, event.version))}' asks for another "
                        "YAML than lrrules reads: rule files are read as YAML 1.2 (where 010 is 10 and yes, on and "
                        "1:30 are text; in YAML 1.1 they are 8, true and 90), so the file would mean one thing to "
                        "lrrules and another to a YAML 1.1 reader; remove the directive (or write '%YAML 1.2')",
                        *self.line_of(r"^%YAML\b"))
        for handle, prefix in (event.tags or {}).items():
            if "python" in prefix.lower():
                raise _fail(self.path, f"the directive '%TAG {handle} {prefix}' names Python tags, which would "
                            "build Python objects; a rule file holds plain data: remove it",
                            *self.line_of(rf"^%TAG[ \t]+{re.escape(handle)}[ \t]"))

    def line_of(self, pattern: str) -> tuple[int, int]:
        found = re.search(pattern, self.text, re.M)  # a line that starts with '%' is a directive
        return _line_col(self.text, found.start() if found else 0)

    def value(self, node: yaml.Node, loc: Loc) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.fail(f"expands to more than {MAX_NODES} values (too many aliases?)", node.start_mark)
        mark = node.start_mark
        if isinstance(node, yaml.ScalarNode):
            quote = node.style if node.style in ("'", '"') else ""
            self.map.values[loc] = Spot(mark.line + 1, mark.column + 1, quote, node.end_mark.line == mark.line)
            return self.scalar(node)
        self.map.values[loc] = Spot(mark.line + 1, mark.column + 1, "", False)
        if id(node) in self.open:  # the composer lets an alias point into its own anchor's value
            raise self.fail("an alias refers to the list or mapping that holds it; write the value out", mark)
        if node.tag not in (_SEQ, _MAP):
            raise self.fail(f"tag '{node.tag}' is not allowed: a rule file holds plain data", mark)
        self.open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, loc)
            return [self.value(item, loc + (i,)) for i, item in enumerate(node.value)]
        finally:
            self.open.discard(id(node))

    def mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            mark = key_node.start_mark
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise self.fail("merge keys ('<<') are not supported; write the keys out", mark)
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail("a key must be a plain name, not a list or mapping", mark)
            key = self.scalar(key_node)
            key = key if isinstance(key, str) else str(key_node.value)
            if (first := self.map.keys.get(loc + (key,))) is not None:
                raise self.fail(("invalid JSON: " if self.json else "") +
                                f"duplicate key '{key}' (first at line {first.line}); remove one of them", mark)
            self.map.keys[loc + (key,)] = Spot(mark.line + 1, mark.column + 1)
            out[key] = self.value(value_node, loc + (key,))
        return out

    def scalar(self, node: yaml.ScalarNode) -> Any:
        tag, text, mark = node.tag, node.value, node.start_mark
        if tag == _STR:
            if self.json and not node.style:  # NaN, Infinity: what json reads and JSON is not
                raise self.fail(f"invalid JSON: {text} is no JSON value; write a finite number", mark)
            if self.json:  # JSON writes a character beyond U+FFFF as two escapes, a pair: one character
                text = text.encode("utf-16", "surrogatepass").decode("utf-16", "surrogatepass")
            if (surrogate := _SURROGATE.search(text)) is not None:
                raise self.fail(_SURROGATE_MESSAGE.format(ord(surrogate.group())), mark)
            return text
        if tag == _NULL and _NULL_TEXT.match(text):
            return None
        if tag == _BOOL and _BOOL_TEXT.match(text):
            return text.lower() == "true"
        if tag in (_INT, _FLOAT) and _NUMBER_TEXT.match(text):
            try:
                value = number(text)
            except ValueError as exc:
                raise self.fail(str(exc), mark) from None
            if tag == _FLOAT:  # !!float 1 is the float 1.0, as YAML 1.2's core schema reads it
                return float(value)
            if isinstance(value, int):  # an explicit !!int on 1.5 is not read as one
                return value
        if tag in (_INT, _FLOAT, _BOOL, _NULL):  # an explicit tag (!!int 1:30) on text the schema does not read so
            raise self.fail(f"'{_clip(text)}' is not a YAML 1.2 {tag.rsplit(':', 1)[1]}", mark)
        raise self.fail(f"tag '{tag}' is not allowed: a rule file holds plain data", mark)


for _tag, _pattern, _first in (
    (_BOOL, _BOOL_TEXT.pattern, "tTfF"), (_NULL, _NULL_TEXT.pattern, ["~", "n", "N", ""]),
    (_INT, f"^(?:{_INT_TEXT})$", "-+0123456789"), (_FLOAT, f"^(?:{_FLOAT_TEXT})$", "-+.0123456789"),
    ("tag:yaml.org,2002:merge", r"^(?:<<)$", "<"),  # only to refuse merge keys by name
):
    _Composer.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))


def _yaml(text: str, path: str, json_text: bool = False) -> tuple[Any, SourceMap]:
    composer = _Composer(text, path, json_text)
    try:
        node = composer.single()
    except yaml.MarkedYAMLError as exc:
        message = f"{exc.context}, {exc.problem}" if exc.context and exc.problem else exc.problem or exc.context
        raise composer.fail(f"invalid YAML: {message}{_newcomer_hint(message or '')}",
                            exc.problem_mark or exc.context_mark) from None
    except yaml.YAMLError as exc:
        raise composer.fail(f"invalid YAML: {exc}", None) from None
    finally:
        composer.dispose()
    if node is None:
        raise _fail(path, "holds no document; a rule file needs at least 'version: 1'", 1, 1)
    return composer.value(node, ()), composer.map


def _json(text: str, path: str) -> tuple[Any, SourceMap]:
    """Strict JSON: ``json`` reads the data and its syntax errors; the YAML composer places every key and
    value and refuses NaN, duplicates and the same limits."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(path, f"invalid JSON: {exc.msg}", exc.lineno, exc.colno) from None
    except (RecursionError, ValueError):  # deeper than json goes, or an integer of 4,300 digits:
        data = None  # refused by the composer, with its place
    # YAML wants a key and its ':' on one line; JSON does not: move each ':' up to its key, keeping
    # every offset (a string then spaces then ':' is a key in JSON that json.loads took).
    placed = re.sub(r'("(?:[^"\\]|\\.)*")(\s+):', lambda m: m[1] + ":" + m[2], text.replace("\t", " "))
    found, source = _yaml(placed, path, json_text=True)
    return found if data is None else data, source
