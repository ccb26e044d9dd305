"""The paper's latent-space and representation experiments (section 6 and 5.1), measured.

One module per experiment, each taking a loaded generator (or discriminator) and returning a
:class:`~trainables.latent.report.Report`: the numbers, the figures and the arrays behind them.
"""
