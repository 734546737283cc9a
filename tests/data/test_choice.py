"""bintut.data.choice: which images a run uses, and what an export's golden test falls back to."""



def test_golden_images_from_unreadable_synthetic_data_fall_back_to_seeded_ones(smoke_run, monkeypatch):
    """2d: a synthetic run whose data folder is read-only: regenerating its data was an OSError traceback."""
    from bintut.data import choice

    def read_only(cfg, n):
        raise PermissionError(13, "Permission denied", "data/synthetic-640-100-0")

    monkeypatch.setattr(choice, "test_images", read_only)
    images, origin = choice.golden_images(smoke_run.config, 3)
    assert images.shape == (3, 3, 32, 32) and "seeded random images (the run's data cannot be read" in origin
