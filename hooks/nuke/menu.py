"""fhdr's Nuke menu.py: an "LDR to HDR" command under "fhdr" in the Nodes toolbar and the Nuke menu.

Select one or more Read nodes of LDR plates and run it: a panel asks for the output folder or pattern, the
output colour space, the strength and the frames either side to steady each frame by (``fhdr batch --steady``;
remembered for next time); the frames of each Read (its first to last), read in the space its ``colorspace`` knob
names when fhdr's config knows it, become scene-linear EXRs, converted by ``fhdr_plugin.host.batch.run_batch`` in a
background thread with a progress bar that can cancel between frames, and a new Read node on them appears beside
the source with its colorspace set to the output's space. Frames that fail or are cancelled are reported in one
message at the end. The work is done by ``fhdr_nuke``; this file only talks to Nuke.
"""

from __future__ import annotations

import threading
from typing import Any

import fhdr_nuke
import nuke

from fhdr_plugin.errors import FhdrError
from fhdr_plugin.host.batch import FrameResult

MENU = "fhdr"
COMMAND = "LDR to HDR"
#: The panel's fields: label, ``fhdr_nuke.Settings`` field.
FIELDS = (
    ("output folder or pattern", "output"),
    ("output colorspace", "output_colorspace"),
    ("strength", "strength"),
    ("steady: frames either side (0: off)", "steady"),
)


def ldr_to_hdr_selected() -> threading.Thread | None:
    """Convert the selected Read nodes in a background thread, which is returned (None when there is no job)."""
    reads = nuke.selectedNodes("Read")
    if not reads:
        nuke.message(f"{COMMAND}: select a Read node of an LDR plate first.")
        return None
    settings = _ask()
    if settings is None:
        return None
    jobs = []
    for read in reads:
        try:
            file = nuke.filename(read) or read["file"].value()
            job = fhdr_nuke.ReadJob.of(file, int(read["first"].value()), int(read["last"].value()), settings.output)
        except FhdrError as exc:
            nuke.message(f"{COMMAND}: {read.name()}: {exc}")
            continue
        knob = read.knob("colorspace")
        space = fhdr_nuke.input_colorspace(str(knob.value())) if knob is not None else ""
        jobs.append((read, job, {**settings.params(), "input_colorspace": space}))
    if not jobs:
        return None
    thread = threading.Thread(target=_convert, args=(jobs, settings.steady), name="fhdr", daemon=True)
    thread.start()
    return thread


def _ask() -> fhdr_nuke.Settings | None:
    """The panel, filled with the remembered settings; the checked settings (saved), or None when cancelled."""
    remembered = fhdr_nuke.load_settings()
    while True:
        panel = nuke.Panel(COMMAND)
        for label, name in FIELDS:
            panel.addSingleLineInput(label, str(getattr(remembered, name)))
        if not panel.show():
            return None
        values = {name: str(panel.value(label)) for label, name in FIELDS}
        try:
            settings = fhdr_nuke.settings_from(values)
        except FhdrError as exc:
            nuke.message(f"{COMMAND}: {exc}")
            continue
        fhdr_nuke.save_settings(settings)
        return settings


def _convert(jobs: list[tuple[Any, fhdr_nuke.ReadJob, dict[str, Any]]], steady: int) -> None:
    task = nuke.ProgressTask(COMMAND)
    lines: list[str] = []
    for read, job, params in jobs:
        task.setMessage(job.nuke_output)
        try:
            results = fhdr_nuke.convert(
                job,
                params,
                steady=steady,
                on_progress=lambda result, done, total: task.setProgress(100 * done // total),
                cancelled=task.isCancelled,
            )
        except Exception as exc:
            lines.append(f"{read.name()}: {exc}")
            continue
        lines.append(fhdr_nuke.message(job, results))
        if fhdr_nuke.written(results):
            nuke.executeInMainThread(_add_read, (read, job, results, lines))
        if task.isCancelled():
            break
    nuke.executeInMainThread(_report, (lines,))


def _add_read(source: Any, job: fhdr_nuke.ReadJob, results: list[FrameResult], lines: list[str]) -> None:
    read = nuke.nodes.Read(**fhdr_nuke.read_knobs(job, results))
    read.setXYpos(source.xpos() + source.screenWidth() + 40, source.ypos())
    knob = read["colorspace"]
    candidates = fhdr_nuke.read_colorspaces(fhdr_nuke.written_colorspace(job, results))
    if not any(_try_set(knob, name) for name in fhdr_nuke.pick_colorspaces(candidates, list(knob.values()))):
        lines.append(f"{read.name()}: set its colorspace by hand to scene-linear ({candidates[0]})")


def _report(lines: list[str]) -> None:
    message = "\n".join(line for line in lines if line)
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
