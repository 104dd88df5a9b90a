"""Timeline phase 5: daily WBC and platelet counts from day -5 to day +30.

The curves are built so the expected reconstitution day is exact, which is
what the protocol derivation is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from adapter.demo.generator import messes
from adapter.demo.generator.clocks import morning_draw
from adapter.demo.generator.patient_run import PatientRun
from adapter.demo.generator.resources import measurement


@dataclass(frozen=True)
class CountCurve:
    """Aplasia and recovery of one cell line, in 10^9/L.

    Log-linear pieces: ``base`` at day -5, ``nadir`` on ``nadir_day``, just
    under ``threshold`` the day before ``recovery_day``, ``plateau`` at day 30.
    Values after day 0 stay below the threshold until ``recovery_day`` and at
    or above it from then on, so the expected reconstitution day is exact.
    """

    base: float
    nadir: float
    nadir_day: int
    recovery_day: int
    threshold: float
    plateau: float

    def value(self, day: int, noise: float) -> float:
        if day <= self.nadir_day:
            raw = _log_interpolate(day, -5, self.base, self.nadir_day, self.nadir)
        elif day < self.recovery_day:
            last_low_day = self.recovery_day - 1
            raw = _log_interpolate(day, self.nadir_day, self.nadir, last_low_day, self.threshold * 0.9)
        else:
            raw = _log_interpolate(day, self.recovery_day, self.threshold * 1.08, 30, self.plateau)
        raw *= noise
        if 1 <= day < self.recovery_day:
            return min(raw, self.threshold * 0.95)
        if day >= self.recovery_day:
            return max(raw, self.threshold * 1.03)
        return raw


def _log_interpolate(day: int, day_a: int, value_a: float, day_b: int, value_b: float) -> float:
    if day_b == day_a:
        return value_b
    share = (day - day_a) / (day_b - day_a)
    return float(value_a * (value_b / value_a) ** share)


def _recovery_days(run: PatientRun) -> tuple[int, int]:
    """(WBC day, PLT day): both met first on day 12-20; one patient gets WBC days earlier."""
    rng = run.rng
    both = rng.randint(12, 20)
    if run.has("wbc_first") or run.has("implausible_platelet"):
        both = max(both, 17)
        return both - rng.randint(5, 7), both
    lag = rng.randint(0, 2)
    return (both, both - lag) if rng.random() < 0.5 else (both - lag, both)


def blood_counts(run: PatientRun, day0: date) -> int:
    """Daily WBC and PLT around the transplant; returns the reconstitution day."""
    rng = run.rng
    wbc_day, plt_day = _recovery_days(run)
    wbc = CountCurve(
        rng.uniform(4.5, 7.5), rng.uniform(0.05, 0.3), rng.randint(5, 7), wbc_day, 3.0, rng.uniform(4.0, 7.0)
    )
    plt = CountCurve(
        rng.uniform(150, 280), rng.uniform(8, 20), rng.randint(7, 10), plt_day, 50.0, rng.uniform(90, 180)
    )
    for day in range(-5, 31):
        drawn = morning_draw(rng, day0 + timedelta(days=day))
        wbc_obs = measurement(run, "wbc", drawn, wbc.value(day, rng.uniform(0.96, 1.04)))
        run.out.emit(wbc_obs)
        if day == 3 and run.has("duplicate"):
            messes.plant_duplicate(run, wbc_obs)
        if day == 9 and run.has("missing_value"):
            messes.clotted_platelet_sample(run, drawn - timedelta(minutes=70))
        platelets = plt.value(day, rng.uniform(0.96, 1.04))
        if run.has("implausible_platelet") and day == wbc_day + 1:
            messes.mis_keyed_platelet(run, drawn, platelets)
        else:
            run.out.emit(measurement(run, "plt", drawn, platelets))
    return max(wbc_day, plt_day)
