"""The benchmark's parts (``dcgan-lab bench``, declared in ``orchestrator/bench_cmd.py``).

``steps``: the training step against a plain PyTorch loop, GEMM peak, evaluation cost, Ray Train;
``levers``: the step's CPU levers; ``data``: batches from the data cache against rendering and
decoding; ``sweep``: a sweep's efficiency, start-up and memory; ``gpu``: the CUDA study.
"""
