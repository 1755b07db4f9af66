#!/usr/bin/env bash
# Integrator's final device call of session 3 (tests, kbench, speed, accuracy, scbench): the same
# steps are in dev/call_session4_final.sh, which adds scmemcheck; this name is kept because
# docs/PERFORMANCE.md and session 3's note cite it.
exec bash "$(dirname "$0")/call_session4_final.sh" "${@:-tests kbench speed accuracy scbench}"
