"""Presets and overrides: a YAML preset (``presets/``) and ``--set k=v`` over the typed config's
defaults (``trainables/config.py``), resolved and checked on the driver before Ray starts."""
from pathlib import Path

import yaml

from trainables.config import config_from_dict
from trainables.errors import UserError, bad_value

PRESET_DIR = Path(__file__).parent / "presets"


def preset_names():
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


# A preset's optional ``sweep:`` section; these are its defaults.
SWEEP_DEFAULTS = {"space": "paper-claims", "search": "grid", "num_samples": 8, "seeds": 1,
                  "scheduler": "none"}


def _read_preset(name):
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise bad_value("preset", name, f"one of {', '.join(preset_names())}")
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise UserError(f"preset={name!r}: {path} is not a mapping of config keys")
    return data


def load_preset(name):
    """The preset's config overrides (every key but ``sweep``), checked later against the config."""
    return {k: v for k, v in _read_preset(name).items() if k != "sweep"}


def load_sweep_settings(name):
    """The preset's ``sweep:`` section over SWEEP_DEFAULTS."""
    section = _read_preset(name).get("sweep") or {}
    unknown = set(section) - set(SWEEP_DEFAULTS)
    if unknown:
        key = sorted(unknown)[0]
        raise bad_value(f"sweep.{key}", section[key], f"unknown sweep setting; known: {', '.join(SWEEP_DEFAULTS)}")
    return {**SWEEP_DEFAULTS, **section}


def parse_overrides(pairs):
    """``["lr=1e-3", "bn_placement=all"]`` -> dict, values parsed as YAML scalars."""
    out = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set {pair!r} is not allowed: use --set key=value")
        try:
            out[key] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            out[key] = raw
    return out


def resolve_config(preset=None, overrides=None):
    """Defaults <- preset <- overrides, every value checked; cross-key rules last."""
    values = {}
    if preset:
        values.update(load_preset(preset))
    values.update(overrides or {})
    return config_from_dict(values)
