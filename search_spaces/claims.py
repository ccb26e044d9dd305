"""Claims as data: YAML files in ``search_spaces/claims/`` (or any path), checked against the config.

A claims file declares, before any run is seen, what each claim predicts and on which metric::

    claims:
      lr:
        factor: lr                 # a config key
        alt: 1.0e-3                # the level the paper argues against
        primary: fd_final          # the one metric the verdict comes from
        predict: {fd_final: higher, sample_oscillation: higher}   # alt vs the paper's level
        quote: "We found the suggested learning rate of 0.001, to be too high, using 0.0002 instead."
        section: "4"

The paper's level is the config's default for the factor (``trainables/config.py``); a file may
set ``paper:`` to compare against another level. Every metric of ``predict`` other than the
primary is a secondary: reported, corrected for multiplicity, never deciding the verdict.

A file may also set ``plateau_margin`` (top level, log FD per 1,000 steps, default 0.1): a cell
is *flat* when its last-quarter slope is shown inside +-margin (docs/report.md, section 7), and a
claim is contradicted only when both of its cells are flat.
"""
from dataclasses import dataclass
from pathlib import Path

import yaml

from search_spaces.loader import find_yaml
from search_spaces.metrics import METRICS
from trainables.config import FIELDS, Config, coerce
from trainables.errors import UserError, bad_value

CLAIMS_DIR = Path(__file__).parent / "claims"
DIRECTIONS = {"higher": 1, "lower": -1}   # the predicted sign of alt − paper
REQUIRED = ("factor", "alt", "primary", "predict", "quote", "section")
OPTIONAL = ("paper",)
PLATEAU_MARGIN = 0.1   # log FD per 1,000 steps; why this value: docs/report.md, section 7


@dataclass(frozen=True)
class Claim:
    key: str
    factor: str
    paper: object       # levels in the config key's type
    alt: object
    primary: str
    expect: tuple       # ((metric, +1 | -1), ...), the primary first
    quote: str
    section: str
    plateau_margin: float = PLATEAU_MARGIN   # the file's: log FD per 1,000 steps a flat cell stays within

    @property
    def secondaries(self):
        return self.expect[1:]


def claims_names():
    return sorted(p.stem for p in CLAIMS_DIR.glob("*.yaml"))


def load_claims(name_or_path="paper"):
    """A registered name (``search_spaces/claims/NAME.yaml``) or a path -> checked Claims, in file order."""
    path = _find(str(name_or_path))
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise UserError(f"claims file {path}: not valid YAML: {' '.join(str(err).split())}") from None
    if not isinstance(data, dict) or not isinstance(data.get("claims"), dict) or not data["claims"]:
        raise UserError(f"claims file {path}: must be a mapping with a non-empty 'claims' mapping")
    unknown = sorted(set(data) - {"description", "claims", "plateau_margin"})
    if unknown:
        raise UserError(f"claims file {path}: unknown top-level key {unknown[0]!r}: allowed: description, claims, "
                        "plateau_margin")
    margin = data.get("plateau_margin", PLATEAU_MARGIN)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 < margin < float("inf"):
        raise UserError(f"claims file {path}: plateau_margin={margin!r} is not allowed: a positive number "
                        "(log FD per 1,000 steps)")
    claims = []
    for key, spec in data["claims"].items():
        try:
            claims.append(_check_claim(str(key), spec, float(margin)))
        except UserError as err:
            raise UserError(f"claims file {path}: claims.{key}: {err}") from None
    return claims


def _find(name_or_path):
    return find_yaml(name_or_path, CLAIMS_DIR, claims_names(), "claims")


def _check_claim(key, spec, margin=PLATEAU_MARGIN):
    if not isinstance(spec, dict):
        raise UserError(f"must be a mapping with {', '.join(REQUIRED)} (got {spec!r})")
    for name in spec:
        if name not in REQUIRED + OPTIONAL:
            raise UserError(f"unknown field {name!r}: allowed: {', '.join(REQUIRED + OPTIONAL)}")
    for name in REQUIRED:
        if name not in spec:
            raise UserError(f"{name!r} is missing (a claim needs {', '.join(REQUIRED)})")
    factor = spec["factor"]
    if factor not in FIELDS or factor == "seed":
        raise bad_value("factor", factor, f"a config key other than seed: {', '.join(k for k in FIELDS if k != 'seed')}")
    paper = coerce(factor, spec["paper"]) if "paper" in spec else getattr(Config(), factor)
    alt = coerce(factor, spec["alt"])
    if alt == paper:
        raise bad_value("alt", spec["alt"], f"a level other than the paper's {factor}={paper!r}")
    predict = spec["predict"]
    if not isinstance(predict, dict) or not predict:
        raise bad_value("predict", predict, "a mapping of metric -> higher | lower")
    for metric, direction in predict.items():
        if metric not in METRICS:
            raise bad_value("predict metric", metric, f"one of {', '.join(METRICS)}")
        if direction not in DIRECTIONS:
            raise bad_value(f"predict.{metric}", direction, "higher or lower (alt against the paper's level)")
    primary = spec["primary"]
    if primary not in predict:
        raise bad_value("primary", primary, f"one of the metrics in predict ({', '.join(predict)})")
    expect = ((primary, DIRECTIONS[predict[primary]]),) + tuple(
        (m, DIRECTIONS[d]) for m, d in predict.items() if m != primary)
    return Claim(key, factor, paper, alt, primary, expect, str(spec["quote"]), str(spec["section"]), margin)
