"""bintut.data.sets: the one description of each data set, and the modules that read it."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from bintut.config import DATA_NAMES, TrainConfig
from bintut.data import choice, cifar100, fashion_mnist, images
from bintut.data.images import DataNotFoundError
from bintut.data.sets import CIFAR100, DATA_SETS, FASHION_MNIST, SYNTHETIC, DataSet, data_root, data_set


def test_the_table_names_every_data_set_a_config_may_name_with_the_parsers_titles():
    """config.DATA_NAMES (the torch-free parser's names, an idea module that may not import data) agrees."""
    assert {name: s.title for name, s in DATA_SETS.items()} == DATA_NAMES
    for name in DATA_SETS:
        assert TrainConfig(data=name).data == name
    with pytest.raises(ValueError, match=r"data must be one of \('cifar100', 'synthetic', 'fashion-mnist'\)"):
        data_set("mnist")


@pytest.mark.parametrize("name", sorted(DATA_SETS))
def test_each_description_is_complete_and_frozen(name):
    s = data_set(name)
    assert s.name == name and s.classes >= 2 and (s.image_size, s.channels) == (32, 3)
    assert len(s.mean) == len(s.std) == s.channels
    assert all(0 < m < 1 for m in s.mean) and all(0 < v < 1 for v in s.std)
    assert s.normalization == (s.mean, s.std)
    assert s.folders and s.stored and s.loader.count(":") == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.classes = 3  # type: ignore[misc]


def test_the_loaders_and_choice_read_their_facts_from_the_table():
    assert (images.CIFAR100_MEAN, images.CIFAR100_STD, images.NUM_CLASSES) == (CIFAR100.mean, CIFAR100.std, 100)
    assert (fashion_mnist.FASHION_MEAN, fashion_mnist.FASHION_STD) == FASHION_MNIST.normalization
    assert fashion_mnist.FASHION_CLASSES == FASHION_MNIST.classes == 10
    assert fashion_mnist.FASHION_DEBIAN == FASHION_MNIST.system_folder == Path("/usr/share/datasets/fashion-mnist")
    assert fashion_mnist.FASHION_FOLDER == "FashionMNIST" and fashion_mnist.FASHION_PAD == 2
    assert cifar100.FOLDER == "cifar-100-python"
    assert choice.DATA_CLASSES == {"cifar100": 100, "synthetic": 100, "fashion-mnist": 10}
    assert choice.DATA_NORMALIZATION["synthetic"] == CIFAR100.normalization == SYNTHETIC.normalization
    assert choice.DATA_NORMALIZATION["fashion-mnist"] == ((0.2190,) * 3, (0.3318,) * 3)
    assert [choice.num_classes(n) for n in DATA_SETS] == [s.classes for s in DATA_SETS.values()]
    assert choice.data_words(TrainConfig(data="fashion-mnist", train_subset=20)) == "Fashion-MNIST (20 training images)"


def test_places_follow_the_data_root_the_environment_and_the_system_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("BINTUT_DATA", raising=False)
    assert data_root() == Path("data") and images.data_root is data_root
    assert CIFAR100.places() == [Path("data/cifar-100-python")]
    monkeypatch.setenv("BINTUT_DATA", str(tmp_path))
    assert FASHION_MNIST.places() == [tmp_path / "FashionMNIST/raw", Path("/usr/share/datasets/fashion-mnist")]
    assert FASHION_MNIST.places(tmp_path / "other")[0] == tmp_path / "other/FashionMNIST/raw"
    assert SYNTHETIC.is_here() and not CIFAR100.is_here(tmp_path)


def test_load_goes_through_the_named_loader(tmp_path):
    root = cifar100.write_synthetic_cifar100(tmp_path / "synth", 8, 4, seed=3)
    test = SYNTHETIC.load(root, train=False)
    assert len(test) == 4 and len(test.classes) == SYNTHETIC.classes
    assert choice.load_images("synthetic", root, train=True).images.shape == (8, 32, 32, 3)
    with pytest.raises(DataNotFoundError, match="CIFAR-100 was not found in"):
        CIFAR100.load(tmp_path / "empty", train=True)


def test_a_new_data_set_needs_one_entry(tmp_path):
    """What a maintainer adds: one DataSet whose loader is any module:function."""
    extra = DataSet(name="tiny", title="Tiny", classes=2, mean=(0.5,) * 3, std=(0.25,) * 3, stored="none",
                    folders=("tiny",), loader="bintut.data.cifar100:load_cifar100")
    assert extra.places(tmp_path) == [tmp_path / "tiny"] and extra.is_here()


def test_the_table_imports_without_torch():
    code = "import sys, bintut.data.sets; print(sorted({'torch', 'torchvision', 'numpy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]"
