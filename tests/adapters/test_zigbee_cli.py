"""``edged zigbee permit`` and ``remove`` against a local HTTP server standing in for the status API routes."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from edged.adapters.zigbee import cli


@contextlib.asynccontextmanager
async def serving(*routes: web.RouteDef) -> AsyncIterator[str]:
    """A loopback HTTP server on a free port with these routes, standing in for the status API; its URL."""
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def api():
    """A loopback server on a free port answering ``POST /api/adapters/zigbee/permit`` and ``remove``; records the requests."""
    seen: list[tuple[str | None, object]] = []
    answer = {"status": 200}

    async def permit(request: web.Request) -> web.Response:
        seen.append((request.headers.get("Authorization"), await request.json()))
        if answer["status"] != 200:
            return web.json_response({"error": "adapter 'zigbee' is stopped"}, status=answer["status"])
        return web.json_response({"adapter": "zigbee", "seconds": (await request.json())["seconds"]})

    async def remove(request: web.Request) -> web.Response:
        seen.append((request.headers.get("Authorization"), await request.json()))
        return web.json_response({"removed": (await request.json())["device"]})

    async with serving(web.post("/api/adapters/zigbee/permit", permit), web.post("/api/adapters/zigbee/remove", remove)) as url:
        yield url, seen, answer


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="edged zigbee")
    cli.add_arguments(parser)
    return parser.parse_args(list(argv))


async def test_permit_posts_seconds_with_token(api, tmp_path, capsys):
    url, seen, _ = api
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    args = parse("permit", "--seconds", "90", "--url", url, "--token-file", str(token))
    assert await asyncio.to_thread(cli.main, args) == 0
    assert seen == [("Bearer s3cret", {"seconds": 90})]
    assert "joining permitted on zigbee for 90 s" in capsys.readouterr().out


async def test_refusal_exits_3_with_the_reason(api, tmp_path, capsys, monkeypatch):
    url, _, answer = api
    answer["status"] = 409
    monkeypatch.delenv("EDGED_API_TOKEN", raising=False)
    args = parse("permit", "--url", url, "--config", str(tmp_path / "absent.yaml"))
    assert await asyncio.to_thread(cli.main, args) == cli.EXIT_API
    assert "409: adapter 'zigbee' is stopped" in capsys.readouterr().err


def test_seconds_out_of_range_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse("permit", "--seconds", "600")
    assert exit_info.value.code == 2
    assert "0..254" in capsys.readouterr().err


async def test_remove_posts_the_device(api, tmp_path, capsys, monkeypatch):
    url, seen, _ = api
    monkeypatch.setenv("EDGED_API_TOKEN", "t0ken")
    args = parse("remove", "zigbee/00:12:4b:00:00:00:00:03", "--url", url)
    assert await asyncio.to_thread(cli.main, args) == 0
    assert seen == [("Bearer t0ken", {"device": "zigbee/00:12:4b:00:00:00:00:03"})]
    assert "zigbee/00:12:4b:00:00:00:00:03 removed" in capsys.readouterr().out


@pytest.fixture
async def group_api():
    """A loopback server answering the group and binding operations as the status API does; records the requests."""
    seen: list[tuple[str, str, object]] = []
    hall = {"id": 16, "name": "hall", "device": "zigbee/group/0x0010",
            "members": [{"device": "zigbee/00:0d:6f:00:0e:d9:ed:01", "endpoint": 1}]}
    link = {"source": "00:0d:6f:00:0e:d9:ed:04", "source_ep": 1, "cluster": 6, "group": 16}

    async def handle(request: web.Request) -> web.Response:
        body = await request.json() if request.method == "POST" else None
        seen.append((request.method, request.path, body))
        operation = request.match_info["operation"]
        answers = {
            "groups": {"groups": [hall]}, "groups/create": hall, "groups/add": hall, "groups/remove": hall,
            "groups/delete": {"deleted": 16}, "bind": {"bound": link}, "unbind": {"unbound": link},
            "bindings": {"bindings": [{**link, "origin": "config"}]},
        }
        return web.json_response(answers[operation])

    async with serving(web.route("*", "/api/adapters/zigbee/{operation:.+}", handle)) as url:
        yield url, seen


@pytest.mark.parametrize(
    ("argv", "request_made", "printed"),
    [
        (["group", "list"], ("GET", "/api/adapters/zigbee/groups", None),
         "zigbee/group/0x0010 'hall' (0x0010): zigbee/00:0d:6f:00:0e:d9:ed:01/1"),
        (["group", "create", "hall", "--id", "16"], ("POST", "/api/adapters/zigbee/groups/create", {"name": "hall", "id": 16}),
         "created zigbee/group/0x0010 'hall'"),
        (["group", "add", "0x10", "zigbee/00:0d:6f:00:0e:d9:ed:01"],
         ("POST", "/api/adapters/zigbee/groups/add", {"group": 16, "device": "zigbee/00:0d:6f:00:0e:d9:ed:01"}), "'hall'"),
        (["group", "delete", "hall"], ("POST", "/api/adapters/zigbee/groups/delete", {"group": "hall"}), "group 16 deleted"),
        (["bind", "zigbee/00:0d:6f:00:0e:d9:ed:04", "hall", "--cluster", "on_off"],
         ("POST", "/api/adapters/zigbee/bind", {"source": "zigbee/00:0d:6f:00:0e:d9:ed:04", "target": "hall", "cluster": "on_off"}),
         "bound: 00:0d:6f:00:0e:d9:ed:04/1 on_off -> group 0x0010"),
        (["unbind", "zigbee/00:0d:6f:00:0e:d9:ed:04", "16"],
         ("POST", "/api/adapters/zigbee/unbind", {"source": "zigbee/00:0d:6f:00:0e:d9:ed:04", "target": 16, "cluster": "on_off"}),
         "unbound: 00:0d:6f:00:0e:d9:ed:04/1 on_off -> group 0x0010"),
        (["bindings"], ("GET", "/api/adapters/zigbee/bindings", None), "on_off -> group 0x0010 [config]"),
    ],
)
async def test_group_and_binding_commands_call_the_api(group_api, capsys, monkeypatch, argv, request_made, printed):
    url, seen = group_api
    monkeypatch.setenv("EDGED_API_TOKEN", "t0ken")
    assert await asyncio.to_thread(cli.main, parse(*argv, "--url", url)) == 0
    assert seen == [request_made]
    assert printed in capsys.readouterr().out


def test_bind_takes_only_known_clusters(capsys):
    with pytest.raises(SystemExit):
        parse("bind", "zigbee/00:0d:6f:00:0e:d9:ed:04", "hall", "--cluster", "humidity")
    assert "on_off" in capsys.readouterr().err


async def test_map_prints_links_weakest_first(capsys, monkeypatch):
    found = {
        "adapter": "zigbee", "scanned_at": 1_700_000_000.0, "weak_lqi": 80, "weak_links": 1,
        "nodes": [{"ieee": "00:12:4b:00:ed:9e:d0:01", "role": "coordinator", "device": None, "name": None},
                  {"ieee": "00:0d:6f:00:0e:d9:ed:01", "role": "router", "device": "zigbee/00:0d:6f:00:0e:d9:ed:01",
                   "name": "Hall lamp"}],
        "links": [{"source": "00:12:4b:00:ed:9e:d0:01", "target": "00:0d:6f:00:0e:d9:ed:01", "lqi": 200,
                   "relationship": "child", "weak": False},
                  {"source": "00:0d:6f:00:0e:d9:ed:01", "target": "00:12:4b:00:ed:9e:d0:01", "lqi": 40,
                   "relationship": "parent", "weak": True}],
        "routes": [],
    }
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path}")
        return web.json_response(found)

    monkeypatch.setenv("EDGED_API_TOKEN", "t0ken")
    async with serving(web.route("*", "/api/adapters/zigbee/{operation:.+}", handle)) as url:
        assert await asyncio.to_thread(cli.main, parse("map", "--scan", "--url", url)) == 0
    assert seen == ["POST /api/adapters/zigbee/map/scan"]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("zigbee: 2 nodes, 2 links, 1 weak (LQI under 80)")
    assert lines[1:] == ["Hall lamp -> coordinator (parent): LQI 40  WEAK", "coordinator -> Hall lamp (child): LQI 200"]


async def test_ota_list_and_update(capsys, monkeypatch):
    devices = [
        {"device": "zigbee/00:0d:6f:00:0e:d9:ed:01", "model": "smart plug", "current_version": 0x10005,
         "available_version": 0x10006, "progress": None},
        {"device": "zigbee/00:0d:6f:00:0e:d9:ed:02", "model": "lamp", "current_version": 0x20000,
         "available_version": None, "progress": 42.0},
        {"device": "zigbee/00:0d:6f:00:0e:d9:ed:03", "model": "sensor", "current_version": None,
         "available_version": None, "progress": None},
    ]
    seen: list[tuple[str, object]] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.json() if request.method == "POST" else None
        seen.append((request.path, body))
        if request.path.endswith("/update"):
            return web.json_response({"device": body["device"], "from_version": 0x10005, "to_version": 0x10006})
        return web.json_response({"devices": devices})

    monkeypatch.setenv("EDGED_API_TOKEN", "t0ken")
    async with serving(web.route("*", "/api/adapters/zigbee/{operation:.+}", handle)) as url:
        assert await asyncio.to_thread(cli.main, parse("ota", "list", "--url", url)) == 0
        assert await asyncio.to_thread(cli.main, parse("ota", "update", "zigbee/00:0d:6f:00:0e:d9:ed:01", "--url", url)) == 0
    assert seen == [("/api/adapters/zigbee/ota", None),
                    ("/api/adapters/zigbee/ota/update", {"device": "zigbee/00:0d:6f:00:0e:d9:ed:01"})]
    assert capsys.readouterr().out.splitlines() == [
        "zigbee/00:0d:6f:00:0e:d9:ed:01 smart plug: 0x00010005, update available: 0x00010006",
        "zigbee/00:0d:6f:00:0e:d9:ed:02 lamp: 0x00020000, updating 42 %",
        "zigbee/00:0d:6f:00:0e:d9:ed:03 sensor: unknown, did not answer (a sleeping device answers when it wakes)",
        "zigbee/00:0d:6f:00:0e:d9:ed:01: updating 0x00010005 -> 0x00010006; follow it with edged zigbee ota list",
    ]
