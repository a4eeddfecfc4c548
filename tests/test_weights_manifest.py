"""Shipped weights are checked against plugin.toml; bad manifests and bad files fail clearly."""

import dataclasses
import hashlib

import pytest
import tomli

from fhdr_plugin.errors import FhdrError
from fhdr_plugin.manifest import PACKAGE_DIR, manifest, manifest_path, parse_manifest, read_manifest
from fhdr_plugin.node.model import FHDR
from fhdr_plugin.node.weights import REQUIRED_METADATA, load_model, model_metadata, save_weights
from fhdr_plugin.version import __version__


def raw_manifest() -> dict:
    with open(manifest_path(), "rb") as f:
        return tomli.load(f)


@pytest.mark.parametrize("name", sorted(manifest().models))
def test_shipped_weights_match_the_manifest_and_load(name):
    spec = manifest().model(name)
    assert hashlib.sha256(spec.path.read_bytes()).hexdigest() == spec.sha256
    model, meta = load_model(spec)
    assert isinstance(model, FHDR) and model.iterations == int(meta["fhdr:iterations"])
    assert all(k in meta for k in REQUIRED_METADATA)
    assert float(meta["fhdr:headroom"]) > 1
    assert int(meta["fhdr:steps"]) > 0, "shipped weights must be trained"


def test_manifest_version_matches_the_package():
    assert manifest().version == __version__


def test_tampered_weights_are_refused(tmp_path):
    spec = manifest().model()
    data = bytearray(spec.path.read_bytes())
    data[-10] ^= 0xFF
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(FhdrError, match="sha256.*reinstall"):
        load_model(dataclasses.replace(spec, path=bad))


def test_missing_weights_file(tmp_path):
    spec = dataclasses.replace(manifest().model(), path=tmp_path / "absent.safetensors")
    with pytest.raises(FhdrError, match="cannot read"):
        load_model(spec)


def test_corrupt_file_with_matching_hash_is_refused(tmp_path):
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    spec = dataclasses.replace(manifest().model(), path=bad, sha256=hashlib.sha256(bad.read_bytes()).hexdigest())
    with pytest.raises(FhdrError, match="not a safetensors file"):
        load_model(spec)


def test_weights_of_another_shape_are_refused(tmp_path):
    import safetensors.torch
    import torch

    path = tmp_path / "w.safetensors"
    meta = {k: "1" for k in REQUIRED_METADATA}
    safetensors.torch.save_file({"feb2.weight": torch.zeros(2, 2)}, str(path), metadata=meta)
    spec = dataclasses.replace(manifest().model(), path=path, sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    with pytest.raises(FhdrError, match="do not fit"):
        load_model(spec)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fhdr:iterations": "two"}, "fhdr:iterations must be 1-4, got 'two'"),
        ({"fhdr:iterations": "9"}, "fhdr:iterations must be 1-4"),
        ({"fhdr:encoding": "log"}, "unknown output encoding 'log'"),
        ({"fhdr:headroom": "lots"}, "could not convert"),
        ({"fhdr:headroom": "-4"}, "must be positive numbers"),
    ],
)
def test_weights_whose_metadata_the_node_cannot_run_by_are_refused(tmp_path, change, message):
    import safetensors.torch
    import torch

    path = tmp_path / "w.safetensors"
    meta = {**{k: "1" for k in REQUIRED_METADATA}, **change}
    safetensors.torch.save_file({"feb2.weight": torch.zeros(2, 2)}, str(path), metadata=meta)
    spec = dataclasses.replace(manifest().model(), path=path, sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    with pytest.raises(FhdrError, match=message):
        load_model(spec)


def test_save_and_reload_round_trip(tmp_path):
    model = FHDR(2)
    meta = {k: "2" for k in REQUIRED_METADATA}
    path = tmp_path / "m.safetensors"
    sha = save_weights(model, path, meta)
    spec = dataclasses.replace(manifest().model(), path=path, sha256=sha)
    again, got = load_model(spec)
    assert got["fhdr:iterations"] == "2" and again.iterations == 2
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert (a == b).all()
    assert model_metadata(spec) == got


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda d: d.pop("plugin"), r"missing table \[plugin\]"),
        (lambda d: d["plugin"].update(default_model="nope"), "default_model 'nope'"),
        (lambda d: d["models"]["fhdr-i1"].update(sha256="xyz"), "64 lower-case hex"),
        (lambda d: d["models"]["fhdr-i1"].update(file="../../etc/passwd"), "outside the package"),
        (lambda d: d["operations"]["ldr_to_hdr"].update(params={"mode": {}}), "parameters are declared in code"),
        (lambda d: d["plugin"].update(name=3), "name must be a non-empty string"),
        (lambda d: d["operations"].pop("ldr_to_hdr"), r"no \[operations.ldr_to_hdr\] table"),
    ],
)
def test_bad_manifests_fail_clearly(mutate, message):
    data = raw_manifest()
    mutate(data)
    with pytest.raises(FhdrError, match=message):
        parse_manifest(data)


def test_unparsable_manifest(tmp_path):
    bad = tmp_path / "plugin.toml"
    bad.write_text("[plugin\nname = ")
    with pytest.raises(FhdrError, match="cannot read the plugin manifest"):
        read_manifest(bad)


def test_unknown_model_name():
    with pytest.raises(FhdrError, match="unknown model 'gpt'.*fhdr-i1"):
        manifest().model("gpt")


def test_model_paths_stay_inside_the_package():
    for spec in manifest().models.values():
        assert spec.path.is_relative_to(PACKAGE_DIR)
