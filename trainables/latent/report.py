"""What an experiment hands back: numbers (a JSON), figures (PNGs) and arrays (``.npy``)."""
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Report:
    numbers: dict
    images: dict = field(default_factory=dict)    # file stem -> PIL image
    arrays: dict = field(default_factory=dict)    # file stem -> numpy array

    def write(self, folder, name):
        """Write ``<name>.json``, the PNGs and the arrays into ``folder``; return the paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = [folder / f"{name}.json"]
        paths[0].write_text(json.dumps(self.numbers, indent=2, default=_plain) + "\n")
        for stem, image in self.images.items():
            paths.append(folder / f"{stem}.png")
            image.save(paths[-1])
        for stem, array in self.arrays.items():
            paths.append(folder / f"{stem}.npy")
            np.save(paths[-1], np.asarray(array))
        return paths


def _plain(value):
    """numpy and torch scalars as plain Python numbers in the JSON."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
