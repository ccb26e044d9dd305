"""Damaged data files, refused in one line that names the file and what is wrong.

Checked when a data set is built (before Ray starts): an LMDB shorter than its meta page says
(reading it would end the process with SIGBUS: LMDB maps the file) or not an LMDB, CelebA's
annotation files, CIFAR-10's pickles (named when torchvision cannot read them). Checked when an
item is decoded, which the data cache does for every image before Ray starts: an image that
fails to decode (cut short after its header, say) is named by its file, or by its LMDB and key.
"""
import os
import pickle
import struct

from torch.utils.data import Dataset

from trainables.errors import UserError, first_line


class DataFileError(UserError):
    """A damaged data file. A DataLoader worker's exception reaches the main process as its class
    called with the worker's whole traceback; the message keeps the traceback's last line."""

    def __init__(self, message):
        last = message.strip().splitlines()[-1] if message.strip() else message
        super().__init__(last.split(f"{type(self).__name__}: ", 1)[-1])


# LMDB's meta page (lmdb/mdb.c, 64-bit): a 16-byte page header, then MDB_meta: magic, version,
# address, map size, two 48-byte MDB_db records (the first one's leading uint32 is the page size),
# the last page number used, the transaction id. Pages 0 and 1 are meta pages; the newer one counts.
LMDB_MAGIC = 0xBEEFC0DE
META = struct.Struct("<16xII8x8xI44x48xQQ")   # magic, version, page size, last page, txn id


def check_lmdb(path):
    """Refuse the LMDB directory ``path`` when its data.mdb is not an LMDB or is cut short. Read
    from the file, not through lmdb: a process may open an environment only once."""
    data = os.path.join(path, "data.mdb")
    with open(data, "rb") as f:
        head = f.read(META.size)
        if len(head) < META.size or META.unpack(head)[0] != LMDB_MAGIC:
            raise DataFileError(f"{data}: not an LMDB data file (no LMDB meta page at its start)")
        page_size = META.unpack(head)[2]
        f.seek(page_size)
        second = f.read(META.size)
    metas = [META.unpack(m) for m in (head, second) if len(m) == META.size and META.unpack(m)[0] == LMDB_MAGIC]
    pages = max(metas, key=lambda m: m[4])[3] + 1
    held = os.path.getsize(data)
    if held < pages * page_size:
        raise DataFileError(f"{data}: truncated: its meta page says {pages} pages of {page_size} bytes "
                            f"({pages * page_size} bytes), the file holds {held}")


# CelebA's annotation files: (header lines, fields a row); a header's first line is the row count.
CELEBA_ANNOTATIONS = {"list_attr_celeba.txt": (2, 41), "list_eval_partition.txt": (0, 2),
                      "identity_CelebA.txt": (0, 2), "list_bbox_celeba.txt": (2, 5),
                      "list_landmarks_align_celeba.txt": (2, 11)}


def check_celeba_annotations(folder):
    """Refuse an annotation file whose rows are cut short, or fewer than its header says."""
    for name, (header, fields) in CELEBA_ANNOTATIONS.items():
        path = os.path.join(folder, name)
        with open(path) as f:
            lines = [line for line in f.read().splitlines() if line.strip()]
        rows = lines[header:]
        for number, row in enumerate(rows, header + 1):
            if len(row.split()) != fields:
                raise DataFileError(f"{path}: line {number}: {len(row.split())} fields, expected {fields}")
        if header and (not lines[0].strip().isdigit() or int(lines[0]) != len(rows)):
            raise DataFileError(f"{path}: truncated: its first line says {lines[0].strip()!r} rows, "
                                f"the file holds {len(rows)}")


def unreadable_pickle(paths):
    """The first of ``paths`` that does not unpickle, with why; None if all do (torchvision's
    CIFAR-10 reads them in a loop that does not say which one failed)."""
    for path in paths:
        try:
            with open(path, "rb") as f:
                pickle.load(f, encoding="latin1")   # as torchvision loads them
        except Exception as err:  # noqa: BLE001 - a damaged pickle raises any of a dozen types
            return path, err
    return None


class NamedItems(Dataset):
    """``dataset``'s items; one whose image fails to decode raises one line naming it (``name(index)``)."""

    def __init__(self, dataset, name):
        self.dataset, self.name = dataset, name

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        try:
            return self.dataset[index]
        except (OSError, SyntaxError, ValueError) as err:   # PIL's errors for a damaged image
            raise DataFileError(f"{self.name(index)}: cannot decode the image: {first_line(err)}") from err
