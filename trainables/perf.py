"""Where a training run's wall time goes, by phase: logged once at the end of the run as
``perf_<phase>_s`` metrics and a ``perf_loop_start`` tag (what ``dcgan-lab bench`` reads).

Each ``lap(phase)`` charges the time since the previous lap to ``phase``: the loop laps after
each of its parts, so the phases add up to the loop's wall time with no nesting to get wrong.
A resumed run reports its last attempt only.
"""
import time

PHASES = ("setup", "data", "step", "log", "eval", "checkpoint", "final")


class PhaseClock:
    def __init__(self, phases=PHASES):
        self.started = time.time()   # epoch seconds: comparable across processes
        self.last = time.perf_counter()
        self.seconds = dict.fromkeys(phases, 0.0)

    def lap(self, phase):
        now = time.perf_counter()
        self.seconds[phase] += now - self.last
        self.last = now

    def metrics(self):
        return {f"perf_{phase}_s": s for phase, s in self.seconds.items()}

    def tags(self):
        return {"perf_loop_start": f"{self.started:.3f}"}
