#!/bin/bash
eval "$(cat)"
( trap '' TERM; exec sleep 300 ) &
echo $! > "$pidfile.tmp" && mv "$pidfile.tmp" "$pidfile"
sleep 30
