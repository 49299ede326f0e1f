"""``edged zigbee permit`` and ``remove`` against a local HTTP server standing in for the status API routes."""

from __future__ import annotations

import argparse
import asyncio

import pytest
from aiohttp import web

from edged.adapters.zigbee import cli


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

    app = web.Application()
    app.router.add_post("/api/adapters/zigbee/permit", permit)
    app.router.add_post("/api/adapters/zigbee/remove", remove)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", seen, answer
    await runner.cleanup()


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
