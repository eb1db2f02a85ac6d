"""The old import path `covidxray.data.loader` still gives the same objects."""

from __future__ import annotations


def test_old_imports_resolve_to_the_new_homes() -> None:
    import covidxray
    from covidxray.data import catalog, dataset, loader, pipeline

    assert loader.load_dataset is catalog.load_dataset is covidxray.load_dataset
    assert loader.XrayDataset is dataset.XrayDataset is covidxray.XrayDataset
    assert loader.NO_CLASS == "no class for finding "
    assert loader.balanced_class_weights is pipeline.balanced_class_weights
    assert loader.with_transform is pipeline.with_transform
    assert loader.source_name is catalog.source_name
