"""A device's problem and last_seen as the Hub keeps them."""

from __future__ import annotations

from edged.hub import Hub
from edged.model import Device, Point, Quality, Reading
from tests.gateway_log import GatewayLog, gateway_log_fixture  # noqa: F401 - a fixture


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def hub_with(*ids: str) -> tuple[Hub, Clock]:
    clock = Clock()
    hub = Hub(clock=clock)
    for device_id in ids:
        hub.add_device(Device(device_id, "mb", points={"x": Point("x"), "y": Point("y")}))
    return hub, clock


def test_a_device_never_heard_has_no_last_seen_and_bad_values_are_no_sign_of_life() -> None:
    hub, _ = hub_with("mb/a")
    hub.publish([Reading("mb/a", "x", None, 90.0, Quality.BAD)])
    assert hub.devices["mb/a"].last_seen is None
    hub.publish([Reading("mb/a", "x", None, 91.0, Quality.BAD), Reading("mb/a", "y", 1.0, 92.0)])
    assert hub.devices["mb/a"].last_seen == 92.0
    hub.publish([Reading("mb/a", "x", None, 95.0, Quality.BAD)])
    assert hub.devices["mb/a"].last_seen == 92.0


def test_failures_in_a_row_are_counted_from_the_first_and_cleared_by_a_later_good_value() -> None:
    hub, clock = hub_with("mb/a")
    hub.report_problem("mb/a", "no answer within 0.5 s")
    clock.now = 110.0
    hub.report_problem("mb/a", "exception 11: gateway target failed to respond")
    problem = hub.devices["mb/a"].problem
    assert (problem.reason, problem.since, problem.last, problem.count) == (
        "exception 11: gateway target failed to respond", 100.0, 110.0, 2,
    )
    hub.publish([Reading("mb/a", "x", 1.0, 105.0)])  # read before the last failure
    assert hub.devices["mb/a"].problem is problem
    hub.publish([Reading("mb/a", "x", 1.0, 111.0)])
    assert hub.devices["mb/a"].problem is None


def test_a_problem_of_one_point_is_cleared_by_that_point_only() -> None:
    hub, _ = hub_with("mb/a")
    hub.report_problem("mb/a", "ghost: OPC UA BadNodeIdUnknown", point="y")
    hub.publish([Reading("mb/a", "x", 1.0, 200.0)])
    assert hub.devices["mb/a"].problem is not None
    hub.publish([Reading("mb/a", "x", 2.0, 201.0), Reading("mb/a", "y", 3.0, 201.0)])
    assert hub.devices["mb/a"].problem is None


async def test_coming_online_clears_it_and_going_offline_says_why(gateway_log: GatewayLog) -> None:
    hub, _ = hub_with("mb/a")
    hub.set_online("mb/a", True)
    hub.report_problem("mb/a", "no answer within 0.5 s")
    hub.report_problem("mb/a", "no answer within 0.5 s")
    hub.set_online("mb/a", False)
    hub.add_device(Device("mb/a", "mb"))  # registered again: what is known of it stays
    assert hub.devices["mb/a"].problem is not None and hub.devices["mb/a"].last_seen == 100.0
    hub.set_online("mb/a", True)
    assert hub.devices["mb/a"].problem is None
    assert gateway_log.about("mb/a") == ["device online", "device offline after 2 failures: no answer within 0.5 s",
                                         "device online"]  # fmt: skip
