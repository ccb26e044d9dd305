"""``dcgan-lab evaluator train``: train a domain evaluator once and save it as a new frozen version.
``dcgan-lab evaluator list``: the frozen evaluators of a folder, each file's digest checked."""
import json

from trainables.errors import UserError, bad_value


def add_subparser(subparsers):
    ev = subparsers.add_parser("evaluator", help="the frozen domain evaluators behind fd_faces, fd_fashion, ...")
    verbs = ev.add_subparsers(dest="evaluator_command", required=True)
    t = verbs.add_parser("train", help="train a data set's evaluator and add it as a new version (never overwrites)")
    t.add_argument("--dataset", required=True, help="a data set with a registered evaluator")
    t.add_argument("--image-size", "--size", dest="image_size", type=int, required=True, help="image side in pixels")
    t.add_argument("--nc", type=int, default=3, help="image channels (1 or 3)")
    t.add_argument("--out", default=None,
                   help="folder of evaluators to add it to (default: $DCGAN_LAB_EVALUATORS, else the shipped one)")
    t.add_argument("--data-root", default="./data", help="real data sets: where they live")
    t.add_argument("--seed", type=int, default=0, help="seed of the net's initialisation and batch order")
    t.add_argument("--n-train", type=int, default=None, help="training images (default: the evaluator's spec)")
    t.add_argument("--epochs", type=int, default=None, help="epochs (default: the evaluator's spec)")
    t.add_argument("--threads", type=int, default=1, help="torch intra-op threads while training")
    t.set_defaults(func=cmd_train)

    s = verbs.add_parser("list", help="the frozen evaluators of a folder, with their digests checked")
    s.add_argument("--dir", default=None, help="folder of evaluators (default: the one runs load from)")
    s.add_argument("--json", action="store_true", help="print the manifest's entries as JSON")
    s.set_defaults(func=cmd_list)


def cmd_train(args):
    from trainables.metrics.evaluators import evaluator_spec, make_version

    # Check every input before training anything.
    evaluator_spec(args.dataset)   # unknown data sets and those without labels: one line
    if args.nc not in (1, 3):
        raise bad_value("nc", args.nc, "1 or 3")
    for key in ("image_size", "n_train", "epochs", "threads"):
        value = getattr(args, key)
        if value is not None and value < 1:
            raise bad_value(key, value, "a positive integer")
    if args.image_size & (args.image_size - 1) or args.image_size < 8:
        raise bad_value("image_size", args.image_size, "a power of two, at least 8")
    entry = make_version(args.dataset, args.image_size, args.nc, folder=args.out, data_root=args.data_root,
                         seed=args.seed, n_train=args.n_train, epochs=args.epochs, threads=args.threads)
    print(json.dumps(entry, indent=1))
    return 0


def cmd_list(args):
    from trainables.metrics import frozen

    folder = args.dir or frozen.evaluator_dir()
    entries = frozen.read_manifest(folder)
    if not entries:
        raise UserError(f"dir={str(folder)!r} holds no {frozen.MANIFEST}: no frozen evaluators there")
    if args.json:
        print(json.dumps(entries, indent=1))
    for e in entries:
        frozen.load_verified(e, folder)   # a changed or missing file: one line, exit 2
        scores = ", ".join(f"{k}={v}" for k, v in e["held_out"].items() if k != "n")
        if not args.json:
            print(f"{e['file']}  sha256 {e['sha256'][:12]}  {e['training']['n_train']} images x "
                  f"{e['training']['epochs']} epochs  held out (n={e['held_out']['n']}): {scores}")
    return 0
