"""LmdbDataset through DataLoader workers, and the training augmentation."""

from __future__ import annotations

import pickle
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from hccr.augment import ElasticWarp, train_augment
from hccr.charset import Charset
from hccr.dataset import LmdbDataset
from hccr.lmdb_format import LmdbFormatError, LmdbWriter, open_lmdb, read_meta, sample_key
from hccr.preprocess import NormConfig


def _make_lmdb(path, n: int = 50, size: int = 32):
    rng = np.random.default_rng(0)
    cs = Charset("一二三四五")
    images = []
    with LmdbWriter(path) as w:
        for i in range(n):
            img = np.zeros((size, size), np.uint8)
            img[4:-4, rng.integers(4, size - 8) :][:, :3] = 255
            images.append(img)
            w.add(img, i % len(cs), writer=7)
        w.finish({
            "charset": list(cs.chars), "num_classes": len(cs), "image_size": size,
            "norm": NormConfig(size=size).to_dict(), "sources": {},
        })  # fmt: skip
    return images


@pytest.mark.parametrize("workers", [0, 2])
def test_dataloader_reads_every_sample_in_workers(tmp_path, workers):
    images = _make_lmdb(tmp_path / "d.lmdb")
    ds = LmdbDataset(tmp_path / "d.lmdb")
    ds.read(0)  # opened in the parent before workers fork: each worker must reopen
    pickle.dumps(ds)  # picklable for spawn: no open environment inside
    loader = DataLoader(ds, batch_size=8, num_workers=workers)
    got = torch.cat([x for x, _ in loader])
    labels = torch.cat([y for _, y in loader])
    assert got.dtype == torch.uint8 and got.shape == (50, 1, 32, 32)
    np.testing.assert_array_equal(got[:, 0].numpy(), np.stack(images))
    assert labels.tolist() == [i % 5 for i in range(50)] == ds.labels()
    np.testing.assert_array_equal(ds.read(49)[0], images[49])


def test_batched_read_matches_single_reads(tmp_path):
    _make_lmdb(tmp_path / "d.lmdb")
    ds = LmdbDataset(tmp_path / "d.lmdb")
    indices = [49, 3, 3, 0, 17]
    batch = ds.__getitems__(indices)  # what DataLoader calls with a batch of indices
    for (x, label), i in zip(batch, indices, strict=True):
        y, expected = ds[i]
        assert torch.equal(x, y) and x.shape == (1, 32, 32) and label == expected
    with pytest.raises(IndexError):
        ds.__getitems__([0, 50])


def test_values_are_plain_zlib_streams(tmp_path):
    # the layout promises zlib values, so any reader (zlib in Python, C, Java) can decode them
    images = _make_lmdb(tmp_path / "d.lmdb")
    with open_lmdb(tmp_path / "d.lmdb").begin() as txn:
        for i in (0, 49):
            value = txn.get(sample_key(i))
            assert struct.unpack_from("<ii", value) == (i % 5, 7)
            assert zlib.decompress(value[8:]) == images[i].tobytes()


def test_meta_and_norm_round_trip(tmp_path):
    _make_lmdb(tmp_path / "d.lmdb")
    ds = LmdbDataset(tmp_path / "d.lmdb")
    assert ds.norm == NormConfig(size=32) and ds.image_size == 32 and len(ds.charset) == 5
    assert read_meta(tmp_path / "d.lmdb")["num_samples"] == 50
    with pytest.raises(IndexError):
        ds.read(50)


def test_writer_refuses_incomplete_meta_and_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="metadata lacks"), LmdbWriter(tmp_path / "x.lmdb") as w:
        w.add(np.zeros((8, 8), np.uint8), 0)
        w.finish({"charset": ["一"]})
    assert list(tmp_path.iterdir()) == []


def test_not_an_lmdb_is_a_clear_error(tmp_path):
    with pytest.raises(LmdbFormatError, match="not an LMDB folder"):
        LmdbDataset(tmp_path)


def test_augmentation_keeps_shape_and_dtype_and_varies():
    torch.manual_seed(0)
    x = torch.zeros(1, 64, 64, dtype=torch.uint8)
    x[0, 20:44, 30:34] = 255
    aug = train_augment(64)
    outs = [aug(x) for _ in range(8)]
    assert all(o.shape == x.shape and o.dtype == torch.uint8 for o in outs)
    assert any(not torch.equal(o, x) for o in outs)
    assert torch.equal(train_augment(64, strength=0)(x), x)


@pytest.mark.parametrize("alpha, sigma", [(8.0, 4.0), (40.0, 3.0)])
def test_elastic_warp_matches_torchvision_elastic_transform(alpha, sigma):
    # the same random field from the same seed, computed with OpenCV: equal up to rounding
    x = torch.zeros(1, 64, 64, dtype=torch.uint8)
    x[0, 10:54, 30:36] = 255
    x[0, 28:33, 8:56] = 200
    for seed in range(5):
        torch.manual_seed(seed)
        want = v2.ElasticTransform(alpha=alpha, sigma=sigma)(x)
        torch.manual_seed(seed)
        got = ElasticWarp(alpha=alpha, sigma=sigma)(x)
        assert got.shape == x.shape and got.dtype == torch.uint8
        assert (got.int() - want.int()).abs().max() <= 1
    assert not torch.equal(got, x)


def test_dataset_imports_no_torchvision():
    # the augmentation (torchvision) is training-only: reading an LMDB must not pay for it
    code = "import sys, hccr.dataset; print('torchvision' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
