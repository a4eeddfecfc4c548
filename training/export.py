"""Export a training checkpoint to the shipped safetensors format and record its sha256 in plugin.toml."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

import torch

from fhdr_plugin.manifest import PACKAGE_DIR, manifest_path, read_manifest
from fhdr_plugin.model import FHDR
from fhdr_plugin.version import __version__
from fhdr_plugin.weights import save_weights


def checkpoint_metadata(ck: dict, extra: dict[str, str]) -> dict[str, str]:
    """The weights' metadata (all strings) from a checkpoint's recorded settings."""
    cfg, syn = ck["config"], ck["synthesis"]
    meta = {
        "fhdr:iterations": str(cfg["iterations"]),
        "fhdr:headroom": str(syn["headroom"]),
        "fhdr:hdr_normalisation": (
            f"linear HDR relative to the synthesised LDR's white (1.0), divided by headroom {syn['headroom']:g} "
            "and clipped to [0, 1]"
        ),
        "fhdr:ldr_synthesis": (
            f"clipped fraction log-uniform {syn['clip_min']:g}-{syn['clip_max']:g}, sRGB with gamma jitter "
            f"±{syn['gamma_jitter']:g} (log), noise {syn['noise']:g}, {syn['bits']}-bit quantisation"
        ),
        "fhdr:perceptual_loss": "vgg19" if ck["perceptual"] else "off (no VGG19 weights given)",
        "fhdr:loss": "L1 on mu-law (mu=5000)" + (" + 10 x VGG19 perceptual" if ck["perceptual"] else ""),
        "fhdr:steps": str(ck["step"]),
        "fhdr:crop": str(cfg["crop"]),
        "fhdr:batch": str(cfg["batch"]),
        "fhdr:lr": str(cfg["lr"]),
        "fhdr:val_mu_psnr": f"{ck['val_mu_psnr']:.3f}" if ck.get("val_mu_psnr") is not None else "",
        "fhdr:version": __version__,
        "fhdr:exported_on": platform.platform(),
    }
    meta.update(extra)
    return meta


def set_manifest_sha(manifest_file: Path, model: str, sha: str) -> None:
    """Rewrite the sha256 of ``[models.<model>]`` in the manifest, keeping the rest of the file as it is."""
    text = manifest_file.read_text()
    pattern = re.compile(rf'(\[models\.{re.escape(model)}\][^\[]*?sha256\s*=\s*")[0-9a-f]*(")', re.S)
    new, count = pattern.subn(rf"\g<1>{sha}\g<2>", text)
    if count != 1:
        raise ValueError(f"{manifest_file}: no sha256 entry for [models.{model}]")
    tmp = manifest_file.with_name(f".{manifest_file.name}.tmp{os.getpid()}")
    tmp.write_text(new)
    os.replace(tmp, manifest_file)


def export(checkpoint: Path, model: str, extra: dict[str, str], manifest_file: Path | None = None) -> tuple[Path, str]:
    """Write the checkpoint's weights to the file ``model`` names in the manifest; returns (path, sha256)."""
    manifest_file = manifest_file or manifest_path()
    spec = read_manifest(manifest_file).model(model)
    ck = torch.load(checkpoint, weights_only=True, map_location="cpu")
    net = FHDR(ck["config"]["iterations"])
    net.load_state_dict(ck["model"])
    spec.path.parent.mkdir(parents=True, exist_ok=True)
    sha = save_weights(net, spec.path, checkpoint_metadata(ck, extra))
    set_manifest_sha(manifest_file, model, sha)
    return spec.path.relative_to(PACKAGE_DIR.parent), sha
