"""Parameter helpers shared by the nodes."""

from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor


def descriptor(description: str, *, read_only: bool = False, float_range: tuple[float, float] | None = None,
               int_range: tuple[int, int] | None = None, constraints: str = '') -> ParameterDescriptor:
    """A ParameterDescriptor with an optional inclusive range."""
    result = ParameterDescriptor(description=description, read_only=read_only, additional_constraints=constraints)
    if float_range is not None:
        result.floating_point_range = [FloatingPointRange(from_value=float(float_range[0]),
                                                          to_value=float(float_range[1]), step=0.0)]
    if int_range is not None:
        result.integer_range = [IntegerRange(from_value=int(int_range[0]), to_value=int(int_range[1]), step=1)]
    return result


def declare_executor(node: Any) -> str:
    """Declare a node's read-only ``executor`` parameter (how its process spins it) and return the value.

    Raises
    ------
    ValueError
        If the value given at start-up is not one of ``hamwm_ros.nodes.EXECUTOR_KINDS``.
    """
    from hamwm_ros.nodes import EXECUTOR_KINDS

    kind = node.declare_parameter('executor', 'events', descriptor(
        "how the node's process spins it: 'events' (rclpy's C++ events executor, less CPU per message; the "
        "single-threaded one where rclpy has none) or 'single_threaded' (rclpy's Python executor)", read_only=True,
        constraints=' | '.join(EXECUTOR_KINDS))).value
    if kind not in EXECUTOR_KINDS:
        raise ValueError(f'parameter executor must be one of {", ".join(EXECUTOR_KINDS)}, got {kind!r}')
    return kind
