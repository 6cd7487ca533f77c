"""ROS-free parameter tables of the graph's nodes, their YAML files and where those files are.

`vla_accel_ros.ros.params` turns these tables into rcl parameter declarations; everything else (offline
evaluation, replay, benchmarks, calibration, the launcher's checks) uses them directly.
"""

from vla_accel_ros.params.files import config_dir, msg_dir
from vla_accel_ros.params.schema import BUILTIN_PARAMETERS, Kind, NodeParams, ParameterError, ParamInfo, param
from vla_accel_ros.params.settings import GraphSettings, default_files
from vla_accel_ros.params.tables import (
    BUILTIN_CHECKPOINT,
    DECODINGS,
    FULL_PRECISION,
    NODE_PARAMS,
    QUANT_GROUP_SIZE,
    ControllerParams,
    InferenceParams,
    KinematicsParams,
    SimArmParams,
)
from vla_accel_ros.params.yaml_io import (
    default_yaml,
    merge_sections,
    read_params_file,
    read_params_files,
    render_yaml,
    validate_sections,
    write_params_file,
    yaml_scalar,
)

__all__ = [
    "BUILTIN_CHECKPOINT",
    "BUILTIN_PARAMETERS",
    "DECODINGS",
    "FULL_PRECISION",
    "NODE_PARAMS",
    "QUANT_GROUP_SIZE",
    "ControllerParams",
    "GraphSettings",
    "InferenceParams",
    "Kind",
    "KinematicsParams",
    "NodeParams",
    "ParamInfo",
    "ParameterError",
    "SimArmParams",
    "config_dir",
    "default_files",
    "default_yaml",
    "merge_sections",
    "msg_dir",
    "param",
    "read_params_file",
    "read_params_files",
    "render_yaml",
    "validate_sections",
    "write_params_file",
    "yaml_scalar",
]
