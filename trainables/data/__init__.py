"""Data sets: the synthetic renderers with ground truth, and torchvision's loaders."""
from trainables.data.registry import DataRequest, build_dataset, dataset_names, get_entry

__all__ = ["DataRequest", "build_dataset", "dataset_names", "get_entry"]
