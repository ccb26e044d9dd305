"""The installed versions that shape a run's numbers, and the lock they should match.

Every run logs them as params (``torch_version``, ``torchvision_version``, ``numpy_version``,
``lock_sha``): kernels, initialisers and resampling change between releases, so the same seed gives
another curve under another torch. ``lock_sha`` is the SHA-256 (16 hex digits) of the
``requirements.lock`` this checkout installs from, or ``unlocked`` when an installed package's version
differs from it (the tag ``lock_drift`` then names them), or ``none`` for an install without the lock.
"""
import hashlib
import importlib
import importlib.metadata
import re
from pathlib import Path

LOCK_FILE = Path(__file__).resolve().parent.parent / "requirements.lock"
SHAPING = ("torch", "torchvision", "numpy")   # the packages whose release changes a run's numbers
DIGEST_HEX = 16


def _canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(path=LOCK_FILE):
    """{package: version} of the lock's ``name==version`` lines."""
    out = {}
    for line in Path(path).read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line)
        if m:
            out[_canonical(m.group(1))] = m.group(2)
    return out


def installed_versions():
    """{package: version} of every distribution this interpreter sees."""
    return {_canonical(d.metadata["Name"]): d.version for d in importlib.metadata.distributions() if d.metadata["Name"]}


def lock_drift(path=LOCK_FILE):
    """The locked packages installed at another version (or missing): ``name installed!=locked`` each."""
    have = installed_versions()
    return [f"{k} {have.get(k, 'missing')}!={v}" for k, v in sorted(locked_versions(path).items()) if have.get(k) != v]


def software_params(path=LOCK_FILE):
    """(params, tags) for a run: the shaping versions and the lock's digest; ``lock_drift`` when it differs."""
    params = {f"{name}_version": importlib.import_module(name).__version__ for name in SHAPING}   # torch's has its build
    tags = {}
    path = Path(path)
    if not path.is_file():
        params["lock_sha"] = "none"
        return params, tags
    drift = lock_drift(path)
    params["lock_sha"] = "unlocked" if drift else hashlib.sha256(path.read_bytes()).hexdigest()[:DIGEST_HEX]
    if drift:
        tags["lock_drift"] = ", ".join(drift)[:4000]
    return params, tags
