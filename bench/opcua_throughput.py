"""OPC UA throughput: value changes per second delivered into the Hub.

A local asyncua server runs in a separate process (so its CPU is not counted)
with N Double variables, changing every one of them ``--rate`` times a second.
The OpcuaAdapter subscribes to all of them and this process counts the
readings that reach the Hub over a measuring window, and the CPU seconds this
process spent per 1000 changes. Loopback only; bounded in count and time.

    python bench/opcua_throughput.py [--vars 1000 10000] [--seconds 10]

The last line is the headline: the rate with the largest variable count.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
import tempfile
import time
from pathlib import Path

READY = "ready"


async def serve(port: int, count: int, rate: float, limit: float) -> None:
    """The server process: ``count`` variables, each changed ``rate`` times a second, for at most ``limit`` s."""
    from asyncua import Server, ua

    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/bench/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    ns = await server.register_namespace("urn:edged:bench")
    # One AddNodes call; 100 variables per folder (asyncua slows down with very wide folders).
    folders = []
    for index in range(0, count, 100):
        name = f"Bench{index // 100}"
        folder = await server.nodes.objects.add_folder(ua.NodeId(name, ns), ua.QualifiedName(name, ns))
        folders.append(folder.nodeid)
    items = [
        ua.AddNodesItem(
            RequestedNewNodeId=ua.NodeId(f"v{index}", ns),
            BrowseName=ua.QualifiedName(f"v{index}", ns),
            NodeClass=ua.NodeClass.Variable,
            ParentNodeId=folders[index // 100],
            ReferenceTypeId=ua.NodeId(ua.ObjectIds.HasComponent),
            TypeDefinition=ua.NodeId(ua.ObjectIds.BaseDataVariableType),
            NodeAttributes=ua.VariableAttributes(
                Value=ua.Variant(0.0, ua.VariantType.Double),
                DataType=ua.NodeId(ua.ObjectIds.Double),
                ValueRank=-1,
                DisplayName=ua.LocalizedText(f"v{index}"),
            ),
        )
        for index in range(count)
    ]
    for result in await server.iserver.isession.add_nodes(items):
        result.StatusCode.check()
    nodes = [item.RequestedNewNodeId for item in items]
    async with server:
        print(READY, flush=True)
        loop = asyncio.get_running_loop()
        end = loop.time() + limit
        tick = 0
        while loop.time() < end:
            started = loop.time()
            tick += 1
            for index, nodeid in enumerate(nodes):
                value = ua.DataValue(ua.Variant(tick + index * 1e-6, ua.VariantType.Double))
                await server.write_attribute_value(nodeid, value)
                if index % 500 == 499:
                    await asyncio.sleep(0)  # let the server answer Publish requests
            await asyncio.sleep(max(0.0, 1 / rate - (loop.time() - started)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def measure(count: int, seconds: float, rate: float, warmup: float) -> tuple[float, float, float]:
    """Return (changes/s into the Hub, CPU s of this process per 1000 changes, its CPU share) for ``count``
    variables."""
    from edged.adapters.opcua.adapter import OpcuaAdapter
    from edged.adapters.opcua.config import OpcuaConfig
    from edged.hub import Hub
    from edged.model import DeviceStatus

    port = free_port()
    limit = 120 + seconds + warmup
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", str(port), str(count), str(rate), str(limit),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(120):
            while (await process.stdout.readline()).decode().strip() != READY:
                if process.returncode is not None:
                    raise RuntimeError("the server process ended before it was ready")
        config = OpcuaConfig.model_validate(
            {
                "type": "opcua",
                "name": "bench",
                "endpoint": f"opc.tcp://127.0.0.1:{port}/bench/",
                "timeout": 30,
                "keepalive": 5,
                "subscription": {"publishing_interval": 0.1, "sampling_interval": 0, "max_notifications": 0},
                "devices": [
                    {"id": "bench", "nodes": [{"key": f"v{i}", "node": f"ns=2;s=v{i}"} for i in range(count)]}
                ],
            }
        )
        hub = Hub()
        online = asyncio.Event()
        hub.subscribe_events(lambda event: isinstance(event, DeviceStatus) and event.online and online.set())
        adapter = OpcuaAdapter(config, hub, Path(tempfile.gettempdir()))
        task = asyncio.create_task(adapter.run())
        try:
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(120):
                await online.wait()
            await asyncio.sleep(warmup)
            readings, cpu, wall = hub.readings_in, time.process_time(), loop.time()
            await asyncio.sleep(seconds)
            readings = hub.readings_in - readings
            cpu, wall = time.process_time() - cpu, loop.time() - wall
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if readings == 0:
            raise RuntimeError("no value reached the Hub")
        return readings / wall, cpu / (readings / 1000), cpu / wall
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vars", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring window per size")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rate", type=float, default=10.0, help="changes per second of every variable")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    rate = 0.0
    for count in args.vars:
        rate, cpu, share = await measure(count, args.seconds, args.rate, args.warmup)
        print(f"opcua_{count}_vars_offered: {count * args.rate:.0f} changes/s")
        print(f"opcua_{count}_vars_changes_per_s: {rate:.0f} changes/s")
        print(f"opcua_{count}_vars_cpu_per_1000_changes: {cpu:.4f} s")
        print(f"opcua_{count}_vars_client_cpu: {share * 100:.0f} %")
        # What one core would carry at this cost per change (the server process is the limit here).
        print(f"opcua_{count}_vars_client_capacity_est: {1000 / cpu:.0f} changes/s")
    print(f"opcua_changes_per_s: {rate:.0f} changes/s")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        port, count, rate, limit = sys.argv[2:6]
        logging.basicConfig(level=logging.ERROR)
        asyncio.run(serve(int(port), int(count), float(rate), float(limit)))
    else:
        asyncio.run(main())
