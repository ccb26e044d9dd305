"""A sweep: Ray Tune + Optuna trials tracked in MLflow (``dcgan-lab sweep``).

``plan``: trials at once on the cluster, the sweep's folder and ``sweep.json``; ``run``: the
MLflow server and parent run, the Tune trials, the summary and report; ``sequential``: a paired
study in blocks up to planned looks (the rule itself is ``orchestrator.report.sequential``);
``estimate``: the dry run's cost estimate; ``mlflow_server``: the local MLflow server.
"""
