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
import unicodedata
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
        raw = raw.encode("utf-8", "surrogatepass")  # a lone surrogate is then refused with its place
    if len(raw) > MAX_BYTES:
        raise _fail(path, f"is larger than {MAX_BYTES // 1024} KiB; a rule file is a short list of rules")
    text = _lines(_decode(raw, path))
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
        start = exc.start
        # Lines as an editor counts them: CR LF, CR alone and LF alone each end one.
        before = raw[:start]
        line = before.count(b"\n") + before.count(b"\r") - before.count(b"\r\n") + 1
        begins = max(before.rfind(b"\n"), before.rfind(b"\r")) + 1
        col = len(raw[begins:start].decode("utf-8")) + 1
        byte = raw[start]
        if start == 0 and raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
            why = "is UTF-16 text (it starts with UTF-16's byte order mark); save it as UTF-8"
        elif byte == 0xED and raw[start + 1 : start + 2] >= b"\xa0":
            why = (f"is not UTF-8 text: byte offset {start} holds a UTF-16 surrogate written as UTF-8 (CESU-8, or "
                   "Java's modified UTF-8), which UTF-8 does not allow; save it as UTF-8")
        else:
            why = f"is not UTF-8 text (byte 0x{byte:02x} at byte offset {start}); save it as UTF-8"
        raise _fail(path, why, line, col) from None


def _lines(text: str) -> str:
    """``text`` with every line ending as LF. YAML reads CR LF and a CR alone as line ends (and a line
    end inside a scalar as LF), so this changes no value; it makes every position count lines as an
    editor does, the JSON reader's and ours alike."""
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


#: Characters YAML allows in a stream (its "printable" set); anything else is refused with its place.
_NOT_PRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_CONTROL_NAMES = {0: "NUL", 0x1B: "ESC", 0x7F: "DEL", 0x08: "backspace", 0x0C: "form feed"}
#: Characters that make the text read differently to a person, an editor or another YAML reader
#: than to lrrules: each is refused wherever it stands, raw; an escape inside double quotes
#: (``"\u2028"``) still writes it where it is meant.
_LYING = re.compile("[\x85\u2028\u2029\ufeff\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
_REFUSED = re.compile(f"{_NOT_PRINTABLE.pattern}|{_LYING.pattern}")
#: Characters that do not show, or show as a plain space: every format character (Unicode's Cf:
#: zero-width spaces and joiners, U+2060 WORD JOINER, U+FEFF, the soft hyphen, tag characters), the
#: spaces other than U+0020, the Hangul fillers and braille blank, the combining grapheme joiner and
#: the variation selectors. Raw inside a key or value they make it read as one it is not
#: (``fc.\u200bweight`` shows as ``fc.weight``), so they are refused there; in a comment they change
#: nothing, and an escape inside double quotes shows what it writes.
_INVISIBLE = re.compile(
    "[\u00a0\u00ad\u034f\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u115f\u1160\u1680\u180e"
    "\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u2800\u3000\u3164\ufe00-\ufe0f\ufeff"
    "\uffa0\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f\U000e0100-\U000e01ef]")


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
    char = bad.group()
    code = ord(char)
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


def plain_number(text: str) -> int | float | None:
    """``text`` read as a plain YAML scalar of a rule file: its number, or ``None`` where the file
    would read text, a boolean or null (``yes``, ``true``, ``1:30``, ``1_000``); ``ValueError`` for a
    number beyond a float's range. ``--set`` reads its values with it, as the file reads them.

    >>> plain_number("010"), plain_number("1e-3"), plain_number("yes")
    (10, 0.001, None)
    """
    return number(text) if _NUMBER_TEXT.match(text) else None


def _clip(text: str) -> str:
    return text if len(text) <= 24 else f"{text[:12]}...{text[-6:]} ({len(text)} characters)"


#: Whether rule files are read with libyaml's C parser (pyyaml ships it where libyaml was found at
#: install time); the pure-Python parser is the fallback, and tests/test_reader_c.py checks they agree.
C_LOADER: bool = bool(getattr(yaml, "__with_libyaml__", False))

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
        if mark is not None and not 0 <= mark.index < len(self.text):
            # PyYAML places "the text ends here" on a line past the last one: the end, as an editor shows it.
            line, col = _line_col(self.text, len(self.text))
        return _fail(self.map.path, message, line, col)

    def document(self) -> tuple[Any, SourceMap]:
        _check_text(self.text, self.map.path)  # here, for both parsers alike, with line and column
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
        # How many levels of lists and mappings each finished collection holds, aliases expanded:
        # an alias adds its anchor's levels where it stands, so a chain of aliases, each one level
        # under the limit, is refused at the alias that passes it (not by Python's recursion limit).
        levels: dict[int, int] = {}
        stack: list[tuple[yaml.Node, list[Any]]] = []
        root: yaml.Node | None = None
        documents = 0
        invisible = _INVISIBLE.search(self.text) is not None  # then each scalar is looked at as written
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
                        if len(stack) + levels.get(id(node), 0) > MAX_DEPTH:
                            raise self.fail(
                                f"nests deeper than {MAX_DEPTH} levels once the alias *{event.anchor} is expanded "
                                f"(its anchor, at line {node.start_mark.line + 1}, holds {levels[id(node)]} levels "
                                f"and the alias stands {len(stack)} deep); write the value out with fewer levels",
                                event.start_mark)
                    else:
                        if invisible:
                            _check_visible(self.text, event.start_mark.index, event.end_mark.index, self.map.path)
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
                    levels[id(node)] = 1 + max((levels.get(id(item), 0) for item in items), default=0)
                elif kind is yaml.DocumentStartEvent:
                    documents += 1
                    if documents > 1:
                        raise self.fail("holds several YAML documents ('---'); keep one rule file per file",
                                        event.start_mark)
                    self._directives(event)
        finally:
            loader.dispose()
        return root

    def _directives(self, event: Any) -> None:
        """Refuse the directives under which another reader would read this file differently."""
        if event.version is None and not event.tags:
            return
        places = {m.group(1): m for m in _DIRECTIVE.finditer(self.text[: _document_start(self.text)])}
        if event.version is not None and event.version != (1, 2):
            found = places.get("YAML")
            version = ".".join(map(str, event.version))
            raise _fail(self.map.path, f"the directive '%YAML {version}' asks for another YAML than lrrules reads: "
                        "rule files are read as YAML 1.2 (where 010 is 10 and yes, on and 1:30 are text; in "
                        "YAML 1.1 they are 8, true and 90), so the file would mean one thing to lrrules and "
                        "another to a YAML 1.1 reader; remove the directive (or write '%YAML 1.2')",
                        *_line_col(self.text, found.start() if found else 0))
        for handle, prefix in (event.tags or {}).items():
            if "python" in prefix.lower():
                found = next((m for m in _DIRECTIVE.finditer(self.text[: _document_start(self.text)])
                              if m.group(1) == "TAG" and handle in m.group()), None)
                raise _fail(self.map.path, f"the directive '%TAG {handle} {prefix}' names Python tags, which would "
                            "build Python objects; a rule file holds plain data: remove it",
                            *_line_col(self.text, found.start() if found else 0))

    def _anchor(self, anchors: dict[str, yaml.Node], event: Any, node: yaml.Node) -> None:
        if event.anchor is not None:
            if event.anchor in anchors:
                # YAML 1.2 lets the second definition win for the aliases after it, PyYAML refuses it,
                # other readers keep the first: a file that means different things is refused.
                first = anchors[event.anchor].start_mark
                raise self.fail(f"the anchor &{event.anchor} is defined twice (first at line {first.line + 1}, "
                                f"column {first.column + 1}); YAML readers disagree on which one an alias means: "
                                "give each anchor its own name", event.start_mark)
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
            if (surrogate := _SURROGATE.search(text)) is not None:
                raise self.fail(_SURROGATE_MESSAGE.format(ord(surrogate.group())), node.start_mark)
            return text
        if tag == _NULL and _NULL_TEXT.match(text):
            return None
        if tag == _BOOL and _BOOL_TEXT.match(text):
            return text.lower() == "true"
        if tag in (_INT, _FLOAT) and _NUMBER_TEXT.match(text):
            try:
                value = number(text)
            except ValueError as exc:
                raise self.fail(str(exc), node.start_mark) from None
            if tag == _FLOAT:  # !!float 1 is the float 1.0, as YAML 1.2's core schema reads it
                return float(value)
            if isinstance(value, int):
                return value
            # an explicit !!int on 1.5: not an integer, so not read as one
        if tag in (_INT, _FLOAT, _BOOL, _NULL):  # an explicit tag (!!int 1:30) on text the schema does not read so
            raise self.fail(f"'{_clip(text)}' is not a YAML 1.2 {tag.rsplit(':', 1)[1]}", node.start_mark)
        raise self.fail(f"tag '{tag}' is not allowed: a rule file holds plain data", node.start_mark)


_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_MESSAGE = ("an escape writes U+{:04X}, a lone UTF-16 surrogate, which is no character (no name holds "
                      "it); write the character itself, or both halves of a pair as one \\U escape")

_DIRECTIVE = re.compile(r"^%(YAML|TAG)\b[^\n]*", re.M)


def _document_start(text: str) -> int:
    """Where the first document's ``---`` stands (directives come before it); the end if none."""
    found = re.search(r"^---(?=\s|$)", text, re.M)
    return found.start() if found else len(text)


def _line_col(text: str, pos: int) -> tuple[int, int]:
    """The 1-based line and column of offset ``pos`` of ``text`` (lines end at ``\\n`` alone)."""
    return text.count("\n", 0, pos) + 1, pos - (text.rfind("\n", 0, pos) + 1) + 1


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
        self.invisible = _INVISIBLE.search(text) is not None

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
        _check_text(self.text, self.map.path)
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
        start = self.pos
        try:
            value, self.pos = json.decoder.scanstring(self.text, self.pos + 1, True)  # type: ignore[attr-defined]
        except json.JSONDecodeError as exc:
            raise self.fail(exc.msg, exc.pos) from None
        if self.invisible:
            _check_visible(self.text, start, self.pos, self.map.path)
        bad = _SURROGATE.search(value)
        if bad:
            raise _fail(self.map.path, _SURROGATE_MESSAGE.format(ord(bad.group())), *_line_col(self.text, start))
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
