"""`python -m vla_accel_ros.params > config/vla_accel.yaml`: the params file generated from the tables."""

import sys

from vla_accel_ros.params.yaml_io import default_yaml

sys.stdout.write(default_yaml())
