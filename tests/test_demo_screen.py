"""The demo's live view: redrawn in place on a terminal, plain lines when piped."""

from __future__ import annotations

import io
import logging
import os
import pty

from edged.demo.screen import Screen


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_each_view_replaces_the_last() -> None:
    out = Terminal()
    screen = Screen(out)
    screen.draw(["-- live values --", "  sim/relay online relay=True"])
    first = out.getvalue()
    screen.draw(["-- live values --", "  sim/relay OFFLINE"])
    second = out.getvalue()[len(first):]
    assert not first.startswith("\x1b[2F")  # nothing above to go back over
    assert second.startswith("\x1b[2F\x1b[J"), "back up over the two lines drawn, and clear them"
    assert second.endswith("  sim/relay OFFLINE\n")


def test_piped_views_follow_each_other_as_plain_lines() -> None:
    out = io.StringIO()
    screen = Screen(out)
    screen.draw(["a", "b"])
    screen.draw(["c"])
    assert out.getvalue() == "a\nb\nc\n"


def test_on_a_terminal_log_lines_go_under_the_view_and_come_back_after() -> None:
    out = Terminal()
    screen = Screen(out)
    root = logging.getLogger()
    before = list(root.handlers)
    log = logging.getLogger("edged.test")
    with screen.showing_logs():
        log.warning("the broker refused the connection")
        screen.draw(["-- live values --"])
        under = out.getvalue().split("-- live values --\n-- log --\n")[-1]
        assert under.count("\n") == 1 and under.endswith("the broker refused the connection\n")
        log.warning("stopping")  # after the last view: printed when the view ends
    assert root.handlers == before
    assert out.getvalue().endswith("stopping\n")


def test_a_real_terminal_is_told_apart_from_a_pipe() -> None:
    leader, follower = pty.openpty()
    try:
        with os.fdopen(follower, "w", closefd=False) as stream:
            assert Screen(stream).tty
    finally:
        os.close(leader)
        os.close(follower)
    read, write = os.pipe()
    try:
        with os.fdopen(write, "w", closefd=False) as stream:
            assert not Screen(stream).tty
    finally:
        os.close(read)
        os.close(write)
