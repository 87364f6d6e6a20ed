"""Segment replay (docs/method.md §8): a preallocated FIFO ring of (T + 1)-step segments and
the per-env windows that cut rollouts into segments."""

from __future__ import annotations

import os

import numpy as np
import torch

from .checkpoint import restore_fields
from .spec import EnvSpec

# Per-slot fields: name -> (per-slot shape from the spec, storage dtype).
def slot_fields(spec: EnvSpec) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    a, e = spec.max_agents, spec.max_entities
    return {
        "entities": ((e, spec.feat_dim), torch.float32),
        "attributes": ((a, spec.attr_dim), torch.float32),
        "agent_present": ((a,), torch.uint8),
        "entity_present": ((e,), torch.uint8),
        "player_mask": ((a, e), torch.uint8),  # the mask the player used (after full/periodic overrides)
        "avail_actions": ((a, spec.n_actions), torch.uint8),
        "actions": ((a,), torch.uint8),
        "reward": ((), torch.float32),
        "valid": ((), torch.uint8),  # the slot is a TD sample
        "done": ((), torch.uint8),  # no bootstrap after this sample
    }


def slot_bytes(spec: EnvSpec) -> int:
    """Bytes of one slot of a SegmentBuffer."""
    return sum(int(np.prod(shape, dtype=np.int64)) * torch.empty((), dtype=dtype).element_size()
               for shape, dtype in slot_fields(spec).values())


def buffer_bytes(spec: EnvSpec, capacity: int, period: int, state_dim: int = 0) -> int:
    """What a SegmentBuffer of ``capacity`` segments of ``period + 1`` slots allocates."""
    start = spec.max_agents * (state_dim * 4 + 1) if state_dim else 0  # recurrent start state and action
    return capacity * ((period + 1) * slot_bytes(spec) + start)


def available_memory(device) -> int | None:
    """Bytes that can still be allocated on ``device`` (Linux MemAvailable, else physical memory;
    the free memory of a CUDA device); None when unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_buffer_fits(spec: EnvSpec, capacity: int, period: int, device, state_dim: int = 0,
                      checkpointed: bool = True) -> None:
    """Refuses, before allocating, a replay buffer larger than the memory available: the
    allocation would otherwise take minutes to fail or get the process killed. Writing a
    checkpoint copies the buffer's filled part to CPU memory, so that counts too."""
    need, device = buffer_bytes(spec, capacity, period, state_dim), torch.device(device)
    demands = {device.type: need}
    if checkpointed:
        demands["cpu"] = demands.get("cpu", 0) + need
    for where, amount in demands.items():
        free = available_memory(where)
        if free is None or amount <= free:
            continue
        copy = " (and as much again to write it into a checkpoint)" if checkpointed and where == "cpu" else ""
        fits = max(1, int(0.9 * free * capacity / amount))
        raise ValueError(f"the replay buffer would need {need / 1e9:.1f} GB ({capacity:,} segments x {period + 1} "
                         f"slots x {slot_bytes(spec):,} bytes){copy} but {free / 1e9:.1f} GB of {where} memory is "
                         f"available; lower buffer_size (--set buffer_size={fits} fits) or period")


class SegmentBuffer:
    """FIFO ring of ``capacity`` segments of ``period + 1`` slots, stored compactly (masks and
    flags as uint8) in tensors allocated once on ``device``."""

    def __init__(self, spec: EnvSpec, capacity: int, period: int, device="cpu", state_dim: int = 0):
        self.capacity, self.slots, self.device = capacity, period + 1, torch.device(device)
        self.data = {
            name: torch.zeros((capacity, self.slots, *shape), dtype=dtype, device=self.device)
            for name, (shape, dtype) in slot_fields(spec).items()
        }
        if state_dim:  # recurrent memory: behaviour state and previous action before slot 0
            self.data["start_state"] = torch.zeros((capacity, spec.max_agents, state_dim), device=self.device)
            self.data["start_prev_actions"] = torch.zeros((capacity, spec.max_agents), dtype=torch.uint8, device=self.device)
        self.size = 0
        self.next = 0

    def __len__(self) -> int:
        return self.size

    def push(self, segments: dict[str, np.ndarray]) -> None:
        """Appends a batch of segments (arrays with a leading segment axis)."""
        n = len(segments["reward"])
        if n == 0:
            return
        index = (self.next + torch.arange(n)) % self.capacity
        for name, storage in self.data.items():
            storage[index.to(self.device)] = torch.as_tensor(segments[name]).to(self.device, storage.dtype)
        self.next = (self.next + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``batch_size`` segments drawn uniformly without replacement."""
        index = torch.randperm(self.size, generator=generator)[:batch_size].to(self.device)
        return {name: storage[index] for name, storage in self.data.items()}

    def state_dict(self) -> dict:
        # clone: a slice saved as it is would drag its whole preallocated storage into the file (a
        # full buffer is saved as it is, without a second copy in memory)
        return {"size": self.size, "next": self.next,
                "data": {k: v if self.size == self.capacity and v.device.type == "cpu" else v[: self.size].cpu().clone()
                         for k, v in self.data.items()}}

    def load_state_dict(self, state: dict) -> None:
        size = state["size"]
        if size > self.capacity or set(state["data"]) != set(self.data):
            raise ValueError("replay buffer checkpoint does not match this configuration")
        for name, storage in self.data.items():
            if state["data"][name].shape[1:] != storage.shape[1:]:
                raise ValueError(f"replay buffer field {name!r} has shape {tuple(state['data'][name].shape)}")
            storage[:size] = state["data"][name].to(self.device)
        self.size, self.next = size, state["next"]


class SegmentWindows:
    """Cuts each env's episode into windows [t - T, ..., t] pushed when t % T == 0, t > 0
    (consecutive segments share a slot), plus the ``pad`` tail at episode end."""

    def __init__(self, spec: EnvSpec, n_envs: int, period: int, tail: str, truncation_is_terminal: bool,
                 state_dim: int = 0):
        self.spec, self.n_envs, self.period, self.tail = spec, n_envs, period, tail
        self.truncation_is_terminal = truncation_is_terminal
        self.fields = slot_fields(spec)
        self.ring = {
            name: np.zeros((n_envs, period + 1, *shape), dtype=torch.empty((), dtype=dtype).numpy().dtype)
            for name, (shape, dtype) in self.fields.items()
        }
        self.state_dim = state_dim
        if state_dim:
            self.start_state = np.zeros((n_envs, period + 1, spec.max_agents, state_dim), dtype=np.float32)
            self.start_prev = np.zeros((n_envs, period + 1, spec.max_agents), dtype=np.uint8)
        self.t = np.zeros(n_envs, dtype=np.int64)  # episode-local step of each env

    def state_dict(self) -> dict:
        """The partly filled windows and episode steps (copies): a run checkpointed while episodes
        are under way (StarCraft) resumes cutting the same segments."""
        state = {"t": self.t.copy(), "ring": {k: v.copy() for k, v in self.ring.items()}}
        if self.state_dim:
            state["start_state"], state["start_prev"] = self.start_state.copy(), self.start_prev.copy()
        return state

    def load_state_dict(self, state: dict) -> None:
        ours = {"t": self.t, **self.ring, **({"start_state": self.start_state, "start_prev": self.start_prev}
                                            if self.state_dim else {})}
        theirs = {"t": state.get("t"), **state.get("ring", {}),
                  **{k: state[k] for k in ("start_state", "start_prev") if k in state}}
        restore_fields("segment windows", ours, theirs)

    def append(self, obs, player_mask, actions, reward, terminated, truncated, final_obs, final_player_mask,
               behaviour_state=None, prev_actions=None) -> dict[str, np.ndarray]:
        """Records step t of every env (its observation, the mask its players used, actions and
        reward); returns the segments completed by it (may be empty). ``final_obs`` and
        ``final_player_mask`` describe the last observation of episodes that ended here."""
        envs = np.arange(self.n_envs)
        pos = self.t % (self.period + 1)
        slot = {"entities": obs["entities"], "attributes": obs["attributes"], "agent_present": obs["agent_present"],
                "entity_present": obs["entity_present"], "player_mask": player_mask, "avail_actions": obs["avail_actions"],
                "actions": actions, "reward": reward, "valid": 1, "done": 0}
        for name, value in slot.items():
            self.ring[name][envs, pos] = value
        if self.state_dim:
            self.start_state[envs, pos] = behaviour_state
            self.start_prev[envs, pos] = prev_actions
        ended = (terminated | truncated).astype(bool)
        full = (self.t % self.period == 0) & (self.t > 0)
        segments = [self._window(e) for e in np.flatnonzero(full)]
        if self.tail == "pad":
            for e in np.flatnonzero(ended):
                done = bool(terminated[e]) or (bool(truncated[e]) and self.truncation_is_terminal)
                final = {k: v[e] for k, v in final_obs.items()} | {"player_mask": final_player_mask[e]}
                segments.append(self._tail(e, done, final))
        self.t = np.where(ended, 0, self.t + 1)
        if not segments:
            return {}
        return {name: np.stack([s[name] for s in segments]) for name in segments[0]}

    def _ordered(self, first: int, count: int) -> np.ndarray:
        return (first + np.arange(count)) % (self.period + 1)

    def _window(self, e: int) -> dict[str, np.ndarray]:
        order = self._ordered(self.t[e] - self.period, self.period + 1)
        seg = {name: ring[e, order] for name, ring in self.ring.items()}
        if self.state_dim:
            seg["start_state"], seg["start_prev_actions"] = self.start_state[e, order[0]], self.start_prev[e, order[0]]
        return seg

    def _tail(self, e: int, done: bool, final_obs: dict) -> dict[str, np.ndarray]:
        """Steps s..t (s = floor(t / T) T) valid, then the final observation, then zeros."""
        t = int(self.t[e])
        start = (t // self.period) * self.period
        n_valid = t - start + 1
        order = self._ordered(start, n_valid)
        seg = {name: np.zeros_like(ring[e]) for name, ring in self.ring.items()}
        for name, ring in self.ring.items():
            seg[name][:n_valid] = ring[e, order]
        for name in ("entities", "attributes", "agent_present", "entity_present", "player_mask", "avail_actions"):
            seg[name][n_valid] = final_obs[name]
        seg["done"][n_valid - 1] = done
        if self.state_dim:
            seg["start_state"], seg["start_prev_actions"] = self.start_state[e, order[0]], self.start_prev[e, order[0]]
        return seg
