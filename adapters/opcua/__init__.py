"""OPC UA servers through asyncua: subscriptions, polled reads, writes and method calls, by NodeId or browse path."""

from edged.adapters import Entry

ENTRY = Entry(".config:OpcuaConfig", ".adapter:OpcuaAdapter", cli=".cli",
              cli_help="OPC UA: browse a server's address space, client certificates")
