"""Layout of generated bedrooms: how much of the image the evaluator sees as window and as bed.

The window-dropout experiment (paper section 6.3.1) compares these fractions before and after
removing G's window filters; on the synthetic bedrooms they are 0.056 (windows) and 0.25 (bed).
"""
from trainables.metrics.registry import BED_FRACTION, WINDOW_FRACTION, register_metric


@register_metric("layout")
def layout(inputs):
    fake = inputs.fake_predictions
    return {WINDOW_FRACTION: float(fake["window_mask"].mean()), BED_FRACTION: float(fake["bed_mask"].mean())}
