"""bintut.data.transforms: subsets and the training transform."""


import pytest
import torch

from bintut.data.cifar100 import load_cifar100, write_synthetic_cifar100
from bintut.data.transforms import ImageDataset, train_transform


def test_subset_and_transforms(tmp_path):
    s = load_cifar100(write_synthetic_cifar100(tmp_path, 64, 10))
    sub = s.subset(16, seed=0)
    assert len(sub) == 16 and s.subset(None) is s
    with pytest.raises(ValueError, match="subset size"):
        s.subset(0)
    for augment in ("reference", "basic", "none"):
        ds = ImageDataset(sub, train_transform(augment))
        x, y = ds[0]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and isinstance(y, int)
    with pytest.raises(ValueError, match="augment must be one of"):
        train_transform("heavy")
