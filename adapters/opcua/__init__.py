"""OPC UA servers through asyncua: subscriptions, polled reads, writes and method calls, by NodeId or browse path."""
