"""COPA networks against docs/method.md §2-§5 and §19: entity attention, parameter counts, the QMIX
combination and mixers, player memory modes and the coach's log-variance clamp.

Reference computations here are written from the spec, independently of cpfast's code paths
(float64 NumPy), so these tests can disagree with the library."""

import dataclasses
import math

import numpy as np
import pytest
import torch

import cpfast
from cpfast import ops
from cpfast.nn import BaselineMixer, Coach, CopaMixer, EntityAttention, Player, VariationalPosterior

SPEC = cpfast.make_env("resource_collection").spec


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(params=ops.KERNEL_MODES)
def kernels(request):
    """Both paths of the kernels switch must meet the spec."""
    return request.param


def qmix(kernels, *args, **kwargs):
    return ops.qmix_mix(*args, kernels=kernels, **kwargs)


def n_params(module):
    return sum(p.numel() for p in module.parameters())


# ============================================================================ §2 attention
def reference_mha(module: EntityAttention, x, mask):
    """Direct float64 transcription of docs/method.md §2 for x [R, N_E, dh], mask [R, N_A, N_E]."""
    x = np.asarray(x, dtype=np.float64)
    mask = np.asarray(mask, dtype=np.float64)
    w_pre = module.pre.weight.detach().double().numpy()
    b_pre = module.pre.bias.detach().double().numpy()
    w_q, w_k, w_v = (w.detach().double().numpy() for w in (module.w_q, module.w_k, module.w_v))
    heads, dh = w_q.shape[0], w_q.shape[1]
    n_agents = mask.shape[-2]
    out = np.zeros((x.shape[0], n_agents, dh))
    for r in range(x.shape[0]):
        leaky = np.where(x[r] > 0, x[r], 0.01 * x[r])
        h = leaky @ w_pre.T + b_pre  # [N_E, dh]
        acc = np.zeros((n_agents, dh))
        for k in range(heads):
            q = h[:n_agents] @ w_q[k]
            kk = h @ w_k[k]
            v = h @ w_v[k]
            scores = q @ kk.T / math.sqrt(dh)
            shifted = scores - scores.max(axis=-1, keepdims=True)  # over ALL columns
            e = np.exp(shifted)
            p = e / e.sum(axis=-1, keepdims=True)
            p_masked = p * mask[r]
            a = p_masked / (p_masked.sum(axis=-1, keepdims=True) + 1e-12)
            acc += a @ v
        out[r] = acc / heads
    return out


def random_mask(gen, rows, n_agents, n_entities, p=0.5):
    return (torch.rand(rows, n_agents, n_entities, generator=gen, dtype=torch.float64) < p).double()


@pytest.mark.parametrize("scale", [1.0, 0.1])
def test_attention_matches_float64_transcription_with_random_masks(scale, kernels):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    mha = EntityAttention(16, 3, kernels).double()
    with torch.no_grad():  # scale 1: the spec's N(0,1) init (near one-hot softmax); 0.1: soft attention
        for w in (mha.w_q, mha.w_k, mha.w_v):
            w.mul_(scale)
    x = torch.randn(5, 9, 16, generator=gen, dtype=torch.float64)
    mask = random_mask(gen, 5, 4, 9)
    mask[0, 0] = 0  # an all-zero row
    mask[1, 2] = 0
    mask[1, 2, 7] = 1  # a single visible entity
    out = mha(x, mask).detach().numpy()
    expected = reference_mha(mha, x.numpy(), mask.numpy())
    np.testing.assert_allclose(out, expected, rtol=1e-9, atol=1e-10)
    assert np.isfinite(out).all()
    # The soft case must actually mix several entities, or the comparison would be weak.
    if scale == 0.1:
        single = reference_mha(mha, x.numpy(), np.eye(9)[None, :4].repeat(5, 0))
        assert np.abs(expected - single).max() > 1e-3


def test_attention_all_zero_mask_rows_are_exactly_zero_without_nan(kernels):
    torch.manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        mha = EntityAttention(16, 2, kernels).to(dtype)
        x = torch.randn(3, 7, 16, dtype=dtype, requires_grad=True)
        mask = torch.ones(3, 4, 7, dtype=dtype)
        mask[:, 1] = 0
        mask[2] = 0
        out = mha(x, mask)
        assert torch.isfinite(out).all()
        assert (out[:, 1] == 0).all() and (out[2] == 0).all()
        assert (out[0, 0].abs() > 0).any()
        out.sum().backward()
        assert torch.isfinite(x.grad).all()
        assert all(torch.isfinite(p.grad).all() for p in mha.parameters())


def test_attention_single_visible_entity_returns_its_head_averaged_value(kernels):
    torch.manual_seed(3)
    mha = EntityAttention(8, 2, kernels).double()
    with torch.no_grad():
        for w in (mha.w_q, mha.w_k):
            w.mul_(0.2)
    x = torch.randn(1, 5, 8, dtype=torch.float64)
    mask = torch.zeros(1, 3, 5, dtype=torch.float64)
    mask[0, 0, 4] = mask[0, 1, 0] = mask[0, 2, 2] = 1
    out = mha(x, mask).detach().numpy()[0]
    h = (torch.nn.functional.leaky_relu(x[0], 0.01) @ mha.pre.weight.T + mha.pre.bias).detach().numpy()
    w_v_mean = mha.w_v.detach().numpy().mean(axis=0)
    for agent, entity in ((0, 4), (1, 0), (2, 2)):
        np.testing.assert_allclose(out[agent], h[entity] @ w_v_mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out, reference_mha(mha, x.numpy(), mask.numpy())[0], rtol=1e-10, atol=1e-12)


def _controlled_attention(dim, dtype, big, kernels):
    """Identity pre-encoder and projections: score(i, j) = h_i . h_j / sqrt(dh), values = h.
    Returns (module, x, mask) where row 0 has a hidden column with a score ``big`` above all
    visible ones, and row 1 sees the same visible columns without the hidden giant."""
    mha = EntityAttention(dim, 1, kernels).to(dtype)
    with torch.no_grad():
        mha.pre.weight.copy_(torch.eye(dim))
        mha.pre.bias.zero_()
        for w in (mha.w_q, mha.w_k, mha.w_v):
            w.copy_(torch.eye(dim).unsqueeze(0))
    x = torch.zeros(1, 4, dim, dtype=dtype)
    x[0, 0, 0] = 1.0  # agent 0 looks along e_0
    x[0, 1, 0] = 1.0  # agent 1 as well
    x[0, 2, 1] = 1.0  # a visible entity, orthogonal: score 0
    x[0, 3, 0] = big * math.sqrt(dim)  # hidden giant: score(0, 3) = big
    mask = torch.tensor([[[1, 0, 1, 0], [0, 1, 1, 1]]], dtype=dtype)
    return mha, x, mask


def test_attention_forced_underflow_row_outputs_zero(kernels):
    # float32: a hidden column 200 above the visible ones -> exp(-200) underflows to 0.
    mha, x, mask = _controlled_attention(4, torch.float32, 200.0, kernels)
    out = mha(x, mask).detach()
    assert torch.isfinite(out).all()
    assert (out[0, 0] == 0).all(), "visible probabilities underflow, the row must output 0"
    # The float64 transcription agrees up to the 1e-12 floor of the renormaliser (~1e-75 here),
    # whereas a visible-only ("masked_softmax") normalisation would return the visible value e_1.
    expected = reference_mha(mha.double(), x.double().numpy(), mask.double().numpy())
    assert np.abs(expected[0, 0]).max() < 1e-60
    np.testing.assert_allclose(out.detach().double().numpy(), expected, rtol=1e-6, atol=1e-30)
    # Row 1 sees the giant itself: attention concentrates on it, no underflow to 0.
    assert out[0, 1].abs().max() > 1.0
    # float64: the gap must exceed ~745 to underflow; both the module and the transcription give 0.
    mha64, x64, mask64 = _controlled_attention(4, torch.float64, 2000.0, kernels)
    out64 = mha64(x64, mask64).detach().numpy()
    expected = reference_mha(mha64, x64.numpy(), mask64.numpy())
    assert (out64[0, 0] == 0).all() and (expected[0, 0] == 0).all()
    np.testing.assert_allclose(out64, expected, rtol=1e-12, atol=0)


def test_attention_gradcheck_float64(kernels):
    torch.manual_seed(0)
    mha = EntityAttention(8, 2, kernels).double()
    with torch.no_grad():
        for w in (mha.w_q, mha.w_k, mha.w_v):
            w.mul_(0.3)  # soft attention, so the softmax gradient is not vanishingly small
    names = [n for n, _ in mha.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in mha.parameters())
    x = torch.randn(2, 5, 8, dtype=torch.float64, requires_grad=True)
    mask = (torch.rand(2, 3, 5) < 0.6).double()
    mask[0, 0] = 0
    mask[1, 1] = 0
    mask[1, 1, 2] = 1

    def fn(x, *ps):
        return torch.func.functional_call(mha, dict(zip(names, ps)), (x, mask))

    assert torch.autograd.gradcheck(fn, (x, *params), eps=1e-6, atol=1e-6, rtol=1e-4)


# ============================================================================ §19 counts
def test_parameter_counts_match_spec_table():
    torch.manual_seed(0)
    assert SPEC.max_agents == 6 and SPEC.max_entities == 14 and SPEC.n_actions == 5
    assert n_params(EntityAttention(128, 4)) == 213_120
    assert n_params(Player(SPEC, 128, 4, 128, "reference")) == 382_853
    assert n_params(Player(SPEC, 128, 4, 0, "reference")) == 366_469
    assert n_params(Coach(SPEC, 128, 4, 128)) == 249_600
    assert n_params(CopaMixer(128, 128, 128)) == 132_096
    assert n_params(VariationalPosterior(SPEC, 128, 4, 128)) == 283_264
    assert n_params(BaselineMixer(SPEC, 128, 4, 128, 128)) == 998_400


# ============================================================================ §5 mixing
def formula_qtot(w1_logits, b1, w2_logits, b2, q, p):
    """§5.1 for one time slot in float64 loops: inputs [N_A, E] (logits/biases), q [N_A], p [N_A]."""
    w1_logits, b1, w2_logits, b2, q, p = (np.asarray(a, dtype=np.float64) for a in (w1_logits, b1, w2_logits, b2, q, p))
    n_agents, embed = w1_logits.shape
    n = p.sum() + 1e-12

    def softmax(v):
        e = np.exp(v - v.max())
        return e / e.sum()

    hidden = np.zeros(embed)
    bias1 = np.zeros(embed)
    w2 = np.zeros(embed)
    bias2 = 0.0
    for i in range(n_agents):
        hidden += p[i] * q[i] * (p[i] * softmax(w1_logits[i]))
        bias1 += p[i] * b1[i] / n
        w2 += p[i] * softmax(w2_logits[i]) / n
        bias2 += p[i] * b2[i] / n
    bias2 = bias2.mean()
    pre = hidden + bias1
    elu = np.where(pre > 0, pre, np.expm1(pre))
    return float(elu @ w2 + bias2)


def random_hyper(gen, lead, n_agents, embed, dtype=torch.float64):
    return [torch.randn(*lead, n_agents, embed, generator=gen, dtype=dtype) * 2 for _ in range(4)]


def test_qmix_mix_equals_formula(kernels):
    gen = torch.Generator().manual_seed(0)
    w1, b1, w2, b2 = random_hyper(gen, (3, 2), 5, 7)
    q = torch.randn(3, 2, 5, generator=gen, dtype=torch.float64) * 3
    p = (torch.rand(3, 2, 5, generator=gen) < 0.6).double()
    p[0, 0] = 0  # nobody present: Q_tot = ELU(0) . 0 + 0 = 0
    p[0, 1] = 1
    out = qmix(kernels, w1, b1, w2, b2, q, p)
    assert out.shape == (3, 2)
    for a in range(3):
        for b in range(2):
            expected = formula_qtot(w1[a, b], b1[a, b], w2[a, b], b2[a, b], q[a, b], p[a, b])
            assert out[a, b].item() == pytest.approx(expected, rel=1e-10, abs=1e-12)
    assert out[0, 0].item() == 0.0


def test_qmix_mix_is_monotone_in_present_q_and_blind_to_absent_q(kernels):
    gen = torch.Generator().manual_seed(1)
    w1, b1, w2, b2 = random_hyper(gen, (16,), 6, 8)
    q = (torch.randn(16, 6, generator=gen, dtype=torch.float64) * 5).requires_grad_(True)
    p = (torch.rand(16, 6, generator=gen) < 0.5).double()
    p[:, 0] = 1
    qmix(kernels, w1, b1, w2, b2, q, p).sum().backward()
    grad = q.grad
    assert (grad[p == 1] >= 0).all()
    assert (grad[p == 1] > 0).any()
    assert (grad[p == 0] == 0).all()
    # Finite-difference monotonicity: raising a present q_i never lowers Q_tot.
    with torch.no_grad():
        base = qmix(kernels, w1, b1, w2, b2, q, p)
        for i in range(6):
            bumped = q.clone()
            bumped[:, i] += 1.5
            assert (qmix(kernels, w1, b1, w2, b2, bumped, p) >= base - 1e-12).all()


def test_qmix_mix_permutation_and_absent_slots(kernels):
    gen = torch.Generator().manual_seed(2)
    w1, b1, w2, b2 = random_hyper(gen, (4,), 5, 6)
    q = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    p = torch.ones(4, 5, dtype=torch.float64)
    base = qmix(kernels, w1, b1, w2, b2, q, p)
    perm = torch.tensor([3, 0, 4, 1, 2])
    permuted = qmix(kernels, w1[:, perm], b1[:, perm], w2[:, perm], b2[:, perm], q[:, perm], p[:, perm])
    torch.testing.assert_close(permuted, base, rtol=1e-12, atol=1e-12)
    # Three absent slots with junk hypernetwork outputs and q, interleaved with the present ones.
    junk = [torch.randn(4, 3, 6, generator=gen, dtype=torch.float64) * 50 for _ in range(4)]
    order = torch.tensor([0, 5, 1, 2, 6, 3, 7, 4])  # positions of the 8 slots
    cat = lambda a, j: torch.cat([a, j], dim=1)[:, order]  # noqa: E731
    q_pad = cat(q, torch.randn(4, 3, generator=gen, dtype=torch.float64) * 1e3)
    p_pad = cat(p, torch.zeros(4, 3, dtype=torch.float64))
    padded = qmix(kernels, cat(w1, junk[0]), cat(b1, junk[1]), cat(w2, junk[2]), cat(b2, junk[3]), q_pad, p_pad)
    torch.testing.assert_close(padded, base, rtol=1e-12, atol=1e-12)


def _mixer_inputs(gen, batch, n_agents, dim):
    emb = torch.randn(batch, n_agents, dim, generator=gen, dtype=torch.float64)
    q = torch.randn(batch, n_agents, generator=gen, dtype=torch.float64) * 2
    return emb, q


def test_copa_mixer_formula_monotone_permutation_and_absent_slots():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(3)
    mixer = CopaMixer(12, 10, 9).double()
    emb, q = _mixer_inputs(gen, 6, 4, 12)
    p = torch.ones(6, 4, dtype=torch.float64)
    p[1, 2] = 0
    base = mixer(emb, q, p)
    # Formula with the mixer's own hypernetworks evaluated per agent.
    with torch.no_grad():
        for b in range(6):
            logits = [net(emb[b]).numpy() for net in (mixer.w1, mixer.b1, mixer.w2, mixer.b2)]
            assert base[b].item() == pytest.approx(formula_qtot(*logits, q[b], p[b]), rel=1e-10, abs=1e-12)
    # Monotone in present q, blind to absent q.
    q_grad = q.clone().requires_grad_(True)
    mixer(emb, q_grad, p).sum().backward()
    assert (q_grad.grad[p == 1] >= 0).all() and (q_grad.grad[p == 0] == 0).all()
    # Permuting agent slots.
    perm = torch.tensor([2, 0, 3, 1])
    torch.testing.assert_close(mixer(emb[:, perm], q[:, perm], p[:, perm]), base, rtol=1e-12, atol=1e-12)
    # Junk in absent rows and extra absent slots.
    emb_junk, q_junk = emb.clone(), q.clone()
    emb_junk[1, 2] = torch.randn(12, generator=gen, dtype=torch.float64) * 100
    q_junk[1, 2] = 1e4
    torch.testing.assert_close(mixer(emb_junk, q_junk, p), base, rtol=1e-12, atol=1e-12)
    extra_emb = torch.randn(6, 2, 12, generator=gen, dtype=torch.float64) * 10
    padded = mixer(torch.cat([extra_emb[:, :1], emb_junk, extra_emb[:, 1:]], 1),
                   torch.cat([torch.full((6, 1), 7.0, dtype=torch.float64), q_junk, torch.full((6, 1), -9.0, dtype=torch.float64)], 1),
                   torch.cat([torch.zeros(6, 1, dtype=torch.float64), p, torch.zeros(6, 1, dtype=torch.float64)], 1))
    torch.testing.assert_close(padded, base, rtol=1e-12, atol=1e-12)


def _baseline_batch(spec, gen, batch, n_present):
    """Random common-interface tensors [batch, ...] with agents 0..n_present-1 present."""
    a, e = spec.max_agents, spec.max_entities
    entities = torch.randn(batch, e, spec.feat_dim, generator=gen, dtype=torch.float64)
    attributes = torch.rand(batch, a, spec.attr_dim, generator=gen, dtype=torch.float64)
    present = torch.zeros(batch, a, dtype=torch.float64)
    present[:, :n_present] = 1
    entity_present = torch.ones(batch, e, dtype=torch.float64)
    entity_present[:, :a] = present
    entity_present[:, -1] = 0  # one absent non-agent entity too
    q = torch.randn(batch, a, generator=gen, dtype=torch.float64)
    return entities, attributes, present, entity_present, q


def _insert_absent_agent_slots(spec, tensors, where, gen):
    """Adds absent agent slots (junk content, present 0) at agent positions ``where`` (in the new
    layout); returns the new spec and tensors."""
    entities, attributes, present, entity_present, q = tensors
    a_old, n_new = spec.max_agents, len(where)
    a_new = a_old + n_new
    old_pos = [i for i in range(a_new) if i not in where]
    batch = entities.shape[0]
    new_spec = dataclasses.replace(spec, max_agents=a_new, max_entities=spec.max_entities + n_new)

    def spread(old, junk, dim):
        shape = list(old.shape)
        shape[dim] = a_new
        out = junk(shape)
        idx = [slice(None)] * old.dim()
        idx[dim] = old_pos
        out[tuple(idx)] = old.narrow(dim, 0, a_old)
        return out

    junk_normal = lambda shape: torch.randn(*shape, generator=gen, dtype=torch.float64) * 3  # noqa: E731
    zeros = lambda shape: torch.zeros(*shape, dtype=torch.float64)  # noqa: E731
    ent_agents = spread(entities[:, :a_old], junk_normal, 1)
    new_entities = torch.cat([ent_agents, entities[:, a_old:]], 1)
    new_attributes = spread(attributes, junk_normal, 1)
    new_present = spread(present, zeros, 1)
    new_ep = torch.cat([spread(entity_present[:, :a_old], zeros, 1), entity_present[:, a_old:]], 1)
    new_q = spread(q, lambda shape: torch.randn(*shape, generator=gen, dtype=torch.float64) * 100, 1)
    assert batch == new_q.shape[0]
    return new_spec, (new_entities, new_attributes, new_present, new_ep, new_q)


def test_baseline_mixer_permutation_absent_slots_and_monotonicity():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(4)
    mixer = BaselineMixer(SPEC, 16, 2, 12, 10).double()
    tensors = _baseline_batch(SPEC, gen, 5, 4)
    entities, attributes, present, entity_present, q = tensors
    base = mixer(*tensors[:4], q)
    # Formula: the same hypernetwork outputs through §5.1.
    with torch.no_grad():
        agents, others = mixer.hyper_inputs(entities, attributes, present)
        mask = present.unsqueeze(-1) * entity_present.unsqueeze(-2)
        outs = [net(agents, others, mask).numpy() for net in (mixer.w1, mixer.b1, mixer.w2, mixer.b2)]
        for b in range(5):
            expected = formula_qtot(*(o[b] for o in outs), q[b], present[b])
            assert base[b].item() == pytest.approx(expected, rel=1e-10, abs=1e-12)
    # Monotone in present q, blind to absent q.
    q_grad = q.clone().requires_grad_(True)
    mixer(*tensors[:4], q_grad).sum().backward()
    assert (q_grad.grad[present == 1] >= 0).all() and (q_grad.grad[present == 1] > 0).any()
    assert (q_grad.grad[present == 0] == 0).all()
    # Junk content in the two absent agent slots (rows, attributes, q).
    junk_entities, junk_attr, junk_q = entities.clone(), attributes.clone(), q.clone()
    junk_entities[:, 4:6] = torch.randn(5, 2, SPEC.feat_dim, generator=gen, dtype=torch.float64) * 3
    junk_attr[:, 4:6] = 9.0
    junk_q[:, 4:6] = -1e3
    torch.testing.assert_close(mixer(junk_entities, junk_attr, present, entity_present, junk_q), base,
                               rtol=1e-10, atol=1e-10)
    # Permuting agent slots (entity rows of agents move with them).
    perm = torch.tensor([3, 5, 0, 2, 4, 1])
    ent_perm = torch.cat([entities[:, perm], entities[:, SPEC.max_agents:]], 1)
    ep_perm = torch.cat([entity_present[:, perm], entity_present[:, SPEC.max_agents:]], 1)
    torch.testing.assert_close(mixer(ent_perm, attributes[:, perm], present[:, perm], ep_perm, q[:, perm]), base,
                               rtol=1e-10, atol=1e-10)
    # Extra absent agent slots (a wider layout, same parameters).
    new_spec, padded = _insert_absent_agent_slots(SPEC, tensors, [1, 7], gen)
    wide = BaselineMixer(new_spec, 16, 2, 12, 10).double()
    wide.load_state_dict(mixer.state_dict())
    torch.testing.assert_close(wide(*padded), base, rtol=1e-10, atol=1e-10)
    # Sanity: the test can fail -- making an absent slot present changes Q_tot.
    present2, ep2 = present.clone(), entity_present.clone()
    present2[:, 4] = ep2[:, 4] = 1
    assert (mixer(entities, attributes, present2, ep2, q) - base).abs().max() > 1e-6


# ============================================================================ §3 player memory
def _player(memory, strategy_dim=6):
    torch.manual_seed(0)
    return Player(SPEC, 16, 2, strategy_dim, memory).double()


def test_reference_memory_q_depends_only_on_current_and_previous_feature():
    player = _player("reference")
    gen = torch.Generator().manual_seed(5)
    b, s, a = 3, 5, SPEC.max_agents
    h = torch.randn(b, s, a, 16, generator=gen, dtype=torch.float64)
    start = torch.randn(b, a, 16, generator=gen, dtype=torch.float64)
    z = torch.randn(b, s, a, 6, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        q = player.q_sequence(h, start, z)
        assert q.shape == (b, s, a, SPEC.n_actions)
        for t in range(s):
            prev = start if t == 0 else h[:, t - 1]
            q_t, next_state = player.q_values(h[:, t], prev, z[:, t])
            torch.testing.assert_close(q[:, t], q_t, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(next_state, h[:, t])  # the next state is the feature itself
            # Independent of the Player API: GRUCell(input=h_t, state=h_{t-1}) then the Q head on [g ; z].
            g = player.gru(h[:, t].reshape(-1, 16), prev.reshape(-1, 16)).view(b, a, 16)
            torch.testing.assert_close(q[:, t], player.q_head(torch.cat([g, z[:, t]], -1)), rtol=1e-12, atol=1e-12)
        # Changing h_{t-2} (t = 4) and the start state leaves q_3.. unchanged beyond their one-step reach.
        h2 = h.clone()
        h2[:, 2] += 5.0
        q2 = player.q_sequence(h2, start + 1.0, z)
        torch.testing.assert_close(q2[:, 4], q[:, 4], rtol=0, atol=0)
        assert (q2[:, 3] - q[:, 3]).abs().max() > 1e-6  # h_{t-1} does matter
        assert (q2[:, 2] - q[:, 2]).abs().max() > 1e-6  # h_t does matter
        assert (q2[:, 0] - q[:, 0]).abs().max() > 1e-6  # the start state is h_{-1}
        torch.testing.assert_close(q2[:, 1], q[:, 1], rtol=0, atol=0)
        # The strategy at step t matters only at step t.
        z2 = z.clone()
        z2[:, 1] += 1.0
        q3 = player.q_sequence(h, start, z2)
        assert (q3[:, 1] - q[:, 1]).abs().max() > 1e-6
        for t in (0, 2, 3, 4):
            torch.testing.assert_close(q3[:, t], q[:, t], rtol=0, atol=0)


def test_recurrent_memory_carries_gru_output():
    player = _player("recurrent")
    gen = torch.Generator().manual_seed(6)
    b, s, a = 2, 5, SPEC.max_agents
    h = torch.randn(b, s, a, 16, generator=gen, dtype=torch.float64)
    start = torch.randn(b, a, 16, generator=gen, dtype=torch.float64)
    z = torch.randn(b, s, a, 6, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        q = player.q_sequence(h, start, z)
        state = start
        for t in range(s):
            g = player.gru(h[:, t].reshape(-1, 16), state.reshape(-1, 16)).view(b, a, 16)
            torch.testing.assert_close(q[:, t], player.q_head(torch.cat([g, z[:, t]], -1)), rtol=1e-12, atol=1e-12)
            state = g
        h2 = h.clone()
        h2[:, 2] += 5.0
        q2 = player.q_sequence(h2, start, z)
        assert (q2[:, 4] - q[:, 4]).abs().max() > 1e-8  # h_{t-2} reaches q_t through the state
        torch.testing.assert_close(q2[:, 1], q[:, 1], rtol=0, atol=0)  # no look-ahead


def test_player_without_coach_and_unknown_memory():
    player = _player("reference", strategy_dim=0)
    h = torch.randn(2, 3, SPEC.max_agents, 16, dtype=torch.float64)
    q = player.q_sequence(h, torch.zeros(2, SPEC.max_agents, 16, dtype=torch.float64))
    assert q.shape == (2, 3, SPEC.max_agents, SPEC.n_actions)
    with pytest.raises(ValueError):
        Player(SPEC, 16, 2, 0, "lstm")


# ============================================================================ §4 coach clamp
@pytest.mark.parametrize("module_kind", ["coach", "posterior"])
def test_logvar_clamped_with_zero_gradient_where_clamped(module_kind):
    torch.manual_seed(0)
    dz = 6
    if module_kind == "coach":
        module = Coach(SPEC, 16, 2, dz).double()
        last = module.logvar
    else:
        module = VariationalPosterior(SPEC, 16, 2, dz).double()
        last = module.logvar[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([5.0, -25.0, -3.0, 0.5, -10.5, -0.1], dtype=torch.float64))
    if module_kind == "coach":
        emb = torch.randn(4, SPEC.max_agents, 16, dtype=torch.float64)
        logvar = module.strategy(emb)[1]
    else:
        gen = torch.Generator().manual_seed(0)
        ent = torch.randn(4, SPEC.max_entities, SPEC.feat_dim, generator=gen, dtype=torch.float64)
        attr = torch.rand(4, SPEC.max_agents, SPEC.attr_dim, generator=gen, dtype=torch.float64)
        pres = torch.ones(4, SPEC.max_agents, dtype=torch.float64)
        acts = torch.zeros(4, SPEC.max_agents, dtype=torch.long)
        mask = torch.ones(4, SPEC.max_agents, SPEC.max_entities, dtype=torch.float64)
        logvar = module(ent, attr, pres, acts, mask)[1]
    expected = torch.tensor([0.0, -10.0, -3.0, 0.0, -10.0, -0.1], dtype=torch.float64)
    torch.testing.assert_close(logvar, expected.expand_as(logvar), rtol=0, atol=1e-12)
    assert logvar.min() >= -10 and logvar.max() <= 0
    logvar.sum().backward()
    n_rows = logvar.numel() // dz
    clamped = torch.tensor([True, True, False, True, True, False])
    assert (last.bias.grad[clamped] == 0).all()
    torch.testing.assert_close(last.bias.grad[~clamped], torch.full((2,), float(n_rows), dtype=torch.float64))
    assert (last.weight.grad[clamped] == 0).all()
    if module_kind == "coach":
        # sigma = exp(l / 2) stays in [e^-5, 1]
        sigma = torch.exp(0.5 * logvar)
        assert sigma.min() >= math.exp(-5) - 1e-15 and sigma.max() <= 1.0


def test_an_absent_slots_leftover_entity_row_changes_no_output():
    """Whatever the env leaves in an absent slot's own entity row (here: huge values, so its
    attention scores lead the visible ones by far), no network output moves: the row is zeroed
    before the networks, as the authors' learner does."""
    spec = cpfast.make_env("resource_collection", num_threads=1).spec
    gen = torch.Generator().manual_seed(0)
    player = Player(spec, 32, 4, 32, "reference").double()
    coach = Coach(spec, 32, 4, 32).double()
    entities = torch.randn(3, spec.max_entities, spec.feat_dim, generator=gen, dtype=torch.float64)
    attributes = torch.rand(3, spec.max_agents, spec.attr_dim, generator=gen, dtype=torch.float64)
    present = torch.zeros(3, spec.max_agents, dtype=torch.float64)
    present[:, :3] = 1
    entity_present = torch.ones(3, spec.max_entities, dtype=torch.float64)
    entity_present[:, 3:spec.max_agents] = 0
    mask = present.unsqueeze(-1) * entity_present.unsqueeze(-2)
    prev = torch.zeros(3, spec.max_agents, dtype=torch.long)
    leftover = entities.clone()
    leftover[:, 3:spec.max_agents] = 1e3 * torch.randn(3, spec.max_agents - 3, spec.feat_dim, generator=gen,
                                                        dtype=torch.float64)
    h = [player.features(e, attributes, present, prev, mask) for e in (entities, leftover)]
    torch.testing.assert_close(h[0], h[1], rtol=0, atol=0)
    c = [coach.encode(e, attributes, present, entity_present) for e in (entities, leftover)]
    torch.testing.assert_close(c[0], c[1], rtol=0, atol=0)
