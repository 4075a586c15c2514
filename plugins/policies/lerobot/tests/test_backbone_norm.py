"""ACT's backbone from scratch: its batch norms train, and the checkpoint holds them frozen."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from vla.cli import cli


def _norm_kinds(module):
    import torch
    from torchvision.ops.misc import FrozenBatchNorm2d

    kinds = {"frozen": 0, "batch": 0}
    for m in module.modules():
        kinds["frozen"] += isinstance(m, FrozenBatchNorm2d)
        kinds["batch"] += isinstance(m, torch.nn.BatchNorm2d)
    return kinds


@pytest.mark.lerobot
def test_thawed_norms_learn_and_freeze_back_to_what_they_compute():
    pytest.importorskip("torchvision")
    import torch
    import torchvision
    from torchvision.ops.misc import FrozenBatchNorm2d

    from vla_lerobot.backbone_norm import freeze, thaw

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, norm_layer=FrozenBatchNorm2d)
    keys = set(net.state_dict())
    assert thaw(net) == 20 and _norm_kinds(net) == {"frozen": 0, "batch": 20}
    # from scratch the thawed norms start as the identity the frozen ones were, then fit the data
    x = torch.rand(6, 3, 64, 64) * 3 + 1
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    net.train()
    for _ in range(3):
        optimizer.zero_grad()
        net(x).square().mean().backward()
        optimizer.step()
    assert float(net.bn1.running_mean.abs().sum()) > 0
    assert not torch.allclose(net.bn1.weight, torch.ones_like(net.bn1.weight))
    net.eval()
    with torch.no_grad():
        before = net(x)
    assert freeze(net) == 20 and _norm_kinds(net) == {"frozen": 20, "batch": 0}
    with torch.no_grad():
        after = net(x)
    assert torch.allclose(before, after, rtol=1e-4, atol=1e-5)
    # the same names as LeRobot's own backbone: a fresh frozen ResNet loads it strictly
    assert set(net.state_dict()) == keys
    fresh = torchvision.models.resnet18(weights=None, norm_layer=FrozenBatchNorm2d)
    fresh.load_state_dict(net.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.allclose(fresh.eval()(x), after)


def _first_norm_mean(checkpoint):
    from safetensors.torch import load_file

    weights = load_file(str(checkpoint / "model.safetensors"))
    return weights["model.backbone.bn1.running_mean"]


@pytest.mark.lerobot
def test_vla_train_trains_acts_backbone_norms_from_scratch_and_serves_the_checkpoint(lerobot_dataset, tmp_path,
                                                                                      policy_helpers):
    pytest.importorskip("lerobot")
    from vla_lerobot.backend import LeRobotBackend
    from vla_lerobot.config import LeRobotPolicyConfig

    args = ["train", "--policy", "act", "--dataset", str(lerobot_dataset), "--steps", "2", "--batch-size", "4",
            *policy_helpers.cli_options(policy_helpers.TINY_ACT)]
    result = CliRunner().invoke(cli, [*args, "--output", str(tmp_path / "on")])
    assert result.exit_code == 0, result.output
    assert "batch norms train too" in " ".join(result.output.split())
    # the norms saw the frames: their running means left zero
    assert float(_first_norm_mean(tmp_path / "on" / "pretrained_model").abs().sum()) > 0
    config = json.loads((tmp_path / "on" / "pretrained_model" / "config.json").read_text())
    assert config["pretrained_backbone_weights"] is None
    backend = LeRobotBackend(LeRobotPolicyConfig(path=str(tmp_path / "on"), device="cpu"))
    assert backend.infer([policy_helpers.observation()])[0].shape == (10, 6)
    assert _norm_kinds(backend._policy.model.backbone) == {"frozen": 20, "batch": 0}  # LeRobot's own model

    # the lab can keep LeRobot's frozen norms; from scratch they then stay the identity
    lab = tmp_path / "vla.yaml"
    lab.write_text("plugins:\n  act:\n    train_backbone_norm: false\n")
    result = CliRunner().invoke(cli, ["--config", str(lab), *args, "--output", str(tmp_path / "off")])
    assert result.exit_code == 0, result.output
    assert "batch norms train too" not in result.output
    assert float(_first_norm_mean(tmp_path / "off" / "pretrained_model").abs().sum()) == 0
