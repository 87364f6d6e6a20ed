"""The learner (docs/method.md §6-§8, §11, §16, §17): loss invariances, the VI/entropy averages,
copa_novi vs copa, fully masked rows, target syncs and AI-QMIX's imagined groups."""

import dataclasses
import functools
import math

import numpy as np
import pytest
import torch

import cpfast
from cpfast.config import preset
from cpfast.learner import Learner, imagined_groups, prepare_batch
from cpfast.nn import Coach
from cpfast.replay import slot_fields
from helpers import random_segments

SPEC = cpfast.make_env("resource_collection").spec
CPU = torch.device("cpu")
B, T = 8, 4
LOG_2PI = math.log(2 * math.pi)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_cfg(method="copa", **changes):
    return preset("quick").replace(method=method, hidden_dim=16, mixer_hidden_dim=16, mixer_embed_dim=16, n_heads=2,
                                   batch_size=B, period=T, **changes)


def make_learner(method="copa", spec=SPEC, seed=0, **changes):
    return Learner(spec, small_cfg(method, **changes), CPU, seed)


# ---------------------------------------------------------------------------- batches
@functools.lru_cache(maxsize=None)
def _rollout_segments(composition, seed):
    """Segments [n, T + 1, ...] of six windows of 2 envs' random play."""
    env = cpfast.make_env("resource_collection", num_envs=2, seed=seed, composition=composition, num_threads=1)
    out = random_segments(env, T, stop=lambda n: n >= 12, seed=seed)
    return {k: np.concatenate([s[k] for s in out]) for k in out[0]}


def rollout_batch(composition="dynamic", seed=0, n=B):
    segs = _rollout_segments(composition, seed)
    fields = slot_fields(SPEC)
    batch = {k: torch.as_tensor(segs[k][:n]).to(fields[k][1]).clone() for k in fields}
    # Rewards of a random policy are mostly 0: give the TD loss something to fit.
    batch["reward"] = batch["reward"] + torch.linspace(-1, 1, batch["reward"].numel()).view_as(batch["reward"])
    return batch


def remove_agent(batch, b, i):
    """Makes agent slot i absent in every slot of segment b (as the env would show it)."""
    batch["agent_present"][b, :, i] = 0
    batch["entity_present"][b, :, i] = 0
    batch["player_mask"][b, :, i, :] = 0
    batch["player_mask"][b, :, :, i] = 0
    batch["actions"][b, :, i] = 0


def fill_absent_with_junk(batch, gen):
    """Random content in every agent slot that is absent for a whole segment: entity row,
    attributes, actions, available actions and its own player-mask row (its column stays hidden,
    as for any absent entity). Slots of agents that join or leave inside a segment keep their
    content: there the learner reads the absent step (GRU state input h_{t-1}, prev action,
    posterior rows), which rollouts keep consistent (no-op actions, empty mask rows)."""
    out = {k: v.clone() for k, v in batch.items()}
    absent = (out["agent_present"] == 0).all(1, keepdim=True).expand_as(out["agent_present"])  # [B, S, A]
    a = SPEC.max_agents
    ents = out["entities"][:, :, :a]
    ents[absent] = torch.randn(ents[absent].shape, generator=gen) * 3
    out["attributes"][absent] = torch.rand(out["attributes"][absent].shape, generator=gen) * 4
    out["actions"][absent] = torch.randint(0, SPEC.n_actions, out["actions"][absent].shape, generator=gen).to(torch.uint8)
    out["avail_actions"][absent] = torch.randint(0, 2, out["avail_actions"][absent].shape, generator=gen).to(torch.uint8)
    out["player_mask"][absent] = torch.randint(0, 2, out["player_mask"][absent].shape, generator=gen).to(torch.uint8)
    return out


def insert_agent_slots(batch, spec, where, gen):
    """A wider layout with absent agent slots (junk content) at agent positions ``where``."""
    a_old = spec.max_agents
    a_new = a_old + len(where)
    old_pos = [i for i in range(a_new) if i not in where]
    new_spec = dataclasses.replace(spec, max_agents=a_new, max_entities=spec.max_entities + len(where))

    def spread(x, dim, fill):
        shape = list(x.shape)
        shape[dim] = a_new
        out = fill(shape, x.dtype)
        idx = [slice(None)] * x.dim()
        idx[dim] = old_pos
        out[tuple(idx)] = x.narrow(dim, 0, a_old)
        return out

    def junk(shape, dtype):
        return (torch.rand(shape, generator=gen) * 3).to(dtype) if dtype.is_floating_point else \
            torch.randint(0, 2, shape, generator=gen).to(dtype)

    zeros = lambda shape, dtype: torch.zeros(shape, dtype=dtype)  # noqa: E731
    junk_actions = lambda shape, dtype: torch.randint(0, spec.n_actions, shape, generator=gen).to(dtype)  # noqa: E731
    out = dict(batch)
    out["entities"] = torch.cat([spread(batch["entities"][:, :, :a_old], 2, junk), batch["entities"][:, :, a_old:]], 2)
    out["attributes"] = spread(batch["attributes"], 2, junk)
    out["agent_present"] = spread(batch["agent_present"], 2, zeros)
    out["entity_present"] = torch.cat([spread(batch["entity_present"][:, :, :a_old], 2, zeros),
                                       batch["entity_present"][:, :, a_old:]], 2)
    mask = spread(batch["player_mask"], 2, junk)  # junk rows for the new (absent) agents
    mask = torch.cat([spread(mask[..., :a_old], 3, zeros), mask[..., a_old:]], 3)  # their columns hidden
    out["player_mask"] = mask
    out["avail_actions"] = spread(batch["avail_actions"], 2, junk)
    out["actions"] = spread(batch["actions"], 2, junk_actions)
    return new_spec, out


def permute_agents(batch, perm):
    a = len(perm)
    perm = torch.as_tensor(perm)
    ent_perm = torch.cat([perm, torch.arange(a, batch["entities"].shape[2])])
    out = dict(batch)
    out["entities"] = batch["entities"][:, :, ent_perm]
    out["entity_present"] = batch["entity_present"][:, :, ent_perm]
    out["player_mask"] = batch["player_mask"][:, :, perm][..., ent_perm]
    for k in ("attributes", "agent_present", "avail_actions", "actions"):
        out[k] = batch[k][:, :, perm]
    return out


def seeded_losses(learner, batch, seed=123):
    learner.generator.manual_seed(seed)
    with torch.no_grad():
        return {k: v.detach() for k, v in learner.losses(batch).items()}


def assert_losses_close(a, b, keys, rtol=1e-5, atol=1e-6):
    for key in keys:
        torch.testing.assert_close(a[key], b[key], rtol=rtol, atol=atol, msg=f"{key}: {a[key]} vs {b[key]}")


def loss_keys(method):
    keys = ["td_loss", "loss"]
    if method == "copa":
        keys += ["vi_loss", "entropy"]
    if method == "aiqmix":
        keys += ["imagined_loss"]
    return keys


@pytest.fixture
def deterministic_strategies(monkeypatch):
    """z = mu + sigma * 0.7: keeps the sampling path (mean and log-variance) but makes the noise
    independent of the slot layout, so layouts with more or permuted slots are comparable."""
    monkeypatch.setattr(Coach, "sample", staticmethod(lambda mean, logvar, generator=None: mean + torch.exp(0.5 * logvar) * 0.7))


# ---------------------------------------------------------------------------- absent slots
@pytest.mark.parametrize("method", ["copa", "copa_novi", "aqmix", "aiqmix"])
def test_junk_in_absent_slots_changes_no_loss(method):
    batch = rollout_batch()
    remove_agent(batch, 0, 1)
    assert (batch["agent_present"] == 0).any() and (batch["agent_present"] == 1).any()
    learner = make_learner(method)
    base = seeded_losses(learner, batch)
    gen = torch.Generator().manual_seed(7)
    for _ in range(2):
        assert_losses_close(seeded_losses(learner, fill_absent_with_junk(batch, gen)), base, loss_keys(method))
    # The comparison is sensitive: the same junk in a present slot changes the loss.
    changed = {k: v.clone() for k, v in batch.items()}
    changed["entities"][:, :, :SPEC.max_agents, :SPEC.agent_feat_dim] += 1.0
    assert (seeded_losses(learner, changed)["td_loss"] - base["td_loss"]).abs() > 1e-4


@pytest.mark.parametrize("method", ["copa", "copa_novi", "aqmix"])
def test_adding_and_permuting_absent_slots_changes_no_loss(method, deterministic_strategies):
    batch = rollout_batch()
    remove_agent(batch, 2, 0)
    learner = make_learner(method)
    base = seeded_losses(learner, batch)
    gen = torch.Generator().manual_seed(8)
    wide_spec, wide_batch = insert_agent_slots(batch, SPEC, [0, 4, 7], gen)
    wide = make_learner(method, spec=wide_spec, seed=99)
    wide.load_state_dict(learner.state_dict())
    assert_losses_close(seeded_losses(wide, wide_batch), base, loss_keys(method))
    # Permuting all agent slots (present and absent) of the wide layout.
    perm = [5, 2, 8, 0, 7, 1, 3, 6, 4]
    assert_losses_close(seeded_losses(wide, permute_agents(wide_batch, perm)), base, loss_keys(method))
    # Sensitivity: a layout change that does matter (an absent slot made present) is detected.
    revived = {k: v.clone() for k, v in wide_batch.items()}
    revived["agent_present"][:, :, 0] = 1
    revived["entity_present"][:, :, 0] = 1
    assert (seeded_losses(wide, revived)["td_loss"] - base["td_loss"]).abs() > 1e-5


def test_vi_and_entropy_follow_the_spec_over_present_agents(deterministic_strategies):
    """L_VI and H recomputed from §6 with the learner's own coach and posterior run slot by slot."""
    batch = rollout_batch()
    remove_agent(batch, 0, 0)
    remove_agent(batch, 3, 2)
    batch["valid"][5, 3] = 0  # an invalid TD sample must drop out of the VI sum
    learner = make_learner("copa", vi_lambda=0.05)
    with torch.no_grad():  # a non-trivial log-variance so neither clamp is everywhere active
        learner.online.coach.logvar.bias.uniform_(-4.0, 0.0)
        learner.posterior.logvar[-1].bias.uniform_(-3.0, 0.0)
    out = seeded_losses(learner, batch)
    coach, post = learner.online.coach, learner.posterior
    f = {k: v.float() for k, v in batch.items()}
    with torch.no_grad():
        emb0 = coach.encode(f["entities"][:, 0], f["attributes"][:, 0], f["agent_present"][:, 0], f["entity_present"][:, 0])
        mu0, lv0 = coach.strategy(emb0)
        z0 = mu0 + torch.exp(0.5 * lv0) * 0.7
        log_lik = torch.zeros(B, SPEC.max_agents, dtype=torch.float64)
        for k in range(T):
            mask = (f["agent_present"][:, 0, :, None] * f["entity_present"][:, 0, None, :]) if k == 0 else f["player_mask"][:, k]
            mu, lv = post(f["entities"][:, k], f["attributes"][:, k], f["agent_present"][:, k], batch["actions"][:, k].long(), mask)
            dens = -0.5 * (LOG_2PI + lv.double() + (z0.double() - mu.double()) ** 2 / torch.exp(lv.double()))
            log_lik += f["valid"][:, k, None].double() * dens.clamp(-1000, 0).sum(-1)
    present0 = f["agent_present"][:, 0].double()
    dz = z0.shape[-1]
    vi = -(log_lik * present0).sum() / present0.sum()
    ent = ((0.5 * (1 + LOG_2PI) + 0.5 * lv0.double()).clamp(0, 10) * present0[..., None]).sum() / (present0.sum() * dz)
    torch.testing.assert_close(out["vi_loss"].double(), vi, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["entropy"].double(), ent, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["loss"], out["td_loss"] + 0.05 * out["vi_loss"] - 0.005 * out["entropy"])
    # Averaging over all slots (the reference's error, §18c) would give a different number here.
    assert abs(vi.item() - (-(log_lik.sum() / log_lik.numel()).item())) > 1e-3


def test_losses_are_present_weighted_means_over_segments(deterministic_strategies):
    """Splitting a batch: td is a valid-weighted mean, VI and entropy present-weighted means."""
    batch = rollout_batch()
    for i in range(3):
        remove_agent(batch, 0, i)  # segment 0 keeps few agents; the halves differ in |P|
        remove_agent(batch, 1, i)
    learner = make_learner("copa")
    full = seeded_losses(learner, batch)
    halves = [{k: v[s] for k, v in batch.items()} for s in (slice(0, 3), slice(3, B))]
    parts = [seeded_losses(learner, h) for h in halves]
    n_present = [h["agent_present"][:, 0].float().sum() for h in halves]
    n_valid = [h["valid"][:, :T].float().sum() for h in halves]
    assert n_present[0] / 3 != n_present[1] / (B - 3)
    weighted = lambda key, w: sum(p[key] * wi for p, wi in zip(parts, w)) / sum(w)  # noqa: E731
    torch.testing.assert_close(full["td_loss"], weighted("td_loss", n_valid), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(full["vi_loss"], weighted("vi_loss", n_present), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(full["entropy"], weighted("entropy", n_present), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------- copa_novi
def test_copa_novi_equals_copa_with_zero_lambda():
    batch = rollout_batch(seed=1)
    novi = make_learner("copa_novi", seed=3)
    copa = make_learner("copa", seed=3, vi_lambda=0.0)
    assert novi.posterior is None and copa.posterior is not None
    a, b = seeded_losses(novi, batch, 5), seeded_losses(copa, batch, 5)
    torch.testing.assert_close(a["td_loss"], b["td_loss"], rtol=0, atol=0)
    torch.testing.assert_close(b["loss"], b["td_loss"], rtol=0, atol=0)
    assert "vi_loss" not in a and "vi_loss" in b
    # One update each from the same generator state: identical networks afterwards.
    novi.generator.manual_seed(11)
    copa.generator.manual_seed(11)
    novi.update(batch)
    copa.update(batch)
    for (name, p), q in zip(novi.online.named_parameters(), copa.online.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7, msg=name)
    # And with lambda > 0 the losses do differ (the comparison can fail).
    vi = make_learner("copa", seed=3, vi_lambda=0.5)
    c = seeded_losses(vi, batch, 5)
    torch.testing.assert_close(c["td_loss"], a["td_loss"], rtol=0, atol=0)
    assert (c["loss"] - a["loss"]).abs() > 1e-6


# ---------------------------------------------------------------------------- masked rows
@pytest.mark.parametrize("method", ["copa", "aqmix", "aiqmix"])
def test_fully_masked_rows_zero_output_and_finite_update(method):
    batch = rollout_batch(seed=2)
    remove_agent(batch, 4, 3)
    present = batch["agent_present"] == 1
    # Present agents that see nothing at some steps (not even themselves).
    batch["player_mask"][1, 2, :] = 0
    batch["player_mask"][6, :, 0] = 0
    learner = make_learner(method)
    seen = []

    def hook(module, args, output):
        seen.append((args[1].detach().clone(), output.detach().clone()))

    handle = learner.online.player.encoder.attention.register_forward_hook(hook)
    out = learner.update(batch)
    handle.remove()
    assert seen
    n_empty = 0
    for mask, output in seen:
        empty = mask.sum(-1) == 0
        n_empty += int(empty.sum())
        assert torch.isfinite(output).all()
        assert (output[empty] == 0).all()
    assert n_empty > 0 and present.any()
    for key, value in out.items():
        assert torch.isfinite(value).all(), key
    assert out["grad_norm_a"] > 0
    params = list(learner.params_a) + list(learner.params_b)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in params)
    assert all(torch.isfinite(p).all() for p in params)


# ---------------------------------------------------------------------------- TD targets
@pytest.mark.parametrize("method", ["aqmix", "copa"])
def test_td_targets_bootstrap_from_target_networks(method, deterministic_strategies):
    """y_t = r_t + gamma (1 - d_t) Q^-_{t+1}: the done flag, the one-slot shift, maxima over
    available actions only, target-coach strategies z_0^- (t < T) and z_T^- (t = T), no
    double-Q, and the reward at slot T is never a target."""
    batch = rollout_batch(seed=1)
    batch["done"][2, 1] = 1
    batch["avail_actions"][::2, :, :, 1:3] = 0  # some actions unavailable (§18e.2)
    learner = make_learner(method, gamma=0.9)

    def targets(b, seed=0):
        learner.generator.manual_seed(seed)
        return learner.td_targets(prepare_batch(b))

    y = targets(batch)
    r = batch["reward"][:, :T]
    assert y.shape == (B, T)
    assert y[2, 1] == r[2, 1]  # terminal sample: no bootstrap
    all_done = dict(batch, done=torch.ones_like(batch["done"]))
    torch.testing.assert_close(targets(all_done), r, rtol=0, atol=0)
    last_reward = dict(batch, reward=batch["reward"].clone())
    last_reward["reward"][:, T] += 100.0
    torch.testing.assert_close(targets(last_reward), y, rtol=0, atol=0)
    # Q^- from the target player's maxima over available actions through the target mixer.
    s, net = prepare_batch(batch), learner.target
    with torch.no_grad():
        h = net.player.features(s["entities"], s["attributes"], s["present"], s["prev_actions"], s["player_mask"])
        strategy = None
        if method == "copa":
            emb = net.coach.encode(s["entities"], s["attributes"], s["present"], s["entity_present"])  # every slot
            mean, logvar = net.coach.strategy(emb)
            z = mean + torch.exp(0.5 * logvar) * 0.7  # the patched (layout-free) sampler
            # a player holds z_0 until it leaves; a slot that joins later holds none until slot T
            held = torch.cumprod(s["present"][:, :T], dim=1).unsqueeze(-1)
            strategy = torch.cat([z[:, :1] * held, z[:, T:]], dim=1)
        q = net.player.q_sequence(h, torch.zeros(B, SPEC.max_agents, 16), strategy, s["present"])
        q_max = torch.where(s["avail"].any(-1), q.masked_fill(~s["avail"], -torch.inf).max(-1).values, 0.0)
        if method == "copa":
            q_tot = net.mixer(emb, q_max, s["present"])
        else:
            q_tot = net.mixer(s["entities"], s["attributes"], s["present"], s["entity_present"], q_max)
    torch.testing.assert_close(y, r + 0.9 * (1 - batch["done"][:, :T].float()) * q_tot[:, 1:], rtol=1e-5, atol=1e-6)
    # No double-Q: the online networks do not enter the targets; the target networks do.
    with torch.no_grad():
        for p in learner.online.parameters():
            p.add_(0.3)
    torch.testing.assert_close(targets(batch), y, rtol=0, atol=0)
    with torch.no_grad():
        for p in learner.target.parameters():
            p.add_(0.3)
    assert (targets(batch) - y).abs().max() > 1e-4


# ---------------------------------------------------------------------------- targets
def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("method", ["copa", "aqmix"])
def test_target_sync_every_three_updates(method):
    learner = make_learner(method, update_target_every=3)
    batch = rollout_batch()
    assert _same(learner.online, learner.target)  # synced at start
    assert all(not p.requires_grad for p in learner.target.parameters())
    for n in range(1, 8):
        learner.update(batch)
        assert learner.n_updates == n
        assert _same(learner.online, learner.target) == (n % 3 == 0), f"after update {n}"
    # The target is a copy, not an alias.
    assert learner.target.player is not learner.online.player


# ---------------------------------------------------------------------------- AI-QMIX
def test_imagined_groups_are_a_two_way_split():
    gen = torch.Generator().manual_seed(0)
    w = imagined_groups(400, SPEC.max_entities, gen)
    assert w.shape == (400, 14, 14)
    assert ((w == 0) | (w == 1)).all()
    torch.testing.assert_close(w, w.transpose(1, 2), rtol=0, atol=0)
    assert (torch.diagonal(w, dim1=1, dim2=2) == 1).all()
    # An equivalence relation with at most two classes: [g_i = g_j] for a binary g.
    groups = w[:, 0]  # membership relative to entity 0
    expected = (groups.unsqueeze(-1) == groups.unsqueeze(-2)).float()
    torch.testing.assert_close(w, expected, rtol=0, atol=0)
    # rho ~ U(0, 1) per segment: group sizes vary widely, trivial and non-trivial splits both occur.
    size = groups.sum(-1)
    assert (size == 14).any() and ((size > 3) & (size < 11)).any()
    assert len(set(size.tolist())) > 8


def test_aiqmix_imagined_masks_within_across_one_split_per_segment():
    batch = rollout_batch()
    learner = make_learner("aiqmix")
    player_masks, w1_masks = [], []
    features = learner.online.player.features

    def spy(entities, attributes, present, prev_actions, mask):
        player_masks.append(mask.detach().clone())
        return features(entities, attributes, present, prev_actions, mask)

    learner.online.player.features = spy
    handle = learner.online.mixer.w1.register_forward_hook(lambda m, args, out: w1_masks.append(args[2].detach().clone()))
    learner.generator.manual_seed(21)
    with torch.no_grad():
        learner.losses(batch)
    handle.remove()
    learner.generator.manual_seed(21)
    w = imagined_groups(B, SPEC.max_entities, learner.generator)
    within = w[:, None, :SPEC.max_agents]  # [B, 1, A, E]: one split for every slot of a segment
    pm = batch["player_mask"][:, :T].float()
    imagined = [m for m in player_masks if m.shape[0] == 2 * B]
    assert len(imagined) == 1
    torch.testing.assert_close(imagined[0][:B], pm * within, rtol=0, atol=0)
    torch.testing.assert_close(imagined[0][B:], pm * (1 - within), rtol=0, atol=0)
    torch.testing.assert_close(imagined[0][:B] + imagined[0][B:], pm, rtol=0, atol=0)
    full = (batch["agent_present"][:, :T, :, None] * batch["entity_present"][:, :T, None, :]).float()
    assert len(w1_masks) == 3  # ordinary, within, across
    torch.testing.assert_close(w1_masks[0], full, rtol=0, atol=0)
    torch.testing.assert_close(w1_masks[1], full * within, rtol=0, atol=0)
    torch.testing.assert_close(w1_masks[2], full * (1 - within), rtol=0, atol=0)
    assert not torch.equal(w[0], w[1]) or not torch.equal(w[1], w[2])  # splits differ across segments
