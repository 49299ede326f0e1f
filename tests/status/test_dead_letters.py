"""The dead letters through the HTTP API and ``edged outbox``: list, requeue, discard."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import aiohttp
import pytest

from edged.outbox import Outbox
from edged.status import outbox_cli
from tests.status.conftest import StartDaemon, http_url
from tests.uplink.peers import free_port


async def test_dead_letters_are_listed_requeued_and_discarded_through_the_api(start_daemon: StartDaemon) -> None:
    # No broker listens: the readings stay in the outbox, where two are made dead letters.
    daemon = await start_daemon(extra=f"uplink: {{type: mqtt, host: 127.0.0.1, port: {free_port()}}}\n")
    outbox: Outbox = daemon.uplink.outbox
    await daemon.uplink.wait_for(lambda: outbox.is_open and outbox.rows >= 2, 10)
    first = await outbox.fetch(0, 2**62, 1)
    second = await outbox.fetch(first[0].id, 2**62, 1)
    assert await outbox.dead_letter(first[0], "refused: too large") and await outbox.dead_letter(second[0], "refused")
    url = http_url(daemon) + "/api/outbox/dead-letters"
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            listed = await response.json()
        assert response.status == 200
        assert [(d["id"], d["reason"]) for d in listed["dead_letters"]] == [(first[0].id, "refused: too large"),
                                                                            (second[0].id, "refused")]
        async with session.post(url + "/requeue", json={"ids": [first[0].id]}) as response:
            assert (response.status, await response.json()) == (200, {"requeued": first[0].count})
        async with session.post(url + "/discard", json={"ids": "all"}) as response:
            assert response.status == 400, "a malformed request is refused with a reason"
        async with session.post(url + "/discard", json={"all": True}) as response:
            assert (response.status, await response.json()) == (200, {"discarded": second[0].count})
        async with session.get(url) as response:
            assert (await response.json())["dead_letters"] == []
    assert outbox.balance() == (0, 0)
    assert (outbox.requeued, outbox.discarded) == (first[0].count, second[0].count)


async def test_edged_outbox_lists_requeues_and_discards_dead_letters(
    start_daemon: StartDaemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon = await start_daemon(extra=f"uplink: {{type: mqtt, host: 127.0.0.1, port: {free_port()}}}\n")
    outbox: Outbox = daemon.uplink.outbox
    await daemon.uplink.wait_for(lambda: outbox.is_open and outbox.rows >= 2, 10)
    first = (await outbox.fetch(0, 2**62, 1))[0]
    second = (await outbox.fetch(first.id, 2**62, 1))[0]
    assert await outbox.dead_letter(first, "refused: quota") and await outbox.dead_letter(second, "refused: too large")
    common = ["--url", http_url(daemon), "--config", str(tmp_path / "none.yaml")]

    def edged_outbox(*argv: str) -> tuple[int, str, str]:
        parser = argparse.ArgumentParser()
        outbox_cli.add_arguments(parser)
        code = outbox_cli.main(parser.parse_args([*argv, *common]))
        out, err = capsys.readouterr()
        return code, out, err

    code, out, _ = await asyncio.to_thread(edged_outbox, "dead-letters")
    listed = [line.split()[:6] for line in out.splitlines()[1:3]]
    assert code == 0 and listed == [[str(first.id), str(first.gen), "uplink", "readings", first.subject, str(first.count)],
                                    [str(second.id), str(second.gen), "uplink", "readings", second.subject, str(second.count)]]
    assert "refused: quota" in out and "2 dead letters" in out
    code, _, err = await asyncio.to_thread(edged_outbox, "requeue")
    assert code == outbox_cli.EXIT_CONFIG and "ids or --all" in err
    code, out, _ = await asyncio.to_thread(edged_outbox, "requeue", str(first.id))
    assert (code, out.strip()) == (0, f"{first.count} readings requeued")
    code, out, _ = await asyncio.to_thread(edged_outbox, "discard", "--all")
    assert (code, out.strip()) == (0, f"{second.count} readings discarded")
    code, out, _ = await asyncio.to_thread(edged_outbox, "dead-letters")
    assert (code, out.strip()) == (0, "no dead letters")
    assert outbox.balance() == (0, 0) and outbox.dead_letters == 0


async def test_the_dead_letters_of_one_uplink_are_listed_and_requeued_without_the_others(
    start_daemon: StartDaemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two uplinks, neither broker listening: each keeps its own copy of every reading.
    uplinks = (f"uplinks:\n  - {{type: mqtt, name: cloud, host: 127.0.0.1, port: {free_port()}}}\n"
               f"  - {{type: mqtt, name: site, host: 127.0.0.1, port: {free_port()}}}\n")  # fmt: skip
    daemon = await start_daemon(extra=uplinks)
    outbox: Outbox = daemon.uplink.outbox
    await daemon.uplink.wait_for(lambda: outbox.is_open and outbox.rows >= 1, 10)
    row = (await outbox.fetch(0, 2**62, 1))[0]
    assert await outbox.lane("cloud").dead_letter(row, "refused by cloud")
    assert await outbox.lane("site").dead_letter(row, "refused by site")
    url = http_url(daemon) + "/api/outbox/dead-letters"
    async with aiohttp.ClientSession() as session:
        async with session.get(url, params={"uplink": "site"}) as response:
            listed = await response.json()
        assert [(d["id"], d["uplink"], d["reason"]) for d in listed["dead_letters"]] == [(row.id, "site", "refused by site")]
        assert listed["readings"] == row.count
        async with session.get(url, params={"uplink": "elsewhere"}) as response:
            assert response.status == 404 and "cloud, site" in (await response.json())["error"]
        async with session.post(url + "/requeue", json={"all": True, "uplink": "elsewhere"}) as response:
            assert response.status == 404
        async with session.post(url + "/requeue", json={"all": True, "uplink": "site"}) as response:
            assert (response.status, await response.json()) == (200, {"requeued": row.count})
        async with session.get(url) as response:
            left = (await response.json())["dead_letters"]
    assert [(d["id"], d["uplink"]) for d in left] == [(row.id, "cloud")]
    assert (outbox.lane("site").requeued, outbox.lane("cloud").requeued) == (row.count, 0)

    def edged_outbox(*argv: str) -> tuple[int, str]:
        parser = argparse.ArgumentParser()
        outbox_cli.add_arguments(parser)
        code = outbox_cli.main(parser.parse_args([*argv, "--url", http_url(daemon), "--config", str(tmp_path / "none.yaml")]))
        return code, capsys.readouterr().out

    code, out = await asyncio.to_thread(edged_outbox, "dead-letters", "--uplink", "site")
    assert (code, out.strip()) == (0, "no dead letters")
    code, out = await asyncio.to_thread(edged_outbox, "discard", "--all", "--uplink", "cloud")
    assert (code, out.strip()) == (0, f"{row.count} readings discarded")
    assert outbox.balance() == (0, 0) and outbox.dead_letters == 0
