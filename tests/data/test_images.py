"""bintut.data.images: where the data root is."""


from bintut.data.cifar100 import load_cifar100, write_synthetic_cifar100


def test_data_root_from_environment(tmp_path, monkeypatch):
    write_synthetic_cifar100(tmp_path, 12, 10)
    monkeypatch.setenv("BINTUT_DATA", str(tmp_path))
    assert len(load_cifar100()) == 12
