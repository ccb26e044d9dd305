"""The search study (issue #35): a two-stage Optuna search over lr, beta1 and bn_placement (stage 1 samples
configurations, stage 2 re-runs the best and the paper's on fresh seeds), and what is measured from its
trials table: each knob's importance for log final FD, the landscape and where training diverges, the
expected best FD against the number of trials (TPE against random search) and a two-objective Pareto front.
"""
