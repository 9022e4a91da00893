"""Read YAML (and JSON, which is YAML) written by someone else: bounded, strict, JSON-shaped.

``yaml.safe_load`` is safe from code execution but not from hostile input: a few hundred bytes of
nested aliases ("billion laughs") expand to gigabytes once anything walks the value, deep nesting
ends in a RecursionError, and a duplicated key silently keeps the last value. :class:`StrictLoader`
(a ``yaml.SafeLoader``) refuses, each with the line and column:

* documents nested deeper than :data:`MAX_DEPTH` collections (aliases counted as expanded);
* aliases that together expand to more than :data:`MAX_ALIAS_NODES` nodes, and aliases that refer
  to a node containing them (recursive values). Aliases stay allowed for honest reuse, e.g. one
  list of templates used twice;
* duplicate keys in a mapping (the message names the first occurrence);
* anything JSON cannot hold: non-string mapping keys (``1:``, ``yes:``, ``~:`` -- quote them) and
  the tags ``!!binary``, ``!!set``, ``!!omap``, ``!!pairs``, ``!!timestamp``. Unquoted dates stay
  strings (``2024-01-01`` is not turned into a ``datetime.date``).

:func:`read_yaml_file` also bounds the bytes read (:data:`MAX_FILE_BYTES` by default), and every
refusal is one line (a :class:`~harness.errors.HarnessError` of the caller's choice).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import HarnessError, SpecError

#: Deepest nesting of collections (a top-level mapping is depth 1).
MAX_DEPTH = 64
#: Most nodes that all aliases of one document may expand to, together.
MAX_ALIAS_NODES = 100_000
#: Largest file :func:`read_yaml_file` reads unless told otherwise.
MAX_FILE_BYTES = 1 * 2**20

_MERGE_TAG = "tag:yaml.org,2002:merge"
_REFUSED_TAGS = ("binary", "set", "omap", "pairs", "timestamp")


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with bounded nesting and alias expansion, no duplicate or non-string keys,
    and JSON types only (see the module docstring)."""

    max_depth = MAX_DEPTH
    max_alias_nodes = MAX_ALIAS_NODES

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0
        self._alias_nodes = 0
        # id(node) -> (expanded size, expanded depth) of every node composed so far; the nodes stay
        # referenced by the document, so their ids are stable while it is composed
        self._extent: dict[int, tuple[int, int]] = {}

    # -- composing: nesting depth and alias expansion -----------------------------------------------

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None:  # an undefined alias is reported by PyYAML itself
                extent = self._extent.get(id(target))
                if extent is None:
                    raise yaml.composer.ComposerError(
                        None, None, f"alias *{event.anchor} refers to a node that contains it (recursive value)",
                        event.start_mark)
                size, depth = extent
                self._alias_nodes += size
                if self._alias_nodes > self.max_alias_nodes:
                    raise yaml.composer.ComposerError(
                        None, None, f"aliases expand to more than {self.max_alias_nodes} nodes "
                        "(an alias bomb?); write the values out or reuse less", event.start_mark)
                if self._depth + depth > self.max_depth:
                    raise yaml.composer.ComposerError(
                        None, None, f"alias *{event.anchor} nests values deeper than {self.max_depth} levels",
                        event.start_mark)
            return super().compose_node(parent, index)
        event = self.peek_event()
        collection = isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent))
        if collection and self._depth >= self.max_depth:
            raise yaml.composer.ComposerError(None, None, f"values nested deeper than {self.max_depth} levels",
                                              event.start_mark)
        self._depth += collection
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= collection
        self._extent[id(node)] = self._measure(node)
        return node

    def _measure(self, node: Any) -> tuple[int, int]:
        """(expanded size, expanded depth) of a just-composed node from its children's."""
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        else:
            return 1, 0
        extents = [self._extent.get(id(child), (1, 0)) for child in children]
        return 1 + sum(s for s, _ in extents), 1 + max((d for _, d in extents), default=0)

    # -- constructing: keys and types -----------------------------------------------------------------

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            first: dict[str, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:  # ``<<: *base``: explicit keys may override merged ones
                    continue
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    raise yaml.constructor.ConstructorError(
                        None, None, f"mapping keys must be strings, found {type(key).__name__} {key!r} "
                        "(quote the key)", key_node.start_mark)
                if key in first:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first at line {first[key].line + 1})",
                        key_node.start_mark)
                first[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)

    def construct_refused(self, node: Any) -> Any:
        raise yaml.constructor.ConstructorError(
            None, None, f"unsupported tag {node.tag!r} (only JSON values: strings, numbers, booleans, null, "
            "lists and mappings)", node.start_mark)


for _tag in _REFUSED_TAGS:
    StrictLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", StrictLoader.construct_refused)
# unquoted dates stay strings: drop the implicit timestamp resolver (copying the class's table first)
StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
    return f"{where}: {problem}"


def parse_yaml(text: str, name: str = "<text>", error: type[HarnessError] = SpecError, kind: str = "YAML",
               invalid: str | None = None) -> Any:
    """The value of the YAML (or JSON) document ``text``, read with :class:`StrictLoader`; any problem is
    raised as one line ``error(f"{name}: invalid {kind} at line L, column C: ...")`` (``invalid``
    replaces the part before `` at line``)."""
    invalid = f"{name}: invalid {kind}" if invalid is None else invalid
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 -- StrictLoader is a SafeLoader
    except yaml.YAMLError as exc:
        raise error(f"{invalid}{_problem(exc)}") from None
    except RecursionError:  # not expected with the depth bound; never a traceback all the same
        raise error(f"{invalid}: nested too deeply") from None


def read_text_bounded(path: Path | str, name: str | None = None, error: type[HarnessError] = SpecError,
                      what: str = "file", max_bytes: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of ``path``, reading at most ``max_bytes`` (+1, to tell a larger file); a missing,
    unreadable, oversized or non-UTF-8 file is one line ``error("{name}: ...")``."""
    path = Path(path)
    name = str(path) if name is None else name
    try:
        with path.open("rb") as stream:
            data = stream.read(max_bytes + 1)
    except FileNotFoundError:
        raise error(f"{name}: {what} does not exist") from None
    except OSError as exc:
        raise error(f"{name}: cannot read {what}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise error(f"{name}: {what} is larger than {max_bytes} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{name}: cannot read {what}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def read_yaml_file(path: Path | str, name: str | None = None, error: type[HarnessError] = SpecError,
                   what: str = "file", max_bytes: int = MAX_FILE_BYTES) -> Any:
    """:func:`read_text_bounded` then :func:`parse_yaml` (``.json`` files are reported as JSON)."""
    path = Path(path)
    name = str(path) if name is None else name
    text = read_text_bounded(path, name, error, what, max_bytes)
    return parse_yaml(text, name, error, "JSON" if path.suffix == ".json" else "YAML")
