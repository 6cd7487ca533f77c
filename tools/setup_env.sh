#!/usr/bin/env bash
# Idempotent set-up for the pip path: virtual environment, pinned dependencies,
# msg/ built into importable classes, the package installed in editable mode.
# Each step is skipped when its inputs have not changed since the last run.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VLA_VENV:-$ROOT/.venv}
VLA_ACCEL_EXTRAS=${VLA_ACCEL_EXTRAS:-}
PYTHON=${PYTHON:-python3}
cd "$ROOT"

digest() { cat "$@" | sha256sum | cut -c1-16; }
# Optional extras, installed only when asked: VLA_ACCEL_EXTRAS=libero (comma-separated) installs
# requirements/libero.txt. Their files are left out of the core digests, so an extra never makes
# the core steps run again.
OPTIONAL_EXTRAS=(libero cuda)
core_reqs=()
for f in requirements/*.txt; do
  case " ${OPTIONAL_EXTRAS[*]} " in *" $(basename "$f" .txt) "*) ;; *) core_reqs+=("$f") ;; esac
done
deps_digest=$(digest "${core_reqs[@]}")
msgs_digest=$(digest msg/*.msg CMakeLists.txt package.xml "${core_reqs[@]}")
pkg_digest=$(digest setup.py setup.cfg "${core_reqs[@]}")

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

if [ "$(cat "$VENV/.deps_digest" 2>/dev/null)" != "$deps_digest" ]; then
  echo "[setup] installing pinned dependencies"
  "${PIP[@]}" install -q -c requirements/constraints.txt -r requirements/base.txt
  "${PIP[@]}" install -q --no-deps -r requirements/nodeps.txt
  "$VENV/bin/python" tools/fix_ros_wheel_cmake.py "$VENV"
  echo "$deps_digest" > "$VENV/.deps_digest"
fi

for extra in ${VLA_ACCEL_EXTRAS//,/ }; do
  req=requirements/$extra.txt
  case " ${OPTIONAL_EXTRAS[*]} " in
    *" $extra "*) ;;
    *) echo "[setup] unknown extra '$extra' (known: ${OPTIONAL_EXTRAS[*]})" >&2; exit 2 ;;
  esac
  extra_digest=$(digest "$req" "${core_reqs[@]}")
  if [ "$(cat "$VENV/.extra_${extra}_digest" 2>/dev/null)" != "$extra_digest" ]; then
    echo "[setup] installing the optional extra '$extra' ($req)"
    # base.txt's pins as constraints (extras stripped: pip refuses them there): nothing the core
    # pinned changes version.
    pins=$(mktemp)
    grep -E '^[A-Za-z0-9._-]+(\[[^]]*\])?==' requirements/base.txt | sed 's/\[[^]]*\]//' > "$pins"
    "${PIP[@]}" install -q -c requirements/constraints.txt -c "$pins" -r "$req"
    rm -f "$pins"
    echo "$extra_digest" > "$VENV/.extra_${extra}_digest"
  fi
done

if [ "$(cat "$VENV/.pkg_digest" 2>/dev/null)" != "$pkg_digest" ]; then
  echo "[setup] installing vla_accel_ros (editable)"
  "${PIP[@]}" install -q --no-deps --no-build-isolation --config-settings editable_mode=compat -e "$ROOT"
  echo "$pkg_digest" > "$VENV/.pkg_digest"
fi

site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ "$(cat "$VENV/.msgs_digest" 2>/dev/null)" != "$msgs_digest" ] || [ ! -d "$site/vla_accel_ros/msg" ]; then
  echo "[setup] generating messages from msg/"
  build="$VENV/.msg_build"
  rm -rf "$build" && mkdir -p "$build"
  (
    cd "$build"
    export AMENT_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
    cmake "$ROOT" -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" \
      -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF \
      -DVLA_ACCEL_INSTALL_PYTHON=OFF >cmake.log 2>&1 || { tail -30 cmake.log; exit 1; }
    make -j"$(nproc)" >make.log 2>&1 || { tail -30 make.log; exit 1; }
    make install >install.log 2>&1 || { tail -30 install.log; exit 1; }
  )
  # The generated half of the package must not shadow the source half: without its
  # __init__.py it becomes a portion that vla_accel_ros/__init__.py adds to __path__.
  # Its egg-info would make pip treat the messages as this distribution and delete them
  # on the next editable install.
  rm -f "$site/vla_accel_ros/__init__.py"
  rm -rf "$site"/vla_accel_ros-*.egg-info
  echo "$msgs_digest" > "$VENV/.msgs_digest"
fi

