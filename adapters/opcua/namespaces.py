"""Which namespace index a configured namespace has in this session.

A namespace named by URI (``nsu=``) is looked up in the server's NamespaceArray,
read at the start of every session. A namespace named by index (``ns=2``)
means the URI the server had at that index when edged first used it: that URI
is kept in ``namespaces.json`` in the adapter's state directory, and later
sessions look it up by URI, so a node is never taken from another namespace
that has moved to the old index. Namespace 0 (the OPC UA namespace) never moves.

    {"endpoint": "opc.tcp://plc:4840", "namespaces": {"2": "urn:acme:plant"}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from asyncua import ua

from edged.adapters.opcua.address import BrowsePath, Namespace, NodeAddress, encode_uri
from edged.files import write_atomic

MAP_FILE = "namespaces.json"
_HIERARCHICAL = ua.NodeId(ua.ObjectIds.HierarchicalReferences)


class NamespaceMissing(Exception):
    """A configured namespace the server does not have now; ``key`` names it (its URI, or ``ns=N``)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(reason)
        self.key = key
        self.reason = reason


class NamespaceMap:
    """The URI behind each namespace index the configuration uses, as first seen on the server; kept in a file.

    ``load`` and ``save`` block (run them in a thread). A file that cannot be
    read leaves ``error`` set: index-form namespaces are then not resolved at
    all (rather than learnt afresh from a server that may have reordered them).
    """

    def __init__(self, path: Path, endpoint: str) -> None:
        self.path = path
        self.endpoint = endpoint
        self.uris: dict[int, str] = {}
        self.error: str | None = None

    def load(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except OSError as exc:
            self.error = f"cannot read {self.path}: {exc.strerror or exc}"
            return
        try:
            data = json.loads(text)
            uris = {int(index): uri for index, uri in data["namespaces"].items()}
            if not all(isinstance(uri, str) and uri and 0 < index <= 0xFFFF for index, uri in uris.items()):
                raise ValueError("expected namespace indexes mapped to URIs")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self.error = f"{self.path} is not a namespace map ({exc}); fix or delete it"
            return
        self.uris = uris

    def learn(self, array: list[str], indexes: set[int]) -> list[int]:
        """Record the URI of each of ``indexes`` not recorded yet (and on the server); return those recorded."""
        if self.error is not None:
            return []
        learnt = sorted(i for i in indexes if i not in self.uris and i < len(array) and array[i])
        for index in learnt:
            self.uris[index] = array[index]
        return learnt

    def save(self) -> None:
        data = {"endpoint": self.endpoint, "namespaces": {str(i): uri for i, uri in sorted(self.uris.items())}}
        write_atomic(self.path, (json.dumps(data, indent=2) + "\n").encode())


@dataclass
class SessionNamespaces:
    """One session's NamespaceArray, and the configured namespaces looked up in it."""

    array: list[str]
    recorded: NamespaceMap
    moved: dict[int, int] = field(default_factory=dict)  # configured index -> index now, where they differ

    def index(self, namespace: Namespace) -> int:
        """The index ``namespace`` has now; ``NamespaceMissing`` if the server does not have it."""
        if isinstance(namespace, str):
            return self._find(namespace, f"the server has no namespace {namespace}")
        if namespace == 0:
            return 0
        if self.recorded.error is not None:
            raise NamespaceMissing(f"ns={namespace}", f"ns={namespace} cannot be checked: {self.recorded.error}")
        uri = self.recorded.uris.get(namespace)
        if uri is None:
            raise NamespaceMissing(f"ns={namespace}", f"the server has no namespace index {namespace}")
        now = self._find(
            uri,
            f"ns={namespace} was {uri} when edged first used it, and the server no longer has that namespace "
            f"(name the node by nsu=<URI>, or delete {self.recorded.path} to take the server's present numbering)",
        )
        if now != namespace:
            self.moved[namespace] = now
        return now

    def _find(self, uri: str, reason: str) -> int:
        try:
            return self.array.index(uri)
        except ValueError:
            raise NamespaceMissing(encode_uri(uri), reason) from None

    def node_id(self, address: NodeAddress) -> ua.NodeId:
        return ua.NodeId.from_string(address.with_index(self.index(address.namespace)))

    def relative_path(self, path: BrowsePath) -> ua.RelativePath:
        return ua.RelativePath(
            Elements=[
                ua.RelativePathElement(
                    ReferenceTypeId=_HIERARCHICAL,
                    IsInverse=False,
                    IncludeSubtypes=True,
                    TargetName=ua.QualifiedName(element.name, self.index(element.namespace)),
                )
                for element in path.elements
            ]
        )
