"""Datasets, transforms and loaders; ``avfusion.data.avdigits`` is the embedded AV-Digits benchmark."""
