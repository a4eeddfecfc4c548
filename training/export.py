"""Export a training checkpoint to the shipped safetensors format and record its sha256 in plugin.toml."""

from __future__ import annotations

import platform
import re
from pathlib import Path

import torch

from fhdr_plugin.imaging.io import write_bytes_atomic
from fhdr_plugin.manifest import PACKAGE_DIR, manifest_path, read_manifest
from fhdr_plugin.node.encoding import MU
from fhdr_plugin.node.model import FHDR, build
from fhdr_plugin.node.weights import save_weights
from fhdr_plugin.version import __version__
from training.data import SOURCE_SHARE


def load_checkpoint(path: Path) -> dict:
    """A training checkpoint, read without executing code (``weights_only``), on the CPU."""
    return torch.load(path, weights_only=True, map_location="cpu")


def checkpoint_model(ck: dict) -> FHDR:
    """The network a training checkpoint holds, built as its config says and loaded with its weights."""
    net = build(ck["config"].get("arch", "fhdr"), ck["config"]["iterations"])
    net.load_state_dict(ck["model"])
    return net


def checkpoint_metadata(ck: dict, extra: dict[str, str]) -> dict[str, str]:
    """The weights' metadata (all strings) from a checkpoint's recorded settings."""
    cfg, syn = ck["config"], ck["synthesis"]
    prior = ck.get("prior", {"init": "", "steps": 0, "seconds": 0.0})
    val = ck.get("val") or {}
    encoding = syn.get("encoding", "linear")
    meta = {
        "fhdr:iterations": str(cfg["iterations"]),
        "fhdr:headroom": str(syn["headroom"]),
        "fhdr:encoding": encoding,
        "fhdr:mu": str(MU),
        "fhdr:hdr_normalisation": (
            f"linear HDR relative to the synthesised LDR's white (1.0), divided by headroom {syn['headroom']:g}, "
            f"clipped to [0, 1]" + (f", mu-law encoded (mu={MU:g})" if encoding == "mu-law" else "")
        ),
        "fhdr:ldr_synthesis": (
            f"whole-image exposure clipping a fraction log-uniform {syn['clip_min']:g}-{syn['clip_max']:g}, "
            f"crops centred on clipped pixels with probability {syn.get('focus', 0):g}"
            + (
                f" (on their brightest {SOURCE_SHARE:.0%} with probability {syn['source']:g})"
                if syn.get("source")
                else ""
            )
            + f", scales "
            f"{syn.get('scales', [1])}, white balance {syn.get('white_balance', 0):g}, noise up to "
            f"{syn['noise']:g}, shoulder p={syn.get('shoulder', 0):g}, sRGB with gamma jitter "
            f"±{syn['gamma_jitter']:g} (log) and contrast {syn.get('contrast', 0):g}, {syn['bits']}-bit, "
            f"JPEG p={syn.get('jpeg', 0):g}"
        ),
        "fhdr:perceptual_loss": "vgg19" if ck["perceptual"] else "off (no VGG19 weights given)",
        "fhdr:loss": (
            f"L1 on mu-law (mu={MU:g}) of "
            + (
                f"the anchored composite (blend-weighted) + {1 - cfg['focus']:g} x the raw output"
                if cfg.get("loss", "weighted") == "composite"
                else f"the raw output, pixels weighted 1 - {cfg.get('focus', 0):g} + {cfg.get('focus', 0):g} x blend"
            )
            + (f" + {cfg['keep']:g} x L1 to the plate over the measured channels" if cfg.get("keep") else "")
            + (
                f" + {cfg['consistency']:g} x steadiness over two frames"
                f" (moved up to {syn.get('shift', 1.0):g} px, new noise and JPEG)"
                if cfg.get("consistency")
                else ""
            )
            + (" + 10 x VGG19 perceptual" if ck["perceptual"] else "")
            + (
                f"; an error above the truth (over-lift) weighs {cfg['over_weight']:g}x one below"
                if cfg.get("over_weight", 1.0) != 1.0
                else ""
            )
        ),
        "fhdr:steps": str(ck["step"]),
        "fhdr:total_steps": str(prior["steps"] + ck["step"]),
        "fhdr:total_seconds": f"{prior['seconds'] + ck.get('seconds', 0.0):.0f}",
        "fhdr:init": prior["init"],
        "fhdr:architecture": cfg.get("arch", "fhdr"),
        "fhdr:crop": str(cfg["crop"]),
        "fhdr:batch": str(cfg["batch"]),
        "fhdr:lr": str(cfg["lr"]),
        "fhdr:precision": cfg.get("precision", "float32"),
        "fhdr:version": __version__,
        "fhdr:exported_on": platform.platform(),
    }
    meta.update(validation_metadata(val))
    meta.update(extra)
    return meta


def validation_metadata(val: dict, prefix: str = "fhdr:val_") -> dict[str, str]:
    """A validation result's figures (``validation.validate``) as metadata keys starting with ``prefix``."""
    meta = {}
    keys = (
        "pu21_clipped",
        "gain_clipped",
        "worst_all",
        "unclipped_max",
        "log_lift_median",
        "log_lift_min",
        "log_lift_reach_min",
        "flat_max",
    )
    for key in keys:
        if key in val:
            meta[f"{prefix}{key}"] = f"{val[key]:.3f}"
    for key in ("below_guard", "flat_over"):
        if key in val:
            meta[f"{prefix}{key}"] = str(val[key])
    if "hollow" in val:
        meta[f"{prefix}hollow"] = ",".join(val["hollow"])
    if val.get("cases"):
        meta[f"{prefix}cases"] = ",".join(sorted({c["case"].split("@")[0] for c in val["cases"]}))
    return meta


def set_manifest_sha(manifest_file: Path, model: str, sha: str) -> None:
    """Rewrite the sha256 of ``[models.<model>]`` in the manifest, keeping the rest of the file as it is."""
    text = manifest_file.read_text()
    pattern = re.compile(rf'(\[models\.{re.escape(model)}\][^\[]*?sha256\s*=\s*")[0-9a-f]*(")', re.S)
    new, count = pattern.subn(rf"\g<1>{sha}\g<2>", text)
    if count != 1:
        raise ValueError(f"{manifest_file}: no sha256 entry for [models.{model}]")
    write_bytes_atomic(manifest_file, new.encode())


def export(checkpoint: Path, model: str, extra: dict[str, str], manifest_file: Path | None = None) -> tuple[Path, str]:
    """Write the checkpoint's weights to the file ``model`` names in the manifest; returns (path, sha256)."""
    manifest_file = manifest_file or manifest_path()
    spec = read_manifest(manifest_file).model(model)
    ck = load_checkpoint(checkpoint)
    net = checkpoint_model(ck)
    spec.path.parent.mkdir(parents=True, exist_ok=True)
    sha = save_weights(net, spec.path, checkpoint_metadata(ck, extra))
    set_manifest_sha(manifest_file, model, sha)
    return spec.path.relative_to(PACKAGE_DIR.parent), sha
