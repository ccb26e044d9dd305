"""The data set a run trains on, as an MLflow run input: the runs table's Dataset column and its
filter show it as ``name (digest)``, and the same digest means the same images.

The digest names the exact data: for a synthetic set its request (name, split, size, channels,
length, seed); for a real one the same plus every file under data_root (path, size, mtime), so
that changed files give a new digest. These are the inputs that key the data cache's file too.
"""
import hashlib
import json
import os

DIGEST_CHARS = 10   # MLflow suggests 8-10 characters and allows 36
RACE_RETRIES = 5    # a lost data set insert, made again (see log_dataset)


def log_dataset(uri, run_id, cfg):
    """Log the run's training set as its input (context ``training``). MLflow's store looks the data
    set up and inserts it in one transaction, so trials that log a new data set at the same moment
    can both insert it; the loser's call fails on the data set table's UNIQUE key and is made again,
    when it finds the winner's row and adds only this run's input."""
    import time

    from trainables import store

    inp = dataset_input(cfg)
    for attempt in range(RACE_RETRIES + 1):
        try:
            store.client(uri).log_inputs(run_id, datasets=[inp])
            return
        except Exception as err:  # noqa: BLE001 - only the lost insert race is made again
            if attempt == RACE_RETRIES or not _lost_insert_race(err):
                raise
        time.sleep(0.05 * (attempt + 1))


def has_training_input(run):
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    return any(tag.key == MLFLOW_DATASET_CONTEXT and tag.value == "training"
               for inp in run.inputs.dataset_inputs for tag in inp.tags)


def _lost_insert_race(err):
    text = str(err)
    return "UNIQUE constraint failed: datasets." in text or ("datasets" in text and "duplicate key" in text)


def dataset_input(cfg):
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    from trainables.data import get_entry
    from trainables.loop import data_request

    r = data_request(cfg)
    profile = {"image_size": r.image_size, "channels": r.nc, "split": r.split}
    if get_entry(r.dataset).synthetic:
        # Rendered by code: MLflow's "code" source, with what the renderer was asked for.
        source_type, source = "code", {"tags": {"renderer": r.dataset, "length": r.dataset_size, "seed": r.data_seed}}
        profile["images"] = r.dataset_size
    else:
        source_type, source = "local", {"uri": os.path.abspath(r.data_root)}
    dataset = Dataset(name=f"{r.dataset}-{r.image_size}px", digest=dataset_digest(r), source_type=source_type,
                      source=json.dumps(source), profile=json.dumps(profile))
    return DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, "training")])


def dataset_digest(request):
    """The data's fingerprint (a DataRequest in, hex characters out)."""
    from trainables.data import get_entry
    from trainables.data.cache import hash_tree

    r = request
    h = hashlib.sha256(f"{r.dataset}\0{r.split}\0{r.image_size}\0{r.nc}".encode())
    if get_entry(r.dataset).synthetic:
        h.update(f"\0{r.dataset_size}\0{r.data_seed}".encode())
    else:
        hash_tree(h, r.data_root)
    return h.hexdigest()[:DIGEST_CHARS]
