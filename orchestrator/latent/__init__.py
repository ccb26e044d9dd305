"""The latent-space and representation experiments on tracked generators (``dcgan-lab latent``,
declared in ``orchestrator/latent_cmd.py``).

``experiments``: what each command runs; ``runs``: the generators it loads and the files it
publishes. The math lives in ``trainables/latent/``.
"""
