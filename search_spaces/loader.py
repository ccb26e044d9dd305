"""Search spaces: YAML files beside this module, checked against the config, turned into Tune or Optuna domains.

A space file names config keys and how each is searched::

    description: "one line"
    params:
      lr: {dist: loguniform, low: 1.0e-5, high: 1.0e-2}
      beta1: {dist: uniform, low: 0.0, high: 0.95}
      bn_placement: {dist: choice, values: [paper, all, none]}

Every key must be a config key and every bound or value must be a valid value of that key, so a
bad space fails before Ray starts, with one line naming the file, the key and the problem.

A grid is the full factorial unless ``design: one_at_a_time``: then it is the paper's setting
of every key plus, for each key, each other value with the rest at the paper's (1 + sum of
(values - 1) configs), the smallest design in which every factor has a matched pair.
"""
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from trainables.config import FIELDS, Config, coerce
from trainables.errors import UserError, bad_value

SPACE_DIR = Path(__file__).parent

# Each distribution and the fields its entry takes; `int` bounds are inclusive at both ends.
DISTRIBUTIONS = {
    "loguniform": ("low", "high"),   # floats, uniform in log space (TPE, random search)
    "uniform": ("low", "high"),      # floats
    "int": ("low", "high"),          # integers
    "choice": ("values",),           # sampled by a searcher
    "grid": ("values",),             # every value is run (the factorial)
}
FINITE = ("choice", "grid")
DESIGNS = ("factorial", "one_at_a_time")


@dataclass(frozen=True)
class Param:
    dist: str                       # a DISTRIBUTIONS name
    low: Optional[float] = None     # range dists: bounds, in the key's type
    high: Optional[float] = None
    values: tuple = ()              # choice and grid: the values, in the key's type


@dataclass(frozen=True)
class SearchSpace:
    name: str
    path: Path
    description: str
    params: dict       # config key -> Param, in file order
    design: str = "factorial"   # how a grid combines the params' values (DESIGNS)


def space_names():
    return sorted(p.stem for p in SPACE_DIR.glob("*.yaml"))


def load_space(name_or_path):
    """A registered name (``search_spaces/NAME.yaml``) or a path to a YAML file -> a checked SearchSpace."""
    path = _find(str(name_or_path))
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise UserError(f"search space {path}: not valid YAML: {_yaml_problem(err)}") from None
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        raise UserError(f"search space {path}: must be a mapping with 'params' (got {got})")
    for top in data:
        if top not in ("description", "params", "design"):
            raise UserError(f"search space {path}: unknown top-level key {top!r}: "
                            "allowed: description, params, design")
    design = data.get("design", "factorial")
    if design not in DESIGNS:
        raise UserError(f"search space {path}: design={design!r}: allowed: {', '.join(DESIGNS)}")
    if not isinstance(data.get("params"), dict) or not data["params"]:
        raise UserError(f"search space {path}: params: must be a non-empty mapping of config keys "
                        f"(got {data.get('params')!r})")
    params = {}
    for key, spec in data["params"].items():
        try:
            params[key] = _check_param(key, spec)
        except UserError as err:
            raise UserError(f"search space {path}: params.{key}: {err}") from None
    space = SearchSpace(path.stem, path, str(data.get("description") or ""), params, design)
    if design == "one_at_a_time":
        paper_defaults(space)  # the baseline must be in every key's values
    return space


def _find(name_or_path):
    return find_yaml(name_or_path, SPACE_DIR, space_names(), "search space")


def find_yaml(name_or_path, folder, names, key):
    """A shipped file by name (``folder/<name>.yaml``) or a path to a .yaml file; else one line naming ``key``."""
    if name_or_path in names:
        return folder / f"{name_or_path}.yaml"
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    raise bad_value(key, name_or_path, f"one of {', '.join(names)}, or a path to a .yaml file")


def _yaml_problem(err):
    mark = getattr(err, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    return where + " ".join(str(getattr(err, "problem", None) or err).split())


def _check_param(key, spec):
    """One entry -> Param; each bound and value is checked by the config's own ``coerce``."""
    if key not in FIELDS:
        raise UserError(f"unknown config key; known keys: {', '.join(FIELDS)}")
    if not isinstance(spec, dict) or "dist" not in spec:
        raise UserError(f"must be a mapping with 'dist' (one of {', '.join(DISTRIBUTIONS)}), got {spec!r}")
    dist = spec["dist"]
    if not isinstance(dist, str) or dist not in DISTRIBUTIONS:
        raise bad_value("dist", dist, f"one of {', '.join(DISTRIBUTIONS)}")
    wanted = DISTRIBUTIONS[dist]
    for name in spec:
        if name != "dist" and name not in wanted:
            raise UserError(f"{name!r} does not go with dist={dist}: it takes {', '.join(wanted)}")
    for name in wanted:
        if name not in spec:
            raise UserError(f"dist={dist} needs {', '.join(wanted)}; {name!r} is missing")
    if dist in FINITE:
        return _check_values(key, dist, spec["values"])
    return _check_range(key, dist, coerce(key, spec["low"]), coerce(key, spec["high"]))


def _check_values(key, dist, values):
    if not isinstance(values, list) or not values:
        raise bad_value("values", values, "a non-empty list")
    values = tuple(coerce(key, v) for v in values)
    if len(set(values)) != len(values):
        raise bad_value("values", list(values), "no repeats")
    return Param(dist, values=values)


def _check_range(key, dist, low, high):
    if low is None or high is None:
        raise UserError(f"dist={dist} needs numbers for low and high, got low={low!r}, high={high!r}")
    want = int if dist == "int" else float
    if type(low) is not want:  # bool and str keys land here too
        raise UserError(f"dist={dist} draws {want.__name__}s but {key} takes {type(low).__name__} values")
    if "choices" in FIELDS[key].metadata:
        raise UserError(f"dist={dist} would draw values outside {key}'s choices; use choice or grid")
    if not low < high:
        raise UserError(f"low={low!r} must be < high={high!r}")
    if dist == "loguniform" and low <= 0:
        raise UserError(f"low={low!r} must be > 0 for dist=loguniform")
    return Param(dist, low=low, high=high)


def to_tune(space):
    """The space as a Ray Tune ``param_space`` (grid params become ``tune.grid_search``)."""
    from ray import tune

    make = {
        "loguniform": lambda p: tune.loguniform(p.low, p.high),
        "uniform": lambda p: tune.uniform(p.low, p.high),
        "int": lambda p: tune.randint(p.low, p.high + 1),  # Tune's upper bound is exclusive
        "choice": lambda p: tune.choice(list(p.values)),
        "grid": lambda p: tune.grid_search(list(p.values)),
    }
    return {key: make[p.dist](p) for key, p in space.params.items()}


def to_optuna(space):
    """The space as Optuna distributions, for ``OptunaSearch(space=...)`` or a define-by-run function."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    grids = [key for key, p in space.params.items() if p.dist == "grid"]
    if grids:
        raise UserError(f"search space {space.path}: params {', '.join(grids)} are dist=grid, which a "
                        "searcher cannot sample; use dist=choice for Optuna")
    make = {
        "loguniform": lambda p: FloatDistribution(p.low, p.high, log=True),
        "uniform": lambda p: FloatDistribution(p.low, p.high),
        "int": lambda p: IntDistribution(p.low, p.high),
        "choice": lambda p: CategoricalDistribution(list(p.values)),
    }
    return {key: make[p.dist](p) for key, p in space.params.items()}


def grid_points(space, seeds, first_seed=0):
    """Every combination of the space's values, for each seed first_seed .. first_seed+seeds-1 (seed
    outermost, so that a partial sweep has whole factorials; a later first_seed runs a study's next
    block of seeds); each point is a dict of config overrides with ``seed``."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise bad_value("seeds", seeds, "an integer >= 1")
    if isinstance(first_seed, bool) or not isinstance(first_seed, int) or first_seed < 0:
        raise bad_value("first_seed", first_seed, "an integer >= 0")
    ranges = [f"{key} (dist={p.dist})" for key, p in space.params.items() if p.dist not in FINITE]
    if ranges:
        raise UserError(f"search space {space.path}: {', '.join(ranges)} cannot be enumerated; "
                        "a grid needs dist=grid or dist=choice params only")
    if "seed" in space.params:
        raise UserError(f"search space {space.path}: params.seed is set by the sweep's seed count, "
                        "not by the space")
    keys = list(space.params)
    if space.design == "one_at_a_time":
        base = paper_defaults(space)
        combos = [tuple(base.values())] + [tuple(v if k == key else base[k] for k in keys)
                                            for key in keys for v in space.params[key].values if v != base[key]]
    else:
        combos = list(itertools.product(*(space.params[k].values for k in keys)))
    return [{**dict(zip(keys, combo)), "seed": seed} for seed in range(first_seed, first_seed + seeds)
            for combo in combos]


def paper_defaults(space):
    """The config's defaults (the paper's values) for the searched keys: the first point a searcher tries."""
    defaults = Config()
    point = {key: getattr(defaults, key) for key in space.params}
    for key, value in point.items():
        if not _contains(space.params[key], value):
            raise UserError(f"search space {space.path}: params.{key} does not contain the paper's "
                            f"default {key}={value!r}, so the sweep could not start from it")
    return point


def _contains(p, value):
    if p.dist in FINITE:
        return value in p.values
    return value is not None and p.low <= value <= p.high
