"""fhdr's Nuke menu.py: an "LDR to HDR" command under "fhdr" in the Nodes toolbar and the Nuke menu.

Select one or more Read nodes of LDR plates and run it: the frames of each (the Read's first to last) become
scene-linear EXRs in a ``fhdr`` folder beside the plate, converted in a background thread with a progress bar,
and a new Read node on them appears beside the source with its colorspace set to the output's space.
The work is done by ``fhdr_nuke``; this file only talks to Nuke.
"""

from __future__ import annotations

import threading
from typing import Any

import fhdr_nuke
import nuke

from fhdr_plugin.errors import FhdrError

MENU = "fhdr"
COMMAND = "LDR to HDR"


def ldr_to_hdr_selected() -> threading.Thread | None:
    """Convert the selected Read nodes in a background thread, which is returned (None when there is no job)."""
    reads = nuke.selectedNodes("Read")
    if not reads:
        nuke.message(f"{COMMAND}: select a Read node of an LDR plate first.")
        return None
    jobs = []
    for read in reads:
        try:
            file = nuke.filename(read) or read["file"].value()
            jobs.append((read, fhdr_nuke.plan(file, int(read["first"].value()), int(read["last"].value()))))
        except FhdrError as exc:
            nuke.message(f"{COMMAND}: {read.name()}: {exc}")
    if not jobs:
        return None
    thread = threading.Thread(target=_convert, args=(jobs,), name="fhdr", daemon=True)
    thread.start()
    return thread


def _convert(jobs: list[tuple[Any, fhdr_nuke.ReadJob]]) -> None:
    task = nuke.ProgressTask(COMMAND)
    for read, job in jobs:
        task.setMessage(job.nuke_output)
        try:
            outcome = fhdr_nuke.convert(
                job, progress=lambda done, total: task.setProgress(100 * done // total), cancelled=task.isCancelled
            )
        except Exception as exc:
            nuke.executeInMainThread(nuke.message, (f"{COMMAND}: {exc}",))
            continue
        if outcome.written:
            nuke.executeInMainThread(_add_read, (read, job, outcome))
        if outcome.cancelled:
            break


def _add_read(source: Any, job: fhdr_nuke.ReadJob, outcome: fhdr_nuke.Outcome) -> None:
    read = nuke.nodes.Read(**fhdr_nuke.read_knobs(job, outcome))
    read.setXYpos(source.xpos() + source.screenWidth() + 40, source.ypos())
    knob = read["colorspace"]
    candidates = fhdr_nuke.read_colorspaces(fhdr_nuke.written_colorspace(job, outcome))
    notes = [fhdr_nuke.summary(job, outcome)]
    if not any(_try_set(knob, name) for name in fhdr_nuke.pick_colorspaces(candidates, list(knob.values()))):
        notes.append(f"{read.name()}: set its colorspace by hand to scene-linear ({candidates[0]})")
    message = "\n".join(n for n in notes if n)
    if message:
        nuke.message(f"{COMMAND}: {message}")


def _try_set(knob: Any, name: str) -> bool:
    try:
        knob.setValue(name)
    except Exception:
        return False
    return str(knob.value()).endswith(name)


for _menu in ("Nodes", "Nuke"):
    nuke.menu(_menu).addMenu(MENU).addCommand(COMMAND, ldr_to_hdr_selected)
