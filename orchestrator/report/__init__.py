"""The report: from tracked runs (or report folders) to tables, claim verdicts and figures, and the
statistics behind them.

``build``: the report's files, end to end (``dcgan-lab report``). ``data``: runs and their records;
``folders``: runs read back from report folders; ``model``: the mixed models and tests per claim;
``claims``: the claims file's verdicts; ``divergence``: the analyses of diverged runs; ``stats``:
the per-cell tables; ``horizons``: verdicts at earlier steps; ``verdicts`` and ``render``: the text;
``figures``: the plots. ``power``: seeds a claim test needs, by simulated studies; ``pilot``: the
plateau test at a ladder of horizons; ``sequential``: the group-sequential rule and its replay.
"""
