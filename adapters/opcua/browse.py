"""What a server offers: its address space as a tree, and as ``nodes:`` entries for the configuration.

``walk`` follows hierarchical references (Organizes, HasComponent, ...) down
from a start node, one level at a time: one Browse request per level (per 100
nodes), then for the level's variables one Read of their DataType, ValueRank
and access levels and one TranslateBrowsePaths to their EngineeringUnits
property, whose EUInformation gives the unit. A variable's properties are
shown on its line, not as children. It stops at ``depth`` levels and after
``limit`` nodes, and does not descend into the OPC UA namespace's own objects
under the Objects folder (the Server object and its diagnostics) unless
browsing starts inside them.

NodeIds are printed with their namespace URI (``nsu=``), which stays right
when the server renumbers its namespaces.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from asyncua import Client, ua

from edged.adapters.opcua import codec
from edged.adapters.opcua.address import BrowsePath, NodeAddress

CHUNK = 100  # operations per request: well below what servers allow per Browse or Read
OBJECTS = ua.NodeId(ua.ObjectIds.ObjectsFolder)
_HIERARCHICAL = ua.NodeId(ua.ObjectIds.HierarchicalReferences)
_HAS_PROPERTY = ua.NodeId(ua.ObjectIds.HasProperty)
_UNECE_URI = "http://www.opcfoundation.org/UA/units/un/cefact"
_ARRAY = 1  # ValueRank: 0 and above are arrays of that many dimensions (0: one or more)
_ATTRIBUTES = (
    ua.AttributeIds.DataType,
    ua.AttributeIds.ValueRank,
    ua.AttributeIds.AccessLevel,
    ua.AttributeIds.UserAccessLevel,
)


def _unece(code: str) -> int:
    """A UNECE common code as the UnitId of an EUInformation (its characters as bytes of an Int32)."""
    return int.from_bytes(code.encode("ascii"), "big")


# UNECE Recommendation 20 codes (the units OPC UA's EUInformation uses) as SenML/UCUM units.
_UNECE_SENML = (
    "CEL=Cel KEL=K P1=% WTT=W KWT=kW WHR=Wh KWH=kWh VLT=V AMP=A HTZ=Hz PAL=Pa KPA=kPa BAR=bar "
    "MTR=m MMT=mm SEC=s MIN=min HUR=h LTR=l KGM=kg MQH=m3/h"
)
_SENML_UNITS = {_unece(code): unit for code, _, unit in (pair.partition("=") for pair in _UNECE_SENML.split())}
_INT_TYPES = frozenset(ua.VariantType(n) for n in range(ua.VariantType.SByte, ua.VariantType.UInt64 + 1))
_UNREADABLE = frozenset({ua.VariantType.ByteString, ua.VariantType.Variant, ua.VariantType.DataValue})


@dataclass(slots=True)
class Entry:
    """One node of the tree."""

    depth: int  # 0: the start node
    label: str  # its BrowseName's name
    names: tuple[str, ...]  # browse names below the start node, down to this one (for config keys)
    node_id: str  # nsu= form
    node_class: ua.NodeClass
    nodeid: ua.NodeId = field(repr=False)
    data_type: str | None = None  # a variable's DataType name
    vtype: ua.VariantType | None = None  # ... as the built-in type it is encoded as, if it is one
    array: bool = False
    access: str = ""  # "r", "rw", "w" or "-" for a variable
    unit: str | None = None
    standard: bool = False  # an OPC UA namespace object under Objects: listed, not expanded
    children: list[Entry] = field(default_factory=list, repr=False)


@dataclass(slots=True)
class Tree:
    endpoint: str
    start: str  # the browse path (or NodeId) browsing started from
    root: Entry
    depth: int
    limit: int
    nodes: int = 0
    cut: bool = False  # the node limit was reached
    deeper: bool = False  # some node at the depth limit may have children

    def entries(self) -> Iterator[Entry]:
        """Every node, depth first, in the server's order."""
        stack = [self.root]
        while stack:
            entry = stack.pop()
            yield entry
            stack.extend(reversed(entry.children))


class _Names:
    """NodeIds in their nsu= form, by the session's NamespaceArray."""

    def __init__(self, array: Sequence[str]) -> None:
        self.array = array

    def text(self, nodeid: ua.NodeId, uri: str | None = None) -> str:
        plain = ua.NodeId.to_string(ua.NodeId(nodeid.Identifier, nodeid.NamespaceIndex, nodeid.NodeIdType))
        if not uri and nodeid.NamespaceIndex == 0:
            return plain
        identifier = plain.split(";", 1)[1] if nodeid.NamespaceIndex else plain
        if not uri:
            index = nodeid.NamespaceIndex
            uri = self.array[index] if index < len(self.array) else None
        return str(NodeAddress(uri, identifier)) if uri else plain


async def walk(client: Client, start: ua.NodeId, start_text: str, *, depth: int, limit: int) -> Tree:
    """Browse ``depth`` levels below ``start``, listing at most ``limit`` nodes."""
    names = _Names(await client.get_namespace_array())
    (start_class, start_name) = await _read(client, [
        ua.ReadValueId(NodeId=start, AttributeId=ua.AttributeIds.NodeClass),
        ua.ReadValueId(NodeId=start, AttributeId=ua.AttributeIds.BrowseName),
    ])  # fmt: skip
    start_class.StatusCode.check()
    label = start_name.Value.Value.Name if start_name.StatusCode.is_good() else ""
    root = Entry(0, label, (), names.text(start), ua.NodeClass(start_class.Value.Value), start)
    tree = Tree(client.server_url.geturl(), start_text, root, depth, limit, nodes=1)
    await _describe_variables(client, [root], names)
    seen = {start}
    level = [root]
    for current in range(1, depth + 1):
        parents = [e for e in level if e.node_class is not ua.NodeClass.Method and not e.standard]
        level = []
        for parent, references in zip(parents, await _browse(client, [p.nodeid for p in parents]), strict=True):
            for ref in references:
                if getattr(ref.NodeId, "ServerIndex", 0) or (parent.node_class is ua.NodeClass.Variable
                                              and ref.ReferenceTypeId == _HAS_PROPERTY):  # fmt: skip
                    continue
                nodeid = ua.NodeId(ref.NodeId.Identifier, ref.NodeId.NamespaceIndex, ref.NodeId.NodeIdType)
                if nodeid in seen:
                    continue
                if tree.nodes >= limit:
                    tree.cut = True
                    break
                seen.add(nodeid)
                tree.nodes += 1
                name = ref.BrowseName.Name
                child = Entry(current, name, (*parent.names, name), names.text(nodeid, getattr(ref.NodeId, "NamespaceUri", None)),
                              ua.NodeClass(ref.NodeClass), nodeid)  # fmt: skip
                child.standard = parent.nodeid == OBJECTS and nodeid.NamespaceIndex == 0 and start == OBJECTS
                parent.children.append(child)
                level.append(child)
            if tree.cut:
                break
        await _describe_variables(client, level, names)
        if tree.cut or not level:
            break
    else:
        tree.deeper = any(e.node_class in (ua.NodeClass.Object, ua.NodeClass.Variable) and not e.standard for e in level)
    return tree


async def _read(client: Client, items: list[ua.ReadValueId]) -> list[ua.DataValue]:
    results: list[ua.DataValue] = []
    for chunk in _chunks(items):
        results += await client.uaclient.read(ua.ReadParameters(NodesToRead=chunk))
    return results


async def _browse(client: Client, nodeids: list[ua.NodeId]) -> list[list[ua.ReferenceDescription]]:
    """The forward hierarchical references of each node, following continuation points."""
    found: list[list[ua.ReferenceDescription]] = []
    for chunk in _chunks(nodeids):
        descriptions = [
            ua.BrowseDescription(
                NodeId=nodeid,
                BrowseDirection=ua.BrowseDirection.Forward,
                ReferenceTypeId=_HIERARCHICAL,
                IncludeSubtypes=True,
                NodeClassMask=0,
                ResultMask=ua.BrowseResultMask.All,
            )
            for nodeid in chunk
        ]
        results = await client.uaclient.browse(ua.BrowseParameters(NodesToBrowse=descriptions))
        refs = [list(r.References) if r.StatusCode.is_good() else [] for r in results]
        pending = {i: r.ContinuationPoint for i, r in enumerate(results) if r.StatusCode.is_good() and r.ContinuationPoint}
        while pending:
            order = list(pending)
            params = ua.BrowseNextParameters(ReleaseContinuationPoints=False, ContinuationPoints=[pending[i] for i in order])
            more = await client.uaclient.browse_next(params)
            pending = {}
            for i, result in zip(order, more, strict=True):
                if result.StatusCode.is_good():
                    refs[i] += result.References
                    if result.ContinuationPoint:
                        pending[i] = result.ContinuationPoint
        found += refs
    return found


async def _describe_variables(client: Client, entries: list[Entry], names: _Names) -> None:
    """Fill in the data type, access and unit of the variables among ``entries``."""
    variables = [e for e in entries if e.node_class is ua.NodeClass.Variable]
    if not variables:
        return
    values = await _read(client, [ua.ReadValueId(NodeId=e.nodeid, AttributeId=a) for e in variables for a in _ATTRIBUTES])
    custom: dict[ua.NodeId, list[Entry]] = {}
    for n, entry in enumerate(variables):
        data_type, rank, access, user_access = values[n * len(_ATTRIBUTES) : (n + 1) * len(_ATTRIBUTES)]
        if data_type.StatusCode.is_good() and isinstance(data_type.Value.Value, ua.NodeId):
            type_id = data_type.Value.Value
            entry.vtype = codec.variant_type(type_id)
            if type_id.NamespaceIndex == 0 and isinstance(type_id.Identifier, int):
                entry.data_type = ua.ObjectIdNames.get(type_id.Identifier, names.text(type_id))
            else:
                custom.setdefault(type_id, []).append(entry)
                entry.data_type = names.text(type_id)
        if rank.StatusCode.is_good() and isinstance(rank.Value.Value, int):
            entry.array = rank.Value.Value >= 0  # -1 scalar; -2 (any) and -3 (scalar or array) read as scalars
        level = user_access if user_access.StatusCode.is_good() else access
        entry.access = _access(level.Value.Value if level.StatusCode.is_good() else None)
    if custom:
        types = list(custom)
        for type_id, name in zip(types, await _read(client, [
            ua.ReadValueId(NodeId=t, AttributeId=ua.AttributeIds.BrowseName) for t in types
        ]), strict=True):  # fmt: skip
            if name.StatusCode.is_good():
                for entry in custom[type_id]:
                    entry.data_type = name.Value.Value.Name
    await _units(client, variables)


def _access(level: object) -> str:
    """An AccessLevel byte as ``r``, ``rw``, ``w`` or ``-``."""
    if not isinstance(level, int):
        return "-"
    read = "r" if level & ua.AccessLevelType.CurrentRead else ""
    write = "w" if level & ua.AccessLevelType.CurrentWrite else ""
    return read + write or "-"


async def _units(client: Client, variables: list[Entry]) -> None:
    """The unit of each variable that has an EngineeringUnits property."""
    paths = [
        ua.BrowsePath(
            StartingNode=e.nodeid,
            RelativePath=ua.RelativePath(Elements=[ua.RelativePathElement(
                ReferenceTypeId=_HAS_PROPERTY, IsInverse=False, IncludeSubtypes=True,
                TargetName=ua.QualifiedName("EngineeringUnits", 0),
            )]),
        )
        for e in variables
    ]  # fmt: skip
    found: list[tuple[Entry, ua.NodeId]] = []
    for n, chunk in enumerate(_chunks(paths)):
        results = await client.uaclient.translate_browsepaths_to_nodeids(chunk)
        for entry, result in zip(variables[n * CHUNK :], results, strict=False):
            if result.StatusCode.is_good() and result.Targets:
                target = result.Targets[0].TargetId
                found.append((entry, ua.NodeId(target.Identifier, target.NamespaceIndex, target.NodeIdType)))
    if not found:
        return
    values = await _read(client, [ua.ReadValueId(NodeId=nodeid, AttributeId=ua.AttributeIds.Value) for _, nodeid in found])
    for (entry, _), data_value in zip(found, values, strict=True):
        if data_value.StatusCode.is_good() and data_value.Value is not None:
            entry.unit = unit(data_value.Value.Value)


def unit(information: object) -> str | None:
    """An EUInformation as a SenML unit when it is a UNECE unit edged knows, else its display name."""
    if not isinstance(information, ua.EUInformation):
        return None
    if information.NamespaceUri in (_UNECE_URI, None, "") and information.UnitId in _SENML_UNITS:
        return _SENML_UNITS[information.UnitId]
    text = information.DisplayName.Text if information.DisplayName else None
    return text or None


def _chunks(items: list) -> Iterator[list]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


# -- output -------------------------------------------------------------------


def render_tree(tree: Tree) -> list[str]:
    """The tree, two spaces of indent per level."""
    lines = [f"{tree.endpoint} from {tree.start} (depth {tree.depth})"]
    for entry in tree.entries():
        lines.append("  " * entry.depth + _line(entry, tree))
    if tree.cut:
        lines.append(f"... stopped after {tree.limit} nodes: browse a part with --path, or raise --max-nodes")
    elif tree.deeper:
        lines.append(f"... nodes at depth {tree.depth} were not expanded: raise --depth, or browse a part with --path")
    return lines


def _line(entry: Entry, tree: Tree) -> str:
    name = entry.label or entry.node_id
    parts = [name, entry.node_id]
    if entry.node_class is ua.NodeClass.Variable:
        parts += [f"{entry.data_type or '?'}{'[]' if entry.array else ''}", entry.access]
        if entry.unit:
            parts.append(entry.unit)
    elif entry.node_class is ua.NodeClass.Method:
        parts[0] = f"{name}()"
        parts.append("method")
    elif entry.node_class is not ua.NodeClass.Object:
        parts.append(entry.node_class.name)
    if entry.standard:
        parts.append(f"(not expanded: --path {tree.start}/0:{entry.label})")
    return "  ".join(parts)


def config_type(entry: Entry) -> str | None:
    """The point ``type:`` for a variable, or None if edged cannot read it."""
    if entry.array:
        return "str"  # read as JSON text
    if entry.vtype in _UNREADABLE:
        return None
    if entry.vtype is ua.VariantType.Boolean:
        return "bool"
    if entry.vtype in _INT_TYPES:
        return "int"
    if entry.vtype in (ua.VariantType.Float, ua.VariantType.Double):
        return "float"
    return "str"


def render_yaml(tree: Tree) -> list[str]:
    """``nodes:`` entries for every variable in the tree, in the opcua adapter's syntax."""
    variables = [e for e in tree.entries() if e.node_class is ua.NodeClass.Variable]
    lines = [f"# {tree.endpoint}: {len(variables)} variable(s) from {tree.start}, depth {tree.depth}"]
    if tree.cut:
        lines.append(f"# stopped after {tree.limit} nodes: browse a part with --path, or raise --max-nodes")
    lines.append("nodes:")
    keys: set[str] = set()
    for entry in variables:
        type_ = config_type(entry)
        if type_ is None:
            lines.append(f"  # {entry.node_id} ({entry.data_type}) left out: edged does not read {entry.data_type} values")
            continue
        fields = {"key": _key(entry, keys), "node": json.dumps(entry.node_id, ensure_ascii=False), "type": type_}
        if entry.unit:
            fields["unit"] = json.dumps(entry.unit, ensure_ascii=False)
        writable = "w" in entry.access and not entry.array and entry.vtype in codec.WRITABLE
        fields["writable"] = "true" if writable else "false"
        lines.append("  - {" + ", ".join(f"{k}: {v}" for k, v in fields.items()) + "}")
    return lines


def _key(entry: Entry, taken: set[str]) -> str:
    """A point key from the variable's browse names below the start node, unique among ``taken``."""
    base = ".".join(re.sub(r"[^a-z0-9_.:-]+", "_", name.lower()).strip("_") or "node" for name in entry.names) or "node"
    key, n = base, 1
    while key in taken:
        n += 1
        key = f"{base}_{n}"
    taken.add(key)
    return key


def start_text(path: BrowsePath | None) -> str:
    return str(path) if path is not None else "0:Objects"
