"""Per-environment state resets: episodes that end at different steps in different batch rows. From
each step where a row's episode starts, the row equals a fresh agent fed from that step; before its
first start it equals the row run on its own from its incoming state; rows without a start are
untouched by the others' resets."""

import pytest
import torch

from s3ta import agents
from s3ta.agents import AgentInputs

OBS = (3, 32, 32)
RECURRENT = [name for name in agents.names() if name != "feedforward"]
# [T, B]: row 0 starts an episode at step 2, row 1 at steps 1 and 3, row 2 never
DONE = torch.tensor([[False, False, False],
                     [False, True, False],
                     [True, False, False],
                     [False, True, False]])


def episodes(b: int) -> list[tuple[int, int, bool]]:
    """(first step, end step, starts fresh) of each piece of row b between episode starts."""
    T = DONE.shape[0]
    starts = DONE[:, b].nonzero().flatten().tolist()
    bounds = sorted({0, *starts, T})
    return [(s, e, s in starts) for s, e in zip(bounds[:-1], bounds[1:])]


@pytest.mark.parametrize("name", RECURRENT)
def test_mixed_episode_starts_reset_only_their_rows(name):
    torch.manual_seed(0)
    agent = agents.build(name, OBS, 4).double()
    T, B = DONE.shape
    g = torch.Generator().manual_seed(1)
    inputs = AgentInputs(obs=torch.randint(0, 256, (T, B, *OBS), generator=g, dtype=torch.uint8),
                         prev_action=torch.randint(0, 4, (T, B), generator=g),
                         prev_reward=torch.randn(T, B, generator=g, dtype=torch.float64), done=DONE)
    initial = agent.initial_state(B)
    state = tuple(torch.randn(s.shape, generator=g, dtype=torch.float64) * 2 for s in initial)  # worth resetting
    with torch.no_grad():
        output, final = agent(inputs, state)
        for b in range(B):
            for first, end, fresh in episodes(b):  # B = 1 below: a reset cannot reach another row
                piece = AgentInputs(*(x[first:end, b:b + 1] for x in inputs))
                if fresh:
                    start = tuple(s.double() for s in agent.initial_state(1))
                else:
                    start = tuple(s[b:b + 1] for s in state)
                alone, last = agent(piece, start)
                torch.testing.assert_close(output.policy_logits[first:end, b], alone.policy_logits[:, 0])
                torch.testing.assert_close(output.baseline[first:end, b], alone.baseline[:, 0])
            for s, e in zip(final, last):
                torch.testing.assert_close(s[b], e[0])

        # the reset mattered: row 0 carried on without it differs from step 2
        carried, _ = agent(AgentInputs(*(x[:, :1] for x in inputs._replace(done=torch.zeros_like(DONE)))),
                           tuple(s[:1] for s in state))
    assert not torch.allclose(carried.policy_logits[2:, 0], output.policy_logits[2:, 0])


def test_episode_starts_does_not_read_flags_off_the_cpu():
    from s3ta.agents.core import episode_starts

    done = torch.zeros(4, 3, dtype=torch.bool)
    done[2, 1] = True
    assert episode_starts(done) == [False, False, True, False]
    # a device tensor would need a host read: every step resets (by ones where no episode starts)
    assert episode_starts(done.to("meta")) == [True] * 4
