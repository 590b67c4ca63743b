#!/bin/bash
f="$PACKRUN_PARAMETER_FILE"
content=$(base64 -w0 < "$f")
printf '{"path": "%s", "mode": "%s", "content_b64": "%s", "format": "%s"}\n' \
  "$f" "$(stat -c %a "$f")" "$content" "$PACKRUN_PARAMETER_FORMAT"
