"""Presets and overrides: a YAML preset (``presets/``) and ``--set k=v`` over the typed config's
defaults (``trainables/config.py``), resolved and checked on the driver before Ray starts; and the
sweep's own settings (``SweepSettings``: a preset's ``sweep:`` section, then the sweep's flags)."""
import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from trainables.config import coerce_field, config_from_dict, setting
from trainables.errors import UserError, bad_value

PRESET_DIR = Path(__file__).parent / "presets"


def preset_names():
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _read_preset(name):
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise bad_value("preset", name, f"one of {', '.join(preset_names())}")
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise UserError(f"preset={name!r}: {path} is not a mapping of config keys")
    return data


SECTIONS = ("sweep", "search_study")   # a preset's sections that are not config keys


def load_preset(name):
    """The preset's config overrides (every key but its SECTIONS), checked later against the config."""
    return {k: v for k, v in _read_preset(name).items() if k not in SECTIONS}


def preset_section(name, section):
    """A preset's ``section`` mapping (one of SECTIONS; {} when it has none)."""
    return _read_preset(name).get(section) or {}


SEARCH_MODES = ("tpe", "grid", "random")
SCHEDULERS = ("none", "asha")


@dataclass(frozen=True)
class SweepSettings:
    """A sweep's settings: a preset's ``sweep:`` section, then the ``sweep`` command's flags."""

    space: str = setting("paper-claims", "search space name (search_spaces/NAME.yaml) or a YAML path")
    search: str = setting("grid", "how trials are chosen", choices=SEARCH_MODES)
    num_samples: int = setting(8, "trials for tpe/random; a cap for grid", min=1)
    seeds: int = setting(1, "seeds per grid point", min=1)
    first_seed: int = setting(0, "the grid's first seed (seeds first_seed .. first_seed+seeds-1: a study run in "
                                 "blocks of seeds)", min=0)
    scheduler: str = setting("none", "asha: stop trials whose FD lags at each rung", choices=SCHEDULERS)
    sequential_looks: str = setting("5,10,15,20", "with --sequential: seeds per arm at each planned look, increasing")
    sequential_spending: str = setting("obf", "with --sequential: Lan-DeMets spending function", choices=("obf", "pocock"))
    sequential_claims: str = setting("paper", "with --sequential: the claims file whose claims the looks decide")

    def to_dict(self):
        return dataclasses.asdict(self)


SWEEP_FIELDS = {f.name: f for f in fields(SweepSettings)}


def sweep_flag(key):
    return "--" + key.replace("_", "-")


def load_sweep_settings(name, flags=None):
    """SweepSettings from the preset's ``sweep:`` section, then ``flags`` (key -> value, None: not
    given); each value checked, the error naming where it came from (``sweep.seeds`` or ``--seeds``)."""
    section = _read_preset(name).get("sweep") or {}
    unknown = set(section) - set(SWEEP_FIELDS)
    if unknown:
        key = sorted(unknown)[0]
        raise bad_value(f"sweep.{key}", section[key], f"unknown sweep setting; known: {', '.join(SWEEP_FIELDS)}")
    values = {k: coerce_field(SWEEP_FIELDS[k], v, f"sweep.{k}") for k, v in section.items()}
    for key, value in (flags or {}).items():
        if value is not None:
            values[key] = coerce_field(SWEEP_FIELDS[key], value, sweep_flag(key))
    return SweepSettings(**values)


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
