"""OPC UA servers through asyncua: subscriptions, polled reads, writes and method calls, by NodeId or browse path."""

from edged.adapters import Entry

ENTRY = Entry(
    config="edged.adapters.opcua.config:OpcuaConfig",
    adapter="edged.adapters.opcua.adapter:OpcuaAdapter",
    cli="edged.adapters.opcua.cli",
    cli_help="OPC UA: browse a server's address space, client certificates",
)
