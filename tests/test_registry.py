"""The pluggy host: the built-in plugin is registered directly, third parties through entry points; hooks run
around operations."""

from importlib.metadata import entry_points

import numpy as np
import OpenImageIO as oiio
import pytest

import fhdr_plugin
from fhdr_plugin import hookimpl
from fhdr_plugin.errors import FhdrError
from fhdr_plugin.host.registry import Operation, Registry, plugin_manager, registry
from fhdr_plugin.imaging.io import read_image
from fhdr_plugin.manifest import manifest
from fhdr_plugin.params import LdrToHdrParams, NoParams


def test_builtin_plugin_is_registered_directly_not_through_an_entry_point():
    names = {ep.name: ep.value for ep in entry_points(group=manifest().entry_point_group)}
    assert "fhdr_plugin.host.builtin" not in names.values()  # one route for the built-in: the manager registers it
    pm = plugin_manager()
    assert pm.has_plugin("fhdr")
    assert "ldr_to_hdr" in registry().operations


class Recorder:
    """A third-party plugin: one operation and both hooks."""

    def __init__(self):
        self.calls = []

    @hookimpl
    def fhdr_register_operations(self):
        return [Operation("halve", "x / 2", self.halve, plugin="recorder")]

    def halve(self, buf, params):
        return oiio.ImageBufAlgo.mul(buf, 0.5)

    @hookimpl
    def fhdr_before_operation(self, name, buf, params):
        self.calls.append(("before", name, params))

    @hookimpl
    def fhdr_after_operation(self, name, result, params):
        self.calls.append(("after", name, result.spec().width))


def test_third_party_operation_and_hooks(ldr_png):
    pm = plugin_manager()
    rec = Recorder()
    pm.register(rec, name="recorder")
    reg = Registry(pm)
    assert {"ldr_to_hdr", "halve"} <= set(reg.operations)
    out = reg.run("halve", read_image(ldr_png))
    assert np.asarray(out.get_pixels(oiio.FLOAT)).max() <= 0.51
    reg.run("ldr_to_hdr", read_image(ldr_png), mode="raw")
    assert rec.calls == [
        ("before", "halve", NoParams()),
        ("after", "halve", 64),
        ("before", "ldr_to_hdr", LdrToHdrParams.from_kwargs(mode="raw")),  # the checked object, not a dict
        ("after", "ldr_to_hdr", 64),
    ]


def test_the_registry_checks_once_and_takes_a_parameter_object(ldr_png):
    reg = Registry(plugin_manager())
    params = LdrToHdrParams.from_kwargs(mode="raw", tile=0)
    assert reg.params("ldr_to_hdr", params) is params
    assert reg.params("ldr_to_hdr", mode="raw", tile=0) == params
    with pytest.raises(FhdrError, match=r"takes one LdrToHdrParams or keyword values, not both \(tile given too\)"):
        reg.params("ldr_to_hdr", params, tile=64)
    with pytest.raises(FhdrError, match="takes one LdrToHdrParams or keyword values, not dict"):
        reg.params("ldr_to_hdr", {"tile": 64})
    with pytest.raises(FhdrError, match="unknown parameter"):
        reg.params("ldr_to_hdr", tiles=64)
    by_object = reg.run("ldr_to_hdr", read_image(ldr_png), params)
    by_values = reg.run("ldr_to_hdr", read_image(ldr_png), mode="raw", tile=0)
    np.testing.assert_array_equal(by_object.get_pixels(oiio.FLOAT), by_values.get_pixels(oiio.FLOAT))


def test_duplicate_operation_names_are_refused():
    class Twin:
        @hookimpl
        def fhdr_register_operations(self):
            return [Operation("ldr_to_hdr", "impostor", lambda buf, params: buf)]

    pm = plugin_manager()
    pm.register(Twin())
    with pytest.raises(FhdrError, match="registered twice"):
        Registry(pm)


def test_unknown_operation(ldr_png):
    with pytest.raises(FhdrError, match="unknown operation 'blur'.*ldr_to_hdr"):
        fhdr_plugin.run_operation("blur", read_image(ldr_png))


def test_an_argument_that_is_not_an_imagebuf_is_named(ldr_png):
    for wrong in (str(ldr_png), np.zeros((4, 4, 3), np.float32)):
        with pytest.raises(FhdrError, match=f"ldr_to_hdr: takes an OpenImageIO ImageBuf, not {type(wrong).__name__}"):
            fhdr_plugin.ldr_to_hdr(wrong)


def test_public_api_runs_the_node(ldr_png):
    out = fhdr_plugin.ldr_to_hdr(read_image(ldr_png))
    assert out.spec().get_string_attribute("fhdr:model") == manifest().default_model
