"""Protocol simulators for ``edged demo`` and the soak benchmark: real
protocol servers on loopback that edged talks to as it would to devices.

- Modbus TCP (pymodbus's own server): unit 1 is an energy meter (float32
  CDAB input registers: voltage 0, current 6, power 12, energy 72), unit 2 a
  pump relay (coil 0) whose running state shows in input register 0.
- OPC UA (asyncua's own server): a press with ``Temperature`` (rises while
  running, cools when stopped: it crosses 80 Cel every minute or so),
  ``SpindleSpeed``, ``Running`` and a ``PartsMade`` counter.

Run as ``python -m edged.demo.simulators --modbus-port P --opcua-port Q``;
it prints ``simulators ready`` once both listen, and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import random
import signal
import struct

from asyncua import Server, ua
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import SimData, SimDevice
from pymodbus.simulator.simutils import DataType

OPCUA_NAMESPACE = "urn:edged:demo"
METER, RELAY = 1, 2
READ_COILS, WRITE_INPUT = 1, 4  # pymodbus addresses tables by the function codes that read them


def float32_cdab(value: float) -> list[int]:
    high, low = struct.unpack(">2H", struct.pack(">f", value))
    return [low, high]


class ModbusPlant:
    def __init__(self) -> None:
        self.energy_kwh = 1234.5
        self.current = 8.0
        self._server: ModbusTcpServer | None = None

    async def start(self, port: int) -> None:
        def device(unit: int) -> SimDevice:
            def table(kind: DataType, value: object) -> list[SimData]:
                return [SimData(0, count=100, values=value, datatype=kind)]

            regs, bits = DataType.REGISTERS, DataType.BITS
            return SimDevice(id=unit, use_bit_addressing=True,
                             simdata=(table(bits, False), table(bits, False), table(regs, 0), table(regs, 0)))

        self._server = ModbusTcpServer([device(METER), device(RELAY)], address=("127.0.0.1", port))
        await self._server.serve_forever(background=True)

    async def step(self, rng: random.Random, dt: float) -> None:
        assert self._server is not None
        pump_on = bool((await self._server.async_getValues(RELAY, READ_COILS, 0, 1))[0])
        self.current = min(30.0, max(2.0, self.current + rng.gauss(0, 0.4))) + (4.0 if pump_on else 0.0) * 0.1
        voltage = 230 + rng.gauss(0, 1.0)
        power = voltage * self.current + (750.0 if pump_on else 0.0)
        self.energy_kwh += power * dt / 3_600_000
        registers = [0] * 74
        for address, value in ((0, voltage), (6, self.current), (12, power), (72, self.energy_kwh)):
            registers[address : address + 2] = float32_cdab(value)
        await self._server.async_setValues(METER, WRITE_INPUT, 0, registers)
        await self._server.async_setValues(RELAY, WRITE_INPUT, 0, [int(pump_on)])

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()


class OpcuaPress:
    def __init__(self) -> None:
        self.server = Server()
        self.temperature = 60.0
        self.parts = 0

    async def start(self, port: int) -> None:
        await self.server.init()
        self.server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/edged/demo")
        self.server.set_server_name("edged demo press")
        index = await self.server.register_namespace(OPCUA_NAMESPACE)
        press = await self.server.nodes.objects.add_object(index, "Press")

        async def variable(name: str, value: object, kind: ua.VariantType) -> object:
            node = await press.add_variable(ua.NodeId(f"Press.{name}", index), name, ua.Variant(value, kind))
            return node

        self.nodes = {
            "Temperature": await variable("Temperature", self.temperature, ua.VariantType.Double),
            "SpindleSpeed": await variable("SpindleSpeed", 0.0, ua.VariantType.Double),
            "Running": await variable("Running", True, ua.VariantType.Boolean),
            "PartsMade": await variable("PartsMade", 0, ua.VariantType.Int32),
        }
        await self.nodes["Running"].set_writable()
        await self.server.start()

    async def step(self, rng: random.Random, now: float) -> None:
        running = await self.nodes["Running"].read_value()
        # The press heats while running, with a slow swing that takes it past 80 Cel about once a minute.
        target = (72.0 + 12.0 * math.sin(now / 10.0)) if running else 25.0
        self.temperature += (target - self.temperature) * 0.3 + rng.gauss(0, 0.2)
        speed = 1450.0 + rng.gauss(0, 5.0) if running else 0.0
        if running and rng.random() < 0.5:
            self.parts += 1
        await self.nodes["Temperature"].write_value(ua.Variant(round(self.temperature, 2), ua.VariantType.Double))
        await self.nodes["SpindleSpeed"].write_value(ua.Variant(round(speed, 1), ua.VariantType.Double))
        await self.nodes["PartsMade"].write_value(ua.Variant(self.parts, ua.VariantType.Int32))

    async def stop(self) -> None:
        await self.server.stop()


async def serve(modbus_port: int, opcua_port: int, period: float = 1.0, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    rng = random.Random(7)
    plant, press = ModbusPlant(), OpcuaPress()
    await plant.start(modbus_port)
    await press.start(opcua_port)
    print("simulators ready", flush=True)
    loop = asyncio.get_running_loop()
    try:
        while not stop.is_set():
            await plant.step(rng, period)
            await press.step(rng, loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), period)
    finally:
        await press.stop()
        await plant.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="edged's demo protocol simulators (loopback only)")
    parser.add_argument("--modbus-port", type=int, default=5020)
    parser.add_argument("--opcua-port", type=int, default=4840)
    parser.add_argument("--period", type=float, default=1.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for name in ("asyncua", "pymodbus"):
        logging.getLogger(name).setLevel(logging.ERROR)

    async def run() -> None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await serve(args.modbus_port, args.opcua_port, args.period, stop)

    asyncio.run(run())


if __name__ == "__main__":
    main()
