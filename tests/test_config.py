"""Configuration: the paper preset against Table 3 and the reference code, and make_config's
layering of preset, environment changes and overrides, typed --set overrides."""

import pytest

import cpfast
from cpfast.config import METHODS, parse_overrides, preset
from cpfast.experiment import make_config

SPEC = cpfast.make_env("resource_collection").spec


def test_paper_preset_matches_table3_and_reference_defaults():
    cfg = preset("paper")
    assert cfg.buffer_size == 100_000
    assert cfg.n_heads == 4
    assert cfg.n_envs == 8
    assert cfg.hidden_dim == 128 and cfg.mixer_hidden_dim == 128 and cfg.mixer_embed_dim == 128
    assert cfg.gamma == 0.99
    assert cfg.lr == 3e-4
    assert cfg.optim_alpha == 0.99 and cfg.optim_eps == 1e-5
    assert cfg.grad_norm_clip == 10
    assert cfg.update_target_every == 200
    assert cfg.vi_lambda == 1e-3 and cfg.entropy_lambda == pytest.approx(1e-4)
    assert cfg.period == 4
    assert cfg.total_steps == 5_000_000
    assert cfg.update_every == 100
    assert cfg.imaginary_lambda == 0.5
    assert cfg.eps_start == 1.0 and cfg.eps_end == 0.05
    assert cfg.segment_tail == "drop" and cfg.player_memory == "reference"
    assert cfg.eval_episodes == 500 and cfg.eval_seed == 9999
    assert cfg.total_steps // SPEC.episode_limit // cfg.n_envs == 4310
    for method in METHODS:
        for period in (2, 4, 8):
            c = cfg.replace(method=method, period=period)
            expected = int(256 * 8 / period) if method in ("copa", "copa_novi") else 256
            assert c.effective_batch_size == expected, (method, period)
    assert cfg.replace(method="copa").effective_batch_size == 512
    assert preset("paper") is not preset("paper")  # presets are copies


def test_make_config_layers_preset_env_changes_and_overrides_as_the_cli_does():
    assert make_config() == preset("paper")
    rescue = make_config("rescue", method="aqmix")
    assert rescue.env == "rescue" and rescue.method == "aqmix"
    assert rescue.segment_tail == "pad" and rescue.truncation_is_terminal is False  # Rescue's registered changes
    assert make_config("rescue", segment_tail="drop").segment_tail == "drop"  # overrides come last
    assert make_config("rescue", "quick").hidden_dim == preset("quick").hidden_dim
    sc2 = make_config("sc2_3-8MMM")  # the env's own preset, then the env itself
    assert sc2.env == "sc2_3-8MMM" and sc2.total_steps == preset("starcraft").total_steps
    with pytest.raises(ValueError, match="unknown environment 'rescue_game'"):
        make_config("rescue_game")
    with pytest.raises(ValueError, match="unknown preset 'turbo'"):
        make_config("rescue", "turbo")
    with pytest.raises(ValueError, match="unknown config fields: hidden"):
        make_config("rescue", hidden=3)


def test_set_overrides_any_field_with_types_checked():
    overrides = parse_overrides(["lr=1e-4", "batch_size=128", "total_steps=1.2e6", "truncation_is_terminal=yes"])
    assert overrides == {"lr": 1e-4, "batch_size": 128, "total_steps": 1_200_000, "truncation_is_terminal": True}
    cfg = make_config("resource_collection", "quick", **overrides)
    assert (cfg.lr, cfg.batch_size, cfg.total_steps) == (1e-4, 128, 1_200_000)
    for bad, message in (("learning_rate=1", "unknown config field"), ("lr=fast", "lr takes a number"),
                         ("n_envs=2.5", "takes an int"), ("lr=inf", "finite"), ("segment_tail", "FIELD=VALUE"),
                         ("truncation_is_terminal=2", "true or false")):
        with pytest.raises(ValueError, match=message):
            parse_overrides([bad])
