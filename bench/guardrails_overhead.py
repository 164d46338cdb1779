"""What the guardrails cost the pure rollout core, per decision, against the same decision without them.

1. Holds: one engine turn (`decide_observations` of a Tick) on a wave of N pending environments that may start
   10 at a time, with no guardrail (the baseline), with a freeze in force for another env type (every pending
   environment is checked against it), with the wave's change window closed, and with a freeze covering the
   whole wave (nothing starts).
2. The compare gate's judgement (`evaluate_compare`, SciPy's Mann-Whitney U) for cohorts of N environments
   sampled 3 times each, against the Prometheus gate's judgement (`evaluate`) of the same samples.

Medians of several runs; ratios against the baseline of the same table.

    .venv/bin/python bench/guardrails_overhead.py [--sizes 1000 10000 100000] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from datetime import time as clock

from estate.domain.change_windows import ChangeWindow
from estate.domain.cohort import evaluate_compare
from estate.domain.freezes import Freeze
from estate.domain.gate_eval import Sample, evaluate
from estate.domain.ids import EnvRef
from estate.domain.plans import CompareGate, PrometheusGate, RolloutPlan, Wave
from estate.domain.rollout import decide, decide_observations
from estate.domain.rollout_events import Start, Tick
from estate.domain.rollout_state import RolloutState, new_rollout
from estate.domain.selectors import Selector

T0 = datetime(2027, 1, 4, 10, tzinfo=UTC)  # a Monday, 10:00 UTC
LATER = T0 + timedelta(seconds=1)


def median_seconds(work: Callable[[], object], runs: int) -> float:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def held_wave(n: int, windows: tuple[ChangeWindow, ...], freezes: tuple[Freeze, ...]) -> RolloutState:
    """A started rollout whose only wave has `n` environments (`n - 10` of them still pending)."""
    refs = [EnvRef("p", f"e{i}") for i in range(n)]
    plan = RolloutPlan("p", (Wave("w", Selector(), max_parallel=10, change_windows=windows),))
    state = new_rollout(
        rollout_id="r",
        module="m",
        version="2",
        plan=plan,
        membership=[refs],
        previous_versions=dict.fromkeys(refs, "1"),
        started_by="bench",
        now=T0,
        env_types=dict.fromkeys(refs, "ephemeral"),
        freezes=freezes,
    )
    return decide(state, Start("bench"), T0).state


def holds(sizes: list[int], runs: int) -> None:
    other = Freeze(1, "bench", "bench", T0, "production", None)
    covering = Freeze(2, "bench", "bench", T0, "ephemeral", None)
    closed = ChangeWindow(frozenset({0}), clock(12), clock(13))
    cases = {
        "no guardrail": ((), ()),
        "freeze elsewhere": ((), (other,)),
        "window closed": ((closed,), ()),
        "wave frozen": ((), (covering,)),
    }
    print(f"\n1. one engine turn on a wave of N environments (median of {runs})")
    print(f"{'N':>8} " + " ".join(f"{c:>24}" for c in cases))
    for n in sizes:
        states = {c: held_wave(n, *args) for c, args in cases.items()}
        times = {
            c: median_seconds(lambda s=s: decide_observations(s, [Tick()], LATER), runs) for c, s in states.items()
        }
        base = times["no guardrail"]
        print(f"{n:>8} " + " ".join(f"{times[c] * 1e3:>12.3f} ms x{times[c] / base:>7.2f}" for c in cases))


def judgements(sizes: list[int], runs: int) -> None:
    print(f"\n2. judging 3 rounds of N new and N baseline environments (median of {runs})")
    print(f"{'N':>8} {'prometheus (baseline)':>24} {'compare':>24}")
    prometheus, compare = PrometheusGate("q", max=0.05, count=3), CompareGate("q", count=3)
    for n in sizes:
        new = [Sample(f"p/n{i}", r, "q", (0.001 + i * 1e-6,)) for i in range(n) for r in range(3)]
        base = [Sample(f"p/b{i}", r, "q", (0.001 + i * 2e-6,), baseline=True) for i in range(n) for r in range(3)]
        expected = [f"p/n{i}" for i in range(n)]
        both = [*new, *base]
        t_base = median_seconds(lambda s=new, e=expected: evaluate(prometheus, s, e), runs)
        t_compare = median_seconds(lambda s=both, e=expected: evaluate_compare(compare, s, e), runs)
        print(f"{n:>8} {t_base * 1e3:>21.3f} ms {t_compare * 1e3:>15.3f} ms x{t_compare / t_base:>5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cohorts", type=int, nargs="+", default=[10, 50, 200])
    args = parser.parse_args()
    holds(args.sizes, args.runs)
    judgements(args.cohorts, args.runs)


if __name__ == "__main__":
    main()
