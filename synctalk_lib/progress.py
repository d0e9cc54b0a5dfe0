"""Progress outside ComfyUI: an ``on_step(done, total)`` callback that draws a tqdm bar on stderr."""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Callable, Iterator

StepCallback = Callable[[int, int], None]
"""``on_step(done, total)``: called as a long loop advances; it may raise (ComfyUI's Cancel) to stop the loop."""
StatusCallback = Callable[[str], None]
"""``on_status(line)``: one human-readable line about what a stage is doing."""


@contextlib.contextmanager
def cli_progress(description: str, total: int | None = None) -> Iterator[StepCallback]:
    """Yield ``on_step(done, total)`` drawing a tqdm bar (silent with ``SYNCTALK_QUIET=1``)."""
    from tqdm.auto import tqdm

    bar = tqdm(desc=description, total=total, unit="step", leave=False, file=sys.stderr,
               disable=os.environ.get("SYNCTALK_QUIET") == "1")
    try:
        def on_step(done: int, total_now: int) -> None:
            if bar.total != total_now:
                bar.total = total_now
            bar.n = done
            bar.refresh()

        yield on_step
    finally:
        bar.close()
