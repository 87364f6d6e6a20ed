"""Step-by-step agreement with transitions recorded from the authors' environment."""

import numpy as np

from helpers import CONFORMANCE_KEYS, make_rc

INVADER = 7


def _check_respawn_rules(after_lm_pos, respawned):
    resources = after_lm_pos[1:7]
    for j in respawned:
        p = after_lm_pos[j]
        assert 0.4 <= np.hypot(*p) <= 0.95, f"resource {j} respawned at radius {np.hypot(*p)}"
        others = [k for k in range(1, 7) if k != j]
        gaps = np.linalg.norm(resources[np.array(others) - 1] - p, axis=1)
        assert gaps.min() >= 0.1, f"resource {j} respawned {gaps.min():.4f} from another"


def test_every_record_matches(golden):
    env = make_rc()
    n_records = len(golden["t"])
    for r in range(n_records):
        before = {key: golden["before_" + key][r] for key in CONFORMANCE_KEYS}
        action = golden["action"][r][None].astype(np.int64)
        where = f"record {r} (episode {golden['episode'][r]}, t {golden['t'][r]})"
        if golden["t"][r] == 144:  # the horizon: the episode's last observation moves to info["final"]
            env.set_state(0, before | {"episode_step": 144})
            obs, _, _, truncated, info = env.step(action)
            assert truncated[0] == 1, where
            np.testing.assert_allclose(info["final"]["entities"][0][:6], golden["obs"][r], rtol=0, atol=1e-5, err_msg=where)
            np.testing.assert_array_equal(info["final"]["full_mask"][0], golden["observability"][r][:, 14:], err_msg=where)
            assert obs["agent_present"][0].sum() in (2, 3, 4, 5, 6) and info["episode_step"][0] == 0
        # Everything else at episode step 0, so the step never ends the episode.
        env.set_state(0, before | {"episode_step": 0})
        obs, reward, truncated, _, info = env.step(action)
        assert truncated[0] == 0
        state = env.get_state(0)

        # Random draws the reference made from its own RNG: check only their rules.
        before_pos, after_pos = golden["before_lm_pos"][r], golden["after_lm_pos"][r]
        respawned = [j for j in range(1, 7) if not np.array_equal(before_pos[j], after_pos[j])]
        _check_respawn_rules(state["lm_pos"], [j for j in range(1, 7) if not np.array_equal(state["lm_pos"][j], before_pos[j])])
        invader_revived = golden["before_lm_alive"][r][INVADER] == 0 and golden["after_lm_alive"][r][INVADER] == 1
        invader_died = golden["before_lm_alive"][r][INVADER] == 1 and golden["after_lm_alive"][r][INVADER] == 0
        comparable_lm = [l for l in range(8) if l not in respawned and not (l == INVADER and invader_revived)]

        np.testing.assert_allclose(state["agent_pos"], golden["after_agent_pos"][r], rtol=0, atol=1e-9, err_msg=where)
        np.testing.assert_allclose(state["agent_vel"], golden["after_agent_vel"][r], rtol=0, atol=1e-9, err_msg=where)
        for key in ("agent_alive", "agent_hold", "agent_at", "lm_alive"):
            np.testing.assert_array_equal(state[key], golden["after_" + key][r], err_msg=f"{key} at {where}")
        np.testing.assert_allclose(state["lm_pos"][comparable_lm], after_pos[comparable_lm], rtol=0, atol=1e-9, err_msg=where)
        if invader_revived:
            assert np.abs(state["lm_pos"][INVADER]).max() == 0.99, where
        if invader_died:  # drawn in [1, 10], then counted down once in the same post-step
            assert 0 <= state["invader_timer"] <= 9, where
        else:
            assert state["invader_timer"] == golden["after_invader_timer"][r], where

        np.testing.assert_allclose(info["agent_rewards"][0], golden["reward"][r], rtol=0, atol=1e-6, err_msg=where)
        assert reward[0] == np.float32(golden["reward"][r].sum()) or abs(reward[0] - golden["reward"][r].sum()) < 1e-5

        rows = obs["entities"][0]
        np.testing.assert_allclose(rows[:6], golden["obs"][r], rtol=0, atol=1e-5, err_msg=f"agent rows at {where}")
        np.testing.assert_allclose(rows[6:, :7][comparable_lm], golden["entities"][r][comparable_lm], rtol=0, atol=1e-5,
                                   err_msg=f"landmark rows at {where}")
        assert not rows[6:, 7:].any()

        partial, full = golden["observability"][r][:, :14], golden["observability"][r][:, 14:]
        np.testing.assert_array_equal(obs["full_mask"][0], full, err_msg=f"full mask at {where}")
        cols = list(range(6)) + [6 + l for l in comparable_lm]
        np.testing.assert_array_equal(obs["obs_mask"][0][:, cols], partial[:, cols], err_msg=f"partial mask at {where}")
