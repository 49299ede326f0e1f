"""Where a node is: NodeIds and browse paths whose namespaces are named by index or by URI.

A server numbers its namespaces in its NamespaceArray, and that order is the
server's to change: after a restart or an upgrade, the plant's namespace may be
number 3 instead of 2. A namespace URI does not move. The text forms are those
of OPC UA Part 6 (5.1.12):

- NodeId: ``ns=2;s=Boiler.Temp`` (by index), ``nsu=urn:plant;s=Boiler.Temp``
  (by URI), ``i=2258`` (namespace 0, the OPC UA namespace); ``i=``, ``s=``,
  ``g=`` and ``b=`` identifiers.
- Browse name (one element of a browse path): ``2:Boiler`` or
  ``nsu=urn:plant;Boiler``. The URI runs to the first ``;`` (a ``;`` or ``%``
  in a URI is written ``%3B``/``%25``), so a URI may hold ``/``:
  ``0:Objects/nsu=http://acme.com/Plant/;Boiler/nsu=http://acme.com/Plant/;Temp``.

No asyncua here: the adapter turns these into ``ua.NodeId``/``ua.RelativePath``
with the session's namespace indexes.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from urllib.parse import unquote

Namespace = int | str  # an index as configured, or a namespace URI

_MAX_INDEX = 0xFFFF
_NODE_ID = re.compile(r"^(?:ns=(?P<index>\d+);|nsu=(?P<uri>[^;]+);)?(?P<kind>[isgb])=(?P<value>.+)$", re.DOTALL)
_INDEXED_NAME = re.compile(r"^(?P<index>\d+):(?P<name>.+)$", re.DOTALL)
NODE_ID_FORMS = "ns=2;s=Boiler.Temp, nsu=urn:plant;s=Boiler.Temp or ns=2;i=1001"


def _index(text: str) -> int:
    index = int(text)
    if index > _MAX_INDEX:
        raise ValueError(f"a namespace index is at most {_MAX_INDEX}; got {index}")
    return index


def _uri(text: str) -> str:
    uri = unquote(text)
    if not uri.strip():
        raise ValueError("the namespace URI after nsu= is empty")
    return uri


def encode_uri(uri: str) -> str:
    """``uri`` as written after ``nsu=`` (``%`` and ``;`` escaped)."""
    return uri.replace("%", "%25").replace(";", "%3B")


def describe(namespace: Namespace) -> str:
    return f"nsu={encode_uri(namespace)}" if isinstance(namespace, str) else f"ns={namespace}"


@dataclass(frozen=True, slots=True)
class InNamespace:
    """Something named within a namespace that is given by index or by URI."""

    namespace: Namespace

    @property
    def renumberable(self) -> int | None:
        """The namespace's index if it is named by a number other than 0 (which the server may change)."""
        return self.namespace if isinstance(self.namespace, int) and self.namespace != 0 else None


@dataclass(frozen=True, slots=True)
class NodeAddress(InNamespace):
    """A NodeId whose namespace is an index or a URI; ``identifier`` keeps its ``i=``/``s=``/``g=``/``b=`` form."""

    identifier: str

    @classmethod
    def parse(cls, text: str) -> NodeAddress:
        match = _NODE_ID.match(text)
        if match is None:
            raise ValueError(f"expected a NodeId such as {NODE_ID_FORMS}; got {text!r}")
        kind, value = match["kind"], match["value"]
        if kind == "i" and not (value.isdigit() and int(value) < 2**32):
            raise ValueError(f"i= takes a number from 0 to 4294967295; got {text!r}")
        if kind == "g":
            try:
                uuid.UUID(value)
            except ValueError:
                raise ValueError(f"g= takes a GUID such as 09087e75-8e5e-499b-954f-f2a9603db28a; got {text!r}") from None
        namespace: Namespace = 0
        if match["index"] is not None:
            namespace = _index(match["index"])
        elif match["uri"] is not None:
            namespace = _uri(match["uri"])
        return cls(namespace, f"{kind}={value}")

    def with_index(self, index: int) -> str:
        """The NodeId text with its namespace as ``index`` (for asyncua's parser)."""
        return f"ns={index};{self.identifier}" if index else self.identifier

    def __str__(self) -> str:
        return f"{describe(self.namespace)};{self.identifier}" if self.namespace != 0 else self.identifier


@dataclass(frozen=True, slots=True)
class BrowseName(InNamespace):
    """One element of a browse path: a BrowseName and its namespace."""

    name: str

    @classmethod
    def parse(cls, text: str) -> BrowseName:
        if text.startswith("nsu="):
            uri, _, name = text[4:].partition(";")
            if not name:
                raise ValueError(f"expected nsu=<URI>;<BrowseName>; {text!r} has no ';' and name after the URI")
            return cls(_uri(uri), name)
        match = _INDEXED_NAME.match(text)
        if match is None:
            raise ValueError(
                f"expected a browse path of namespace:BrowseName or nsu=<URI>;BrowseName elements from Root, "
                f"such as 0:Objects/2:Boiler/2:Temp; {text!r} has no namespace index"
            )
        return cls(_index(match["index"]), match["name"])

    def __str__(self) -> str:
        return f"{describe(self.namespace)};{self.name}" if isinstance(self.namespace, str) else f"{self.namespace}:{self.name}"


@dataclass(frozen=True, slots=True)
class BrowsePath:
    """Browse names followed from the Root folder along hierarchical references."""

    elements: tuple[BrowseName, ...]

    @classmethod
    def parse(cls, text: str) -> BrowsePath:
        return cls(tuple(BrowseName.parse(element) for element in _split(text.strip("/"))))

    def __str__(self) -> str:
        return "/".join(str(element) for element in self.elements)


def _split(text: str) -> list[str]:
    """Path elements separated by ``/``; a ``nsu=`` element's URI (up to its ``;``) may hold ``/``."""
    elements = []
    rest = text
    while True:
        start = rest.find(";") + 1 if rest.startswith("nsu=") else 0
        slash = rest.find("/", start)
        element, rest = (rest, "") if slash < 0 else (rest[:slash], rest[slash + 1 :])
        if not element:
            raise ValueError(f"expected a browse path such as 0:Objects/2:Boiler/2:Temp; {text!r} has an empty element")
        elements.append(element)
        if slash < 0:
            return elements


def namespace_indexes(addresses: list[NodeAddress | BrowsePath]) -> set[int]:
    """The namespace indexes other than 0 that ``addresses`` name by number."""
    found: set[int] = set()
    for address in addresses:
        parts = address.elements if isinstance(address, BrowsePath) else (address,)
        found.update(index for p in parts if (index := p.renumberable) is not None)
    return found
