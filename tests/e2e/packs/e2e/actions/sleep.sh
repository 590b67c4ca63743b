#!/bin/bash
eval "$(cat)"
echo "started $$"
if [ -n "$pidfile" ]; then
  echo $$ > "$pidfile.tmp" && mv "$pidfile.tmp" "$pidfile"
fi
sleep "$seconds"
echo done
