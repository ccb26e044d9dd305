"""``dcgan-lab bench``: throughput of the project's training step against a plain PyTorch loop,
the machine's GEMM peak, the CPU levers of the step, batches from the data cache against
rendering and decoding, evaluation cost, Ray Train with 1 and 2 workers, and a sweep's efficiency,
start-up and memory. A benchmark, not a test: it prints a table and writes JSON. ``--smoke`` runs
every part but ``eval`` and ``ray`` at toy sizes in a minute or two (what the test suite runs).
Each part is measured in ``orchestrator/bench/``; this module picks the parts and prints the table.
"""
import json
import os
from pathlib import Path

from orchestrator.bench.data import data_throughput, print_data
from orchestrator.bench.levers import LEVERS, lever_throughput, print_levers
from orchestrator.bench.steps import eval_cost, gemm_gflops, ray_throughput, step_throughput
from orchestrator.bench.sweep import print_sweep, sweep_efficiency

SIZES = {  # name -> config overrides of the networks measured
    "quick": dict(image_size=32, ngf=32, ndf=32, nz=100, batch_size=64),
    "tutorial": dict(image_size=64, ngf=64, ndf=64, nz=100, batch_size=128),
    "wide": dict(image_size=64, ngf=128, ndf=128, nz=100, batch_size=128),  # the authors' 4x4x1024 projection
    "big-batch": dict(image_size=64, ngf=64, ndf=64, nz=100, batch_size=1024),  # GPU: past launch overhead
    "smoke": dict(image_size=32, ngf=8, ndf=8, nz=16, batch_size=16),  # --smoke: the smoke preset's nets
}


def add_subparser(subparsers):
    p = subparsers.add_parser("bench", help="benchmark training throughput (prints a table, writes JSON)")
    p.add_argument("--out", default="bench.json", help="JSON output file")
    p.add_argument("--sizes", default="quick,tutorial", help=f"comma-separated: {', '.join(SIZES)}")
    p.add_argument("--steps", type=int, default=20, help="timed steps per measurement (levers: per variant)")
    p.add_argument("--lever-sizes", default="quick,tutorial", help="sizes of the levers part, comma-separated")
    p.add_argument("--levers", default=",".join(LEVERS), help=f"levers measured, comma-separated: {', '.join(LEVERS)}")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    p.add_argument("--skip-ray", action="store_true", help="skip the Ray Train measurements")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--parts", help=f"comma-separated: {', '.join(PARTS)} (default: all but gpu; "
                                   f"with --device cuda: {','.join(CUDA_PARTS)})")
    p.add_argument("--sweep-preset", default="quick", help="preset of the measured sweep")
    p.add_argument("--sweep-space", default="smoke", help="search space of the measured sweep")
    p.add_argument("--sweep-seeds", type=int, default=2, help="seeds per grid point of the measured sweep")
    p.add_argument("--sweep-steps", type=int, default=600, help="max_steps of each measured trial")
    p.add_argument("--sweep-compare", action="store_true",
                   help="also run the sweep with every trial on a Train worker group (the former way)")
    p.add_argument("--smoke", action="store_true",
                   help="every part but eval and ray, at toy sizes: checks the bench runs, measures nothing")
    p.set_defaults(func=cmd_bench)


PARTS = ("steps", "levers", "data", "eval", "ray", "sweep", "gpu")


CUDA_PARTS = ("steps", "gpu")   # what --device cuda measures unless --parts says otherwise


SMOKE = {"sizes": "smoke", "lever_sizes": "smoke", "steps": 3, "parts": "steps,levers,data,sweep",
         "sweep_preset": "smoke", "sweep_seeds": 1, "sweep_steps": 12,
         # every lever's code once: the combination adds only a second compilation
         "levers": ",".join(name for name in LEVERS if name != "channels_last + compile")}


def cmd_bench(args):
    import torch

    from trainables.errors import UserError

    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
    if args.device not in ("cpu", "cuda"):
        raise UserError(f"device={args.device!r} is not allowed: cpu or cuda")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("device='cuda' is not allowed here: torch sees no CUDA device on this machine")
    sizes, lever_sizes = _names("sizes", args.sizes, SIZES), _names("lever-sizes", args.lever_sizes, SIZES)
    default = CUDA_PARTS if args.device == "cuda" else PARTS[:-1]
    parts = _names("parts", args.parts or ",".join(default), PARTS)
    if "gpu" in parts and args.device != "cuda":
        raise UserError("parts='gpu' is not allowed with --device cpu: it measures a CUDA device (--device cuda)")
    levers = {name: LEVERS[name] for name in _names("levers", args.levers, LEVERS)}
    if "reference" not in levers:
        levers = {"reference": {}, **levers}   # what every lever is compared with
    if args.skip_ray:
        parts = [s for s in parts if s not in ("ray", "sweep")]
    if args.steps < 3:
        raise UserError(f"steps={args.steps} is not allowed: >= 3")
    threads = args.threads or os.cpu_count()
    torch.set_num_threads(threads)
    results = {"threads": threads, "torch": torch.__version__, "device": args.device,
               "mode": "smoke" if args.smoke else "full",
               "load_before": os.getloadavg()}
    if "steps" in parts:
        results["gemm_gflops"] = gemm_gflops(args.device)
        for name in sizes:
            results[name] = step_throughput(SIZES[name], args.steps, args.device)
            results[name]["achieved_vs_gemm"] = results[name]["project_gflops"] / results["gemm_gflops"]
    if "gpu" in parts:
        from orchestrator.bench.gpu import gpu_gemm_tflops, gpu_study

        results["gpu_name"] = torch.cuda.get_device_name()
        results["gemm_tflops"] = {d: gpu_gemm_tflops(d) for d in ("float32", "bfloat16")}
        results["gpu"] = gpu_study({name: SIZES[name] for name in dict.fromkeys([*sizes, "tutorial"])}, args.steps)
    if "levers" in parts:
        results["levers"] = {name: lever_throughput(SIZES[name], args.steps, rounds=1 if args.smoke else 4,
                                                    levers=levers) for name in lever_sizes}
    if "data" in parts:
        results["data"] = data_throughput(length=2000, batches=5, files=200) if args.smoke else data_throughput()
    if "eval" in parts:
        results["evaluation"] = eval_cost()
    if "ray" in parts:
        results["ray_train"] = ray_throughput()
    if "sweep" in parts:
        sweep = dict(preset=args.sweep_preset, space=args.sweep_space, seeds=args.sweep_seeds,
                     max_steps=args.sweep_steps)
        results["sweep"] = sweep_efficiency(**sweep)
        if args.sweep_compare:
            results["sweep_worker_group"] = sweep_efficiency(**sweep, worker_group=True)
    results["load_after"] = os.getloadavg()
    print_table(results, sizes if "steps" in parts else [])
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")
    return 0


def _names(key, text, known):
    from trainables.errors import bad_value

    names = [s.strip() for s in text.split(",") if s.strip()]
    for name in names:
        if name not in known:
            raise bad_value(key, name, f"one of {', '.join(known)}")
    return names


def print_table(r, sizes):
    load = "/".join(f"{x:.1f}" for x in r["load_before"])
    print(f"\nmachine: {r['threads']} threads, torch {r['torch']}, {r['device']}; load average {load} at the start")
    if sizes:
        print(f"measured GEMM {r['gemm_gflops']:.1f} GFLOP/s")
        print(f"{'size':<10}{'batch':>6}{'project img/s':>15}{'plain img/s':>13}{'ratio':>7}{'GFLOP/s':>9}{'of GEMM':>9}")
    for s in sizes:
        x = r[s]
        print(f"{s:<10}{x['batch_size']:>6}{x['project_images_per_s']:>15.1f}{x['plain_images_per_s']:>13.1f}"
              f"{x['ratio']:>7.2f}{x['project_gflops']:>9.1f}{x['achieved_vs_gemm']:>9.0%}")
    if "levers" in r:
        print_levers(r["levers"])
    if "data" in r:
        print_data(r["data"])
    if "evaluation" in r:
        ev = r["evaluation"]
        print(f"FD on 10,000 quick-size samples: {ev['fd_10k_seconds']:.1f} s; "
              f"faces evaluator training (when it was built): {ev['evaluator_train_seconds']:.0f} s")
    if "gpu" in r:
        from orchestrator.bench.gpu import print_gpu

        print_gpu(r)
    for key in ("sweep", "sweep_worker_group"):
        if key in r:
            print_sweep(r[key])
    if "ray_train" in r:
        rt = r["ray_train"]
        print(f"Ray Train quick size: 1 worker {rt['1_workers']['images_per_s']:.1f} img/s, "
              f"2 workers {rt['2_workers']['images_per_s']:.1f} img/s, speed-up {rt['speedup_2_vs_1']:.2f}x")
