"""Fleet operations: the gateway managed from its uplink alone (docs/fleet.md).

- ``remote``: configurations pushed from the cloud, checked, signed, tried and
  rolled back when they would cut the gateway off;
- ``rpc``: operations on the gateway itself (ping, status, reload, restart,
  set_log_level, logs, rules_check, zigbee_permit);
- ``digest``: the small retained state message a fleet dashboard reads;
- ``ring``: the last log lines, kept in memory for the ``logs`` operation;
- ``fleet``: what ties them to the daemon.
"""
