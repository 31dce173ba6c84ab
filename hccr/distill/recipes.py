"""Knowledge-transfer recipe `hccr distill`: a student trained from scratch (or from an --init
bundle) against a trained teacher (logit KD, Hinton et al. 2015; logit + hint KD, Romero et al.
2015), or two networks trained together from scratch (Deep Mutual Learning, Zhang et al. 2018).

The run folder it writes is also a bundle (see hccr.fit.fit). Compression recipes, which
fine-tune a compressed model with knowledge transfer from the original, are hccr.compress.recipes.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from torch import nn

from hccr.bundle import load_bundle_info, resolve_model
from hccr.config import TrainConfig
from hccr.distill.objectives import DistillConfig, build_objective
from hccr.distill.teacher_check import check_is_teacher, check_teacher_fits
from hccr.fit import fit
from hccr.run_folder import RunSpec
from hccr.train import build_model, load_datasets, load_matching_bundle, prepare, run_record


def run_distill(
    cfg: TrainConfig,
    dcfg: DistillConfig,
    out: str | Path,
    *,
    teacher: str | None = None,
    peer_arch: str | None = None,
    peer_kwargs: dict[str, Any] | None = None,
    resume: bool = False,
    command: str | None = None,
) -> dict[str, Any]:
    """`hccr distill`: student cfg.arch (or the cfg.init bundle) learns from a teacher bundle, or
    mutually with a peer.

    In mutual mode the peer (peer_arch, default the teacher bundle's arch, else teacher_cnn)
    starts from scratch like the student; a teacher bundle, if given, only names its
    architecture. The peer's best state is saved as a bundle in RUN_DIR/peer.
    """
    from hccr.nets import create_model, model_kwargs

    device = prepare(cfg)
    train_set, val_set = load_datasets(cfg)
    charset = train_set.charset
    n = len(charset)
    if dcfg.kd_mode != "mutual" and not teacher:
        raise ValueError(f"--teacher is required for --kd-mode {dcfg.kd_mode}")
    student, arch, start = build_model(cfg, train_set, out if resume else None)  # checks --init
    teacher_info = None
    if dcfg.kd_mode != "mutual":
        # bundle.json only: a teacher that does not fit fails before its weights are read
        init_info = load_bundle_info(resolve_model(cfg.init)) if cfg.init and not resume else None
        teacher_info = load_bundle_info(resolve_model(teacher))
        check_teacher_fits(teacher_info, cfg.data, charset, train_set.norm, init_info)
    more: dict[str, Any] = {"distill": asdict(dcfg), **start}
    other: nn.Module
    if teacher_info is None:
        bundle = load_matching_bundle(teacher, train_set, cfg.data, widen=True) if teacher else None
        peer_arch = peer_arch or (bundle.arch if bundle else "teacher_cnn")
        kwargs = dict(peer_kwargs or (bundle.kwargs if bundle and bundle.arch == peer_arch else {}))
        kwargs.pop("num_classes", None)
        kwargs["in_chans"] = train_set.channels  # the peer reads what the student reads
        other = create_model(peer_arch, num_classes=n, **kwargs)
        peer_kwargs = model_kwargs(other)
        more.update(peer_arch=peer_arch, peer_kwargs=peer_kwargs)
    else:
        # an image teacher may teach an online student: it is given the ink channel
        bundle = load_matching_bundle(str(teacher_info.path), train_set, cfg.data, widen=True)
        other = bundle.model
        cost = check_is_teacher(bundle.path, other, student, train_set.image_size)
        more.update(
            teacher=str(bundle.path),
            teacher_arch=bundle.arch,
            teacher_metrics=bundle.metrics,
            **cost,
        )
    objective = build_objective(
        dcfg,
        student.to(device),
        other.to(device),
        image_size=train_set.image_size,
        label_smoothing=cfg.label_smoothing,
    )
    spec = RunSpec(
        arch=arch,
        kwargs=model_kwargs(student),
        charset=charset,
        norm=train_set.norm,
        trajectory=train_set.trajectory,
        record=run_record("distill", command, cfg, **more),
        peer_arch=peer_arch if dcfg.kd_mode == "mutual" else None,
        peer_kwargs=peer_kwargs,
    )
    return fit(objective, cfg, out, spec, train_set, val_set, resume=resume)
