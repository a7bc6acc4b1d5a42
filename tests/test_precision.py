"""bf16: outputs, policy and gradients of a bf16 forward pass stay close to fp32 on a fixed batch, the
master weights and optimizer state stay fp32, the support check reads the CPU's flags, and a run on a
machine without bf16 says so, trains in fp32 and records it for that attempt only."""

import json

import pytest
import torch

from s3ta import agents, precision
from s3ta.checkpoints import load_checkpoint
from s3ta.training import TrainConfig, loop, train
from s3ta.training.learner import learn, make_optimizer, make_scheduler
from tests.test_agents import random_inputs

NATIVE = precision.bf16_support("cpu")[0]
needs_bf16 = pytest.mark.skipif(not NATIVE, reason=precision.bf16_support("cpu")[1])

# Tolerances of a bf16 forward (and backward) against fp32 on the same weights and batch: the Atari
# preset's agent on 210x160 frames, T = 8, B = 4, its heads scaled x30 so that logits and values spread
# over several units as a trained agent's do. Measured (AMD EPYC with avx512_bf16, torch 2.13): policy TV
# 0.005, attention TV 0.004, value error 0.016, gradient cosine 1.0000; the tolerances leave ~3-4x room.
# Random-init agents are forgiving (with no fp32 carve-outs at all the numbers were 0.007, 0.006, 0.018):
# what catches a bf16 leak is the dtype check, and what shows parity is the Pong run (docs/benchmarks.md).
MAX_POLICY_TV = 0.02  # total variation between the two policies, worst step
MAX_ATTENTION_TV = 0.02  # total variation between the two attention maps, worst head and step
MAX_BASELINE_ERROR = 0.06  # |value difference|, worst step
MIN_GRADIENT_COSINE = 0.999  # cosine between the two flattened gradients
ATARI_SMALL = dict(conv_strides=(4, 2, 2), convlstm_init_gain=3.0, query_content_bias_gain=30.0,
                   padding_mode="replicate")  # atari-small's agent_overrides


def forward_and_grad(agent, inputs, mode: str):
    agent.zero_grad(set_to_none=True)
    with precision.autocast(mode, "cpu"):
        output, _ = agent(inputs, agent.initial_state(inputs.obs.shape[1]))
    # a loss that reaches every parameter through the policy, the value and the attention
    loss = (torch.log_softmax(output.policy_logits, -1)[..., 0].sum() + output.baseline.square().sum()
            + (output.attention * torch.linspace(0, 1, output.attention[0, 0, 0].numel()).view(output.attention.shape[-2:])).sum())
    loss.backward()
    gradient = torch.cat([p.grad.flatten() for p in agent.parameters() if p.grad is not None])
    return output, gradient


def parity(agent, inputs) -> dict[str, float]:
    """Worst-case differences between the bf16 and the fp32 pass."""
    full, full_grad = forward_and_grad(agent, inputs, "fp32")
    half, half_grad = forward_and_grad(agent, inputs, "bf16")
    tv = lambda p, q: 0.5 * (p.float() - q.float()).abs().sum(-1)  # noqa: E731
    return {
        "fp32_outputs": all(t.dtype == torch.float32 for t in (half.policy_logits, half.baseline, half.attention)),
        "policy_tv": tv(torch.softmax(full.policy_logits, -1), torch.softmax(half.policy_logits, -1)).max().item(),
        "attention_tv": tv(full.attention.flatten(-2), half.attention.flatten(-2)).max().item(),
        "baseline_error": (full.baseline - half.baseline.float()).abs().max().item(),
        "gradient_cosine": torch.nn.functional.cosine_similarity(full_grad, half_grad, dim=0).item(),
    }


@needs_bf16
def test_bf16_parity():
    torch.manual_seed(0)
    agent = agents.build("s3ta-small", (3, 210, 160), 18, **ATARI_SMALL)
    with torch.no_grad():
        agent.policy.weight.mul_(30)
        agent.baseline.weight.mul_(30)
    measured = parity(agent, random_inputs(8, 4, (3, 210, 160), 18, done_prob=0.1))
    assert measured["fp32_outputs"], "policy, value and attention must leave a bf16 forward in fp32"
    assert measured["policy_tv"] < MAX_POLICY_TV, measured
    assert measured["attention_tv"] < MAX_ATTENTION_TV, measured
    assert measured["baseline_error"] < MAX_BASELINE_ERROR, measured
    assert measured["gradient_cosine"] > MIN_GRADIENT_COSINE, measured


@needs_bf16
@pytest.mark.parametrize("name", ["lstm", "feedforward", "fixed-query", "l2-keys"])
def test_bf16_parity_other_agents(name):
    torch.manual_seed(0)
    agent = agents.build(name, (3, 64, 64), 6)
    inputs = random_inputs(6, 3, (3, 64, 64), 6, done_prob=0.1)
    with torch.no_grad():
        fp32, _ = agent(inputs, agent.initial_state(3))
        with precision.autocast("bf16", "cpu"):
            bf16, _ = agent(inputs, agent.initial_state(3))
    assert bf16.policy_logits.dtype == bf16.baseline.dtype == torch.float32
    tv = 0.5 * (torch.softmax(fp32.policy_logits, -1) - torch.softmax(bf16.policy_logits, -1)).abs().sum(-1)
    # the feedforward baseline starts with logits of std ~6 (its encoder feeds the heads directly): 0.053
    # measured, where the others are below 0.004
    assert tv.max().item() < (0.1 if name == "feedforward" else MAX_POLICY_TV)


@needs_bf16
def test_bf16_update_keeps_fp32_master_weights_and_optimizer_state():
    torch.manual_seed(0)
    config = TrainConfig(env="catch", agent="s3ta-small", unroll_length=4, batch_size=2, precision="bf16",
                         mode="serial")
    agent = agents.build("s3ta-small", (3, 64, 64), 3)
    optimizer = make_optimizer(agent, config)
    scheduler = make_scheduler(optimizer, config, 8)
    inputs = random_inputs(5, 2, (3, 64, 64), 3)
    batch = {"obs": inputs.obs, "prev_action": inputs.prev_action, "reward": inputs.prev_reward,
             "done": inputs.done, "action": torch.randint(0, 3, (5, 2)), "behaviour_logits": torch.randn(5, 2, 3)}
    before = [p.detach().clone() for p in agent.parameters()]
    stats = learn(agent, optimizer, scheduler, batch, agent.initial_state(2), config)
    assert all(p.dtype == torch.float32 for p in agent.parameters())
    assert all(v.dtype == torch.float32 for state in optimizer.state.values() for v in state.values()
               if torch.is_tensor(v) and v.is_floating_point())
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.parameters()))
    assert torch.isfinite(torch.tensor(stats["loss/total"]))


def test_cpu_flags_decide_bf16_support(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n")
    old = tmp_path / "old"
    old.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n")
    assert "avx512_bf16" in precision.cpu_flags(x86)
    assert precision.cpu_flags(arm) & precision.NATIVE_BF16_FLAGS == {"bf16"}
    assert not precision.cpu_flags(old) & precision.NATIVE_BF16_FLAGS
    assert precision.cpu_flags(tmp_path / "missing") is None


def test_unsupported_bf16_trains_in_fp32_and_says_so(tmp_path, monkeypatch, capsys):
    """A machine without bf16 trains in fp32 and records it for the attempt, while the run keeps the bf16 it
    asked for (config.json and the checkpoint), so that it trains in bf16 again where resumed with bf16 and
    a grid still counts it as its cell."""
    supported = {"value": False}
    monkeypatch.setattr(precision, "bf16_support",
                        lambda device_type: (supported["value"], "the CPU has no bf16 instructions"))
    seen = []
    real_learn = loop.learn
    monkeypatch.setattr(loop, "learn", lambda *args: seen.append(args[-2].precision) or real_learn(*args))
    config = TrainConfig(env="catch", agent="s3ta-small", total_frames=2 * 4 * 2, unroll_length=4, batch_size=2,
                         mode="serial", precision="bf16", log_interval=0.01)
    run = tmp_path / "run"
    train(config, run)
    printed = capsys.readouterr()
    assert "bf16 was asked for but the CPU has no bf16 instructions: training in fp32" in printed.out + printed.err
    assert seen == ["fp32", "fp32"]
    assert json.loads((run / "config.json").read_text())["precision"] == "bf16"
    assert load_checkpoint(run).config["precision"] == "bf16"
    supported["value"] = True  # the next machine has bf16
    train(config, run, resume=True, total_frames=4 * 4 * 2)
    assert seen == ["fp32", "fp32", "bf16", "bf16"]
    assert [a["precision"] for a in json.loads((run / "attempts.json").read_text())] == ["fp32", "bf16"]


def test_precision_is_validated():
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(precision="fp16")
    with pytest.raises(ValueError, match="precision must be one of"):
        precision.resolve_precision("fp8", torch.device("cpu"))
