"""Datasets: the catalog, safe image decoding, import, trash, the decoded-array cache, streaming, augmentation."""
