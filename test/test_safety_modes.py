"""Mode machine: reasons on every transition, counts and bounded history."""

import pytest

from hamwm_ros.safety.modes import Mode, ModeMachine


def test_transitions_carry_reasons_and_are_recorded():
    machine = ModeMachine(history=3)
    assert machine.mode is Mode.INACTIVE
    transition = machine.set(Mode.WAITING_FOR_STATE, 'activated', 1.0)
    assert str(transition) == 'INACTIVE -> WAITING_FOR_STATE: activated'
    assert machine.set(Mode.WAITING_FOR_STATE, 'still nothing', 2.0) is None   # same mode: reason updated only
    assert machine.status() == 'WAITING_FOR_STATE: still nothing' and machine.since == 1.0
    for k, mode in enumerate((Mode.PLANNING, Mode.FALLBACK, Mode.ESTOP)):
        machine.set(mode, f'step {k}', 3.0 + k)
    assert len(machine.history) == 3 and machine.history[-1].mode is Mode.ESTOP
    assert machine.entered[Mode.PLANNING] == 1 and machine.entered[Mode.WAITING_FOR_STATE] == 1


def test_a_transition_without_reason_is_refused():
    machine = ModeMachine()
    with pytest.raises(ValueError):
        machine.set(Mode.PLANNING, '', 0.0)
    with pytest.raises(ValueError):
        machine.set('PLANNING', 'x', 0.0)
    assert machine.mode is Mode.INACTIVE


def test_zero_effort_modes():
    assert {m for m in Mode if m.commands_zero} == {Mode.INACTIVE, Mode.ESTOP, Mode.WAITING_FOR_STATE,
                                                    Mode.SAFE_HOLD}
