"""Top functions by own and total time from py-spy's ``--format raw`` output
(collapsed stacks: ``frame;frame;... count``, a frame ``function (file:line)``).

py-spy samples every thread, and counts a thread blocked in a wait as a
sample too. Stacks that end in a wait (the event loop in ``epoll_wait``, the
outbox thread waiting for work) are left out and counted apart; every share
is of the *wall-clock* samples (those of the main thread, one per sampling
tick; or ``--ticks``, the duration times the rate, where py-spy itself left
out samples it saw idle), so a share is roughly the percentage of the core
spent there. Own
time: the function is the innermost frame; total: it is anywhere on the
stack. Functions are told apart by name and file; the line shown is the one
sampled most often.

    python bench/profiles/top.py PROFILE.raw [--top 25] [--ticks SECONDS_X_RATE]
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
WAITS = {("EpollSelector.select", "selectors.py"), ("_worker", "concurrent/futures/thread.py:81")}

Key = tuple[str, str]


def parse(frame: str) -> tuple[Key, str]:
    """(function, file) and the line of one collapsed frame."""
    match = FRAME.match(frame.strip())
    if match is None:
        return (frame.strip(), ""), ""
    file = match["file"]
    for marker in ("site-packages/", "/lib/python3.11/", "/work/main/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return (match["function"], file), match["line"] or ""


def waiting(key: Key, line: str) -> bool:
    return key in WAITS or (key[0], f"{key[1]}:{line}") in WAITS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--ticks", type=int, default=0, help="sampling ticks (seconds x rate); default: main-thread samples")
    args = parser.parse_args()
    own: collections.Counter[Key] = collections.Counter()
    total: collections.Counter[Key] = collections.Counter()
    lines: dict[Key, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    threads: collections.Counter[str] = collections.Counter()  # busy and waiting samples, main thread and others
    for row in args.profile.read_text().splitlines():
        stack, _, count_text = row.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [parse(frame) for frame in stack.split(";")]
        thread = "other threads" if frames[0][0][0].startswith("Thread.") else "main thread"
        if waiting(*frames[-1]):
            threads[f"{thread} waiting"] += count
            continue
        threads[f"{thread} busy"] += count
        own[frames[-1][0]] += count
        for key in {key for key, _ in frames}:
            total[key] += count
        for key, line in frames:
            lines[key][line] += count
    wall = args.ticks or threads["main thread busy"] + threads["main thread waiting"]
    print(f"{wall} wall-clock samples; " + ", ".join(f"{name} {100 * n / wall:.1f} %" for name, n in sorted(threads.items())))
    for title, counter in (("own", own), ("total", total)):
        print(f"\nby {title} time (% of wall-clock samples):\n\n| function | file:line | own % | total % |\n|---|---|---|---|")
        for key, _ in counter.most_common(args.top):
            line = lines[key].most_common(1)[0][0] if lines[key] else ""
            print(f"| `{key[0]}` | {key[1]}:{line} | {100 * own[key] / wall:.1f} | {100 * total[key] / wall:.1f} |")


if __name__ == "__main__":
    main()
