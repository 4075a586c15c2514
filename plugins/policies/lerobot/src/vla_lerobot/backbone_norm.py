"""Trainable batch norm for a ResNet backbone that trains from scratch, frozen again for saving.

LeRobot's ACT builds its ResNet with ``FrozenBatchNorm2d``: right for the ImageNet weights it
was designed around (their statistics are kept), wrong from scratch. A frozen norm that was
never fitted is the identity (mean 0, variance 1, scale 1, shift 0), so a from-scratch ACT
trains a ResNet-18 with no normalisation at all: activations grow block by block, the image
features barely carry where things are, and the policy learns the average trajectory of its
data (here: the arm went to the mean grasp pose, not to the cube).

``thaw`` swaps each ``FrozenBatchNorm2d`` for a ``BatchNorm2d`` that starts from its buffers and
learns like any batch norm (batch statistics while training, running ones after). ``freeze``
swaps them back, each carrying its learned scale and shift and its running statistics: a
frozen norm computes exactly what the batch norm computes in eval mode, and its buffers have
the same names, so the checkpoint is a plain LeRobot ACT that ``from_pretrained`` loads as is.
"""

from __future__ import annotations


def _swap(module, make, kind) -> int:
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, kind):
            setattr(module, name, make(child))
            count += 1
        else:
            count += _swap(child, make, kind)
    return count


def thaw(module) -> int:
    """Replace every FrozenBatchNorm2d under ``module`` with a trainable BatchNorm2d starting from
    its values; returns how many were replaced."""
    import torch
    from torchvision.ops.misc import FrozenBatchNorm2d

    def make(frozen):
        bn = torch.nn.BatchNorm2d(frozen.weight.shape[0], eps=frozen.eps)
        with torch.no_grad():
            bn.weight.copy_(frozen.weight)
            bn.bias.copy_(frozen.bias)
            bn.running_mean.copy_(frozen.running_mean)
            bn.running_var.copy_(frozen.running_var)
        return bn.to(frozen.weight.device)

    return _swap(module, make, FrozenBatchNorm2d)


def freeze(module) -> int:
    """Replace every BatchNorm2d under ``module`` with the FrozenBatchNorm2d computing what it
    computes in eval mode; returns how many were replaced."""
    import torch
    from torchvision.ops.misc import FrozenBatchNorm2d

    def make(bn):
        frozen = FrozenBatchNorm2d(bn.num_features, eps=bn.eps)
        with torch.no_grad():
            frozen.weight.copy_(bn.weight if bn.weight is not None else torch.ones(bn.num_features))
            frozen.bias.copy_(bn.bias if bn.bias is not None else torch.zeros(bn.num_features))
            frozen.running_mean.copy_(bn.running_mean)
            frozen.running_var.copy_(bn.running_var)
        return frozen.to(bn.running_mean.device)

    return _swap(module, make, torch.nn.BatchNorm2d)
