#!/bin/bash
source "$PACKRUN_PARAMETER_FILE" 2>/dev/null
printf '%s' "$value"
printf '\n--FILE--\n'
cat "$PACKRUN_PARAMETER_FILE"
