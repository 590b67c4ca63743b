#!/bin/bash
eval "$(cat)"
echo "$PACKRUN_EXECUTION_ID" >> "$file"
