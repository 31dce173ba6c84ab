"""Knowledge-transfer losses: pure functions, each citing its paper.

- kd_loss: G. Hinton, O. Vinyals, J. Dean, "Distilling the Knowledge in a Neural Network",
  arXiv:1503.02531 (2015).
- hint_loss + HintAdapter: A. Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015,
  arXiv:1412.6550 (regressor on the student's hint layer, L2 to the teacher's guided layer).
- mutual_kd_loss: Y. Zhang, T. Xiang, T. M. Hospedales, H. Lu, "Deep Mutual Learning",
  CVPR 2018, arXiv:1706.00384.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Soft-target loss of Hinton et al. 2015: KL(p_teacher || p_student) at temperature T."""
    # float32 even under bf16 autocast: bf16 log-probabilities can make the KL negative
    log_p_s = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    # x T**2 keeps the gradient magnitude independent of T, so alpha means the same at any T
    return F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean") * temperature**2


def mutual_kd_loss(logits: Tensor, peer_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Deep Mutual Learning (Zhang et al. 2018): KL(p_peer || p_self), the peer treated as fixed.

    The paper uses T = 1; a higher T works as in kd_loss. The peer's distribution is detached,
    so each network only learns from (never pushes on) the other through this term.
    """
    return kd_loss(logits, peer_logits.detach(), temperature)


def hint_loss(student_feature: Tensor, teacher_feature: Tensor) -> Tensor:
    """FitNets hint loss (Romero et al. 2015): mean squared error to the teacher's feature map.

    The student feature must already be regressed to the teacher's shape (see HintAdapter).
    The paper uses 1/2 * ||.||^2 summed; the mean keeps the weight independent of map size.
    """
    if student_feature.shape != teacher_feature.shape:
        raise ValueError(
            f"hint shapes differ: student {tuple(student_feature.shape)} vs teacher "
            f"{tuple(teacher_feature.shape)}"
        )
    return F.mse_loss(student_feature.float(), teacher_feature.detach().float())


class HintAdapter(nn.Module):
    """FitNets regressor: a 1x1 conv + BN from the student's channels to the teacher's.

    When the two maps differ in spatial size, the student's map is resized (adaptive average
    pooling down, bilinear up) to the teacher's, so any stage pair can be matched.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        x = self.bn(self.proj(x))  # (B, C_teacher, H_s, W_s)
        if tuple(x.shape[-2:]) == tuple(size):
            return x
        if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
            return F.adaptive_avg_pool2d(x, size)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def build_adapters(
    student_shapes: list[tuple[int, ...]], teacher_shapes: list[tuple[int, ...]]
) -> nn.ModuleList:
    """One HintAdapter per stage pair, from the (B, C, H, W) shapes of forward_stages outputs."""
    if len(student_shapes) != len(teacher_shapes):
        raise ValueError(
            f"student has {len(student_shapes)} stages, teacher {len(teacher_shapes)}; "
            "feature KD pairs stages one to one"
        )
    return nn.ModuleList(
        HintAdapter(s[1], t[1]) for s, t in zip(student_shapes, teacher_shapes, strict=True)
    )
