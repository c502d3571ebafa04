"""Power analysis by simulation: ``vlmstudy power``.

:func:`study.power.design.resolve` turns a protocol into the cells and tests
to simulate, :mod:`study.power.draws` draws one study, and
:func:`study.power.simulation.run_power` repeats that per scenario and cohort
size, running the registered hypothesis tests on every simulated study.
"""

from study.power.design import Design, resolve
from study.power.record import power_protocol, power_record_path, read_power_record
from study.power.simulation import PowerResult, run_power

__all__ = [
    "Design",
    "PowerResult",
    "power_protocol",
    "power_record_path",
    "read_power_record",
    "resolve",
    "run_power",
]
