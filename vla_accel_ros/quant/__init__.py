"""DyQ-VLA precision ladder: one int4 copy of the decoder linears serving several precision modes."""

from vla_accel_ros.quant.ladder import (
    DECODER_LINEARS,
    Int4Linear,
    Ladder,
    get_ladder,
    quantize_model,
    quantize_policy,
    set_precision,
)
from vla_accel_ros.quant.modes import DEFAULT_MODES, Mode

__all__ = [
    "DECODER_LINEARS",
    "DEFAULT_MODES",
    "Int4Linear",
    "Ladder",
    "Mode",
    "get_ladder",
    "quantize_model",
    "quantize_policy",
    "set_precision",
]
