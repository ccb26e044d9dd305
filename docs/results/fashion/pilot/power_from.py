"""The rows of `dcgan-lab power --from RUNS_CSV` computed one by one (the command stops on a NaN seed count)."""
import math
import sys

from statsmodels.stats.power import TTestPower

from orchestrator.report.power import claim_power, contrast_spreads

runs_csv, ratio = sys.argv[1], 1.5
studies = int(sys.argv[2]) if len(sys.argv) > 2 else 200
print("| claim | seeds there | contrast SD | power at those seeds (MC SE) | one t at 5 % | seeds for 80% (one t) |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for key, n, sd in contrast_spreads(runs_csv, "paper-claims-paired"):
    power, se = claim_power("paper-claims-paired", n, ratio, sd, studies)
    effect = math.log(ratio) / sd
    single = TTestPower().power(effect_size=effect, nobs=n, alpha=0.05)
    try:
        need = TTestPower().solve_power(effect_size=effect, power=0.8, alpha=0.05)
    except Exception as e:  # noqa: BLE001
        need = f"error: {e}"
    print(f"| {key} | {n} | {sd:.4f} | {power:.0%} ({se:.1%}) | {single:.0%} | {need} |")
