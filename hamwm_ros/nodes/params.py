"""Parameter-descriptor helper shared by the nodes."""

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
