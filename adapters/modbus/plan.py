"""The request planner: the fewest reads that cover a set of points.

Neighbouring addresses of one table are coalesced into one read as long as
the read stays within the protocol's limits (125 registers, 2000 bits, or
the device's lower ``max_registers``/``max_bits``) and the unused addresses
it bridges between two points are no more than ``max_gap``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from edged.adapters.modbus.config import PointConfig, Table

MAX_REGISTERS = 125
MAX_BITS = 2000


@dataclass(frozen=True, slots=True)
class Read:
    """One read request: ``count`` registers (or bits) of ``table`` from ``address``."""

    table: Table
    address: int
    count: int
    points: tuple[PointConfig, ...]

    def __post_init__(self) -> None:
        limit = MAX_BITS if self.table.is_bits else MAX_REGISTERS
        if not 1 <= self.count <= limit:
            raise ValueError(f"a read of {self.table.value} spans 1 to {limit}; got {self.count}")
        if not 0 <= self.address <= 65536 - self.count:
            raise ValueError(f"a read from {self.address} of {self.count} runs past address 65535")


def plan(
    points: Iterable[PointConfig],
    *,
    max_gap: int = 0,
    max_registers: int = MAX_REGISTERS,
    max_bits: int = MAX_BITS,
) -> list[Read]:
    """Group ``points`` into reads, in table and address order."""
    reads: list[Read] = []
    ordered = sorted(points, key=lambda p: (p.table.value, p.address, -p.width))
    group: list[PointConfig] = []
    start = end = 0
    for point in ordered:
        limit = max_bits if point.table.is_bits else max_registers
        point_end = point.address + point.width
        if group and (
            point.table is group[0].table
            and point.address - end <= max_gap
            and max(end, point_end) - start <= limit
        ):
            group.append(point)
            end = max(end, point_end)
            continue
        if group:
            reads.append(Read(group[0].table, start, end - start, tuple(group)))
        group, start, end = [point], point.address, point_end
    if group:
        reads.append(Read(group[0].table, start, end - start, tuple(group)))
    return reads
