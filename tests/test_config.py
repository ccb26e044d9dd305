"""The typed config: the paper's defaults, presets, typed overrides, and bad input at the edge."""
import pytest

from orchestrator.config import parse_overrides, preset_names, resolve_config
from trainables.config import Config
from trainables.errors import UserError


def test_defaults_are_the_papers():
    cfg = Config()
    assert (cfg.lr, cfg.beta1, cfg.beta2, cfg.batch_size, cfg.nz) == (2e-4, 0.5, 0.999, 128, 100)
    assert (cfg.bn_placement, cfg.z_dist, cfg.ngf, cfg.ndf) == ("paper", "normal", 64, 64)
    assert cfg.lr_g_value == cfg.lr_d_value == 2e-4


def test_overrides_are_typed():
    cfg = resolve_config("smoke", parse_overrides(["lr=1e-3", "beta1=0.9", "bn_placement=all", "lr_g=3e-4"]))
    assert cfg.lr == 1e-3 and isinstance(cfg.lr, float)
    assert (cfg.beta1, cfg.bn_placement, cfg.lr_g_value, cfg.lr_d_value) == (0.9, "all", 3e-4, 1e-3)
    assert resolve_config("smoke", {"lr": 1}).lr == 1.0  # an int where a float goes is fine


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_resolves(name):
    cfg = resolve_config(name, {"download": True})  # real-data presets: skip the data_root check
    assert isinstance(cfg, Config)


@pytest.mark.parametrize("overrides, culprit", [
    ({"lr": 0}, "lr=0"),
    ({"lr": -1e-3}, "lr=-0.001"),
    ({"beta1": 1.0}, "beta1=1.0"),
    ({"beta1": -0.1}, "beta1=-0.1"),
    ({"image_size": 48}, "image_size=48"),
    ({"nc": 2}, "nc=2"),
    ({"bn_placement": "everywhere"}, "bn_placement='everywhere'"),
    ({"epochs": "five"}, "epochs='five'"),
    ({"use_gpu": "yes"}, "use_gpu='yes'"),
    ({"colour": 1}, "colour=1"),
    ({"batch_size": 127, "num_workers": 2}, "batch_size=127"),
    ({"dataset": "imagenet"}, "dataset='imagenet'"),
])
def test_bad_values_name_key_and_value(overrides, culprit):
    with pytest.raises(UserError) as err:
        resolve_config("smoke", overrides)
    assert culprit in str(err.value)


def test_asha_rungs_are_training_steps():
    """The search preset's ASHA counts the reports' ``step``: its first rung after four evaluations,
    its last at the run's length, whatever the checkpoint schedule adds to the reports."""
    from orchestrator.sweep.run import make_scheduler

    base = resolve_config("search")
    asha = make_scheduler("asha", base)
    assert asha._time_attr == "step" and asha._max_t == base.max_steps
    assert min(milestone for milestone, _ in asha._brackets[0]._rungs) == 4 * base.eval_every
    assert make_scheduler("none", base) is None
