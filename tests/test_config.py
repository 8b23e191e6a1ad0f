"""Typed configs: ``--set key=value`` parsing, errors that name the valid choices, experiment profiles."""

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Literal

import pytest

from iwlab.config import ConfigError, apply_overrides, config_from_dict, config_to_dict, parse_value
from iwlab.experiments import make_config


@dataclass
class Cfg:
    epochs: int = 10
    lr: float = 0.1
    compile: bool = False
    name: str = "run"
    normalization: Literal["batch_size", "weight_sum"] = "batch_size"
    weights: tuple[float, ...] = (1.0, 0.5)
    pair: tuple[int, str] = (1, "a")
    maybe: int | None = None
    calls: list = field(default_factory=list, compare=False, repr=False)

    def validate(self) -> None:
        self.calls.append("validated")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")


def test_scalar_types():
    c = apply_overrides(Cfg(), ["epochs=3", "lr=0.5", "compile=true", "name=abc", "normalization=weight_sum"])
    assert (c.epochs, c.lr, c.compile, c.name, c.normalization) == (3, 0.5, True, "abc", "weight_sum")
    assert type(c.epochs) is int and type(c.lr) is float and c.compile is True
    for text, want in [("1", True), ("yes", True), ("On", True), ("0", False), ("false", False), ("no", False)]:
        assert apply_overrides(Cfg(), [f"compile={text}"]).compile is want
    # float fields accept ints and fractions
    assert apply_overrides(Cfg(), ["lr=2"]).lr == 2.0
    assert apply_overrides(Cfg(), ["lr=1/256"]).lr == 1 / 256
    assert apply_overrides(Cfg(), ["lr=1e-3"]).lr == 1e-3
    # the value may contain '='
    assert apply_overrides(Cfg(), ["name=a=b"]).name == "a=b"


def test_tuples_and_optional():
    c = apply_overrides(Cfg(), ["weights=1,1/2,1/256", "pair=7,x"])
    assert c.weights == (1.0, 0.5, 1 / 256)
    assert c.pair == (7, "x")
    assert apply_overrides(Cfg(), ["weights=0.25"]).weights == (0.25,)
    assert apply_overrides(Cfg(), ["maybe=5"]).maybe == 5
    assert apply_overrides(Cfg(), ["maybe=none"]).maybe is None
    assert parse_value("1,1/2,0.25", tuple[float, ...]) == (1.0, 0.5, 0.25)
    with pytest.raises(ConfigError, match="expected 2 comma-separated values"):
        apply_overrides(Cfg(), ["pair=1,2,3"])
    with pytest.raises(ConfigError, match="maybe: expected an int"):
        apply_overrides(Cfg(), ["maybe=x"])


def test_mapping_overrides_and_original_untouched():
    base = Cfg()
    c = apply_overrides(base, {"epochs": 4, "lr": 1, "weights": [1, 0.5, 0.25]})
    assert c.epochs == 4 and c.lr == 1.0 and type(c.lr) is float and c.weights == (1.0, 0.5, 0.25)
    assert base.epochs == 10 and base.weights == (1.0, 0.5)
    with pytest.raises(ConfigError, match="epochs: expected int"):
        apply_overrides(Cfg(), {"epochs": 1.5})
    with pytest.raises(ConfigError, match="epochs: expected int"):
        apply_overrides(Cfg(), {"epochs": True})


# mapping values (profiles, config.json) are type-checked too, not only --set strings
@pytest.mark.parametrize("key,value", [("lr", True), ("normalization", 5), ("weights", 0.5)])
def test_mapping_values_of_wrong_type_are_rejected(key, value):
    with pytest.raises(ConfigError, match=key):
        apply_overrides(Cfg(), {key: value})


def test_unknown_key_suggests_closest():
    with pytest.raises(ConfigError) as e:
        apply_overrides(Cfg(), ["epoch=3"])
    msg = str(e.value)
    assert "unknown config key 'epoch'" in msg
    assert "Did you mean 'epochs'?" in msg
    assert "Valid keys:" in msg and "normalization" in msg and "weights" in msg
    with pytest.raises(ConfigError, match="Did you mean 'weights'"):
        apply_overrides(Cfg(), ["wieghts=1"])
    # nothing close: no suggestion, but the valid keys are listed
    with pytest.raises(ConfigError) as e:
        apply_overrides(Cfg(), ["zzzzzzzz=1"])
    assert "Did you mean" not in str(e.value) and "Valid keys: " in str(e.value)
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(Cfg(), ["epochs"])


@pytest.mark.parametrize(
    "item,pattern",
    [
        ("epochs=x", r"epochs: expected an int, got 'x'"),
        ("epochs=1.5", r"epochs: expected an int"),
        ("lr=abc", r"lr: expected a float, got 'abc'"),
        ("lr=1/0", r"lr: expected a float"),
        ("compile=maybe", r"compile: expected a bool"),
        ("normalization=mean", r"normalization: expected one of batch_size, weight_sum; got 'mean'"),
        ("weights=1,x", r"weights: expected a float, got 'x'"),
    ],
)
def test_wrong_type_messages(item, pattern):
    with pytest.raises(ConfigError, match=pattern):
        apply_overrides(Cfg(), [item])


def test_config_error_is_value_error():
    assert issubclass(ConfigError, ValueError)


def test_validate_hook_is_called():
    c = apply_overrides(Cfg(), ["epochs=2"])
    assert c.calls == ["validated"]
    with pytest.raises(ValueError, match="epochs must be >= 1, got 0"):
        apply_overrides(Cfg(), ["epochs=0"])


def test_dict_round_trip():
    c = apply_overrides(Cfg(), ["weights=1,1/4", "normalization=weight_sum"])
    d = config_to_dict(c)
    assert d["weights"] == [1.0, 0.25] and d["normalization"] == "weight_sum"
    back = config_from_dict(Cfg, d)
    assert back.weights == (1.0, 0.25) and back.normalization == "weight_sum" and back.epochs == 10


# -- experiment configs ------------------------------------------------------------------------


def test_synthetic_profiles():
    quick = make_config("synthetic", "quick")
    paper = make_config("synthetic", "paper")
    assert paper.epochs == 10_000 and paper.batch_size == 8 and paper.lr_scale == 1.0 and paper.grid_size == 200
    assert quick.weights[0] == 1.0 and quick.weights[-1] == 1 / 256 and len(quick.weights) == 9
    c = make_config("synthetic", "quick", ["epochs=5", "weights=1,1/256", "datasets=separable,moons"])
    assert c.epochs == 5 and c.weights == (1.0, 1 / 256) and c.datasets == ("separable", "moons")
    # overrides go on top of the profile
    assert make_config("synthetic", "paper", ["epochs=7"]).grid_size == 200


def test_synthetic_bad_profile():
    with pytest.raises(ConfigError) as e:
        make_config("synthetic", "fast")
    assert "unknown profile 'fast'" in str(e.value)
    assert "quick" in str(e.value) and "paper" in str(e.value)


def test_synthetic_bad_key_and_values():
    with pytest.raises(ConfigError, match="Did you mean 'epochs'"):
        make_config("synthetic", "quick", ["epoch=3"])
    with pytest.raises(ConfigError, match="Did you mean 'n_per_class'"):
        make_config("synthetic", "quick", ["n_per_clas=3"])
    with pytest.raises(ValueError) as e:
        make_config("synthetic", "quick", ["datasets=foo"])
    msg = str(e.value)
    assert "foo" in msg and all(d in msg for d in ("separable", "moons", "gaussians"))
    with pytest.raises(ValueError) as e:
        make_config("synthetic", "quick", ["models=resnet"])
    assert all(m in str(e.value) for m in ("logreg", "mlp", "mlp_dropout"))
    with pytest.raises(ValueError, match=r"weights: must be in \[1e-30, 1e\+30\], got 0"):
        make_config("synthetic", "quick", ["weights=1,0"])
    with pytest.raises(ValueError, match="down_class"):
        make_config("synthetic", "quick", ["down_class=2"])
    with pytest.raises(ConfigError, match="epochs: expected an int"):
        make_config("synthetic", "quick", ["epochs=x"])
    with pytest.raises(ConfigError, match="normalization: expected one of"):
        make_config("synthetic", "quick", ["normalization=sum"])


def test_unknown_experiment():
    with pytest.raises(ValueError) as e:
        make_config("synthetc")
    assert (
        "Did you mean 'synthetic'" in str(e.value)
        and "Available:" in str(e.value)
        and "synthetic" in str(e.value).split("Available:")[1]
    )


# -- values no run could use are rejected before anything runs (issue 10, items 8 and 15) ---------------


def _experiment_configs():
    from iwlab.experiments import EXPERIMENTS, get_experiment

    for name in sorted(EXPERIMENTS):
        exp = get_experiment(name)
        for profile in exp.profiles:
            yield name, profile, make_config(name, profile)


def _numeric_keys(cfg):
    """Keys whose value is a number or a tuple of numbers (bools excluded)."""
    hints = typing.get_type_hints(type(cfg))
    out = []
    for f in dataclasses.fields(cfg):
        typ = hints[f.name]
        args = [typ, *typing.get_args(typ)]
        if any(a in (int, float) for a in args) and typ is not bool:
            out.append(f.name)
    return out


def test_every_numeric_key_of_every_experiment_has_a_bound():
    """The check list: a new numeric config key without a declared range fails here."""
    from iwlab.config import _bounds

    missing = []
    for name, _, cfg in _experiment_configs():
        bounds = _bounds(cfg)
        missing += [f"{name}.{k}" for k in _numeric_keys(cfg) if k not in bounds]
    assert not missing, f"numeric config keys without a Bound in BOUNDS: {sorted(set(missing))}"


def _just_outside(bound, integer):
    out = []
    if bound.lo is not None:
        out.append(bound.lo if bound.lo_open else (bound.lo - 1 if integer else bound.lo - abs(bound.lo) * 0.5 - 1e-3))
    if bound.hi is not None:
        out.append(bound.hi if bound.hi_open else (bound.hi + 1 if integer else bound.hi * 2))
    return out


def _cases():
    from iwlab.config import _bounds

    seen = set()
    for name, _, cfg in _experiment_configs():
        hints = typing.get_type_hints(type(cfg))
        for key, bound in _bounds(cfg).items():
            if (name, key) in seen:
                continue
            seen.add((name, key))
            typ = hints[key]
            elem = typing.get_args(typ)[0] if typing.get_origin(typ) is tuple else typ
            integer = elem is int
            for v in _just_outside(bound, integer):
                yield name, key, int(v) if integer else v
            if not integer:
                yield name, key, float("nan")
                yield name, key, float("inf")


@pytest.mark.parametrize("name,key,value", list(_cases()))
def test_out_of_range_values_are_rejected_naming_the_key(name, key, value):
    with pytest.raises(ConfigError) as e:
        make_config(name, "quick", [f"{key}={value}"])
    msg = str(e.value)
    assert msg.startswith(f"{key}: ") and "\n" not in msg, msg


@pytest.mark.parametrize(
    "name,setting,pattern",
    [
        ("synthetic", "lr=-1", r"^lr: must be > 0 \(or 'auto'\), got -1\.$"),
        ("synthetic", "lr=0", r"^lr: must be > 0"),
        ("synthetic", "dropout=1", r"^dropout: must be in \[0, 1\), got 1\.$"),
        ("synthetic", "lr_scale=nan", r"^lr_scale: must be a finite number, got nan\.$"),
        ("synthetic", "grid_size=100000", r"^grid_size: must be in \[2, 1,000\], got 100,000\.$"),
        ("synthetic", "hidden=0", r"^hidden: must be in \[1, 65,536\]"),
        ("synthetic", "weights=", r"^weights: needs at least one value"),
        ("synthetic", "datasets=", r"^datasets: needs at least one value"),
        ("cifar_binary", "lr=-0.1", r"^lr: must be > 0"),
        ("cifar_binary", "dropout=1.5", r"^dropout: must be in \[0, 1\)"),
        ("cifar_binary", "n_noise=1000000000", r"^n_noise: must be in \[0, 100,000\]"),
        ("cifar_multiclass", "rhos=0.1,1", r"^rhos: must be in \(0, 1\)"),
        ("is_mnist", "presample=inf", r"^presample: must be a finite number"),
        ("is_mnist", "batch_size=0", r"^batch_size: must be in \[1, 65,536\]"),
        ("is_ptb", "augment=true", r"^unknown config key 'augment'"),  # ptb has no images to augment
        ("is_mnist", "methods=oracle", r"method 'oracle' needs its k"),
        ("is_mnist", "smooth_strategies=uniform", r"^smooth_strategies: .*'uniform'"),
        ("mrpc", "momentum=1", r"^momentum: must be in \[0, 1\)"),
        ("mrpc", "max_length=1000000", r"^max_length: must be in \[8, 8,192\]"),
    ],
)
def test_invalid_values_one_line_error(name, setting, pattern):
    with pytest.raises(ConfigError, match=pattern):
        make_config(name, "quick", [setting])


def test_empty_lists_allowed_only_where_declared():
    c = make_config("is_mnist", "quick", ["smooth_strategies=", "table_epochs="])
    assert c.smooth_strategies == () and c.table_epochs == ()
    with pytest.raises(ConfigError, match="^methods: needs at least one value"):
        make_config("is_mnist", "quick", ["methods="])


def test_lr_auto_is_a_word_not_zero():
    """Issue 10 item 18: ``lr: 0.0`` meant "automatic"; now it is ``"auto"``, and 0 is an error."""
    c = make_config("synthetic", "quick")
    assert c.lr == "auto" and config_to_dict(c)["lr"] == "auto"
    assert make_config("synthetic", "quick", ["lr=0.25"]).lr == 0.25
    assert config_from_dict(type(c), config_to_dict(c)).lr == "auto"
    with pytest.raises(ConfigError, match="lr: must be > 0"):
        make_config("synthetic", "quick", ["lr=0"])


def test_a_float_too_small_to_represent_is_an_error_not_zero():
    with pytest.raises(ConfigError, match=r"^weights: 1e-400 is too small for a float \(it underflows to 0\)"):
        make_config("synthetic", "quick", ["weights=1,1e-400"])


@pytest.mark.parametrize(
    "setting", ["weights=1,1,1", "datasets=separable,separable", "weight_decay=0,0", "models=mlp,mlp"]
)
def test_repeated_values_are_refused_not_counted_as_replicates(setting):
    key = setting.split("=")[0]
    with pytest.raises(ConfigError, match=f"^{key} repeat"):
        make_config("synthetic", "quick", [setting])
