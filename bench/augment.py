"""Training augmentation cost per sample: the whole `train_augment` pipeline and its elastic step,
torchvision's `v2.ElasticTransform` against `hccr.augment.ElasticWarp`, measured in one run.

On a CPU the DataLoader workers augment while the model trains on the same cores, so every
millisecond here is taken from training. Samples are read from an LMDB (any `hccr-data synth`
output); 1 torch thread, as in a DataLoader worker.

    python bench/augment.py data/gb1-val.lmdb [--samples 500]
"""

from __future__ import annotations

import argparse
import time

import torch
from torchvision.transforms import v2

from hccr.augment import ElasticWarp, elastic_params, train_augment
from hccr.dataset import LmdbDataset


def ms_per_sample(transform, images: list[torch.Tensor]) -> float:
    transform(images[0])
    start = time.perf_counter()
    for x in images:
        transform(x)
    return (time.perf_counter() - start) / len(images) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("lmdb")
    parser.add_argument("--samples", type=int, default=500)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    ds = LmdbDataset(args.lmdb)
    step = max(1, len(ds) // args.samples)
    images = [torch.from_numpy(ds.read(i)[0].copy()).unsqueeze(0) for i in range(0, len(ds), step)]
    size = ds.image_size
    alpha, sigma = elastic_params(size)  # train_augment's, strength 1
    before = train_augment(size)  # the same pipeline with torchvision's elastic step
    before.transforms[1].transforms[0] = v2.ElasticTransform(alpha=alpha, sigma=sigma)
    rows = {
        "train_augment(strength 1), whole pipeline": ms_per_sample(train_augment(size), images),
        "the same with v2.ElasticTransform": ms_per_sample(before, images),
        f"v2.ElasticTransform(alpha={alpha:g}, sigma={sigma:g})": ms_per_sample(
            v2.ElasticTransform(alpha=alpha, sigma=sigma), images
        ),
        f"ElasticWarp(alpha={alpha:g}, sigma={sigma:g})": ms_per_sample(
            ElasticWarp(alpha=alpha, sigma=sigma), images
        ),
    }
    print(f"{len(images)} samples of {size}x{size} from {args.lmdb}; 1 torch thread")
    print("| transform | ms / sample |")
    print("| --- | ---: |")
    for name, ms in rows.items():
        print(f"| {name} | {ms:.3f} |")
    warp = ElasticWarp(alpha=alpha, sigma=sigma)
    shift = sum(float(abs(d).mean()) for _ in range(100) for d in warp.displacement(size, size))
    print(f"ElasticWarp's mean |pixel shift| per axis: {shift / 200:.3f} px")
    ms = list(rows.values())
    print(f"pipeline before / now: {ms[1] / ms[0]:.1f}x; ElasticTransform / ElasticWarp: "
          f"{ms[2] / ms[3]:.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
