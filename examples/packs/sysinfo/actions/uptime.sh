#!/bin/bash
# sysinfo.uptime: print {"uptime_seconds": N, "load": "1m 5m 15m"} from /proc.
set -eu
read -r up _ </proc/uptime
read -r l1 l5 l15 _ </proc/loadavg
printf '{"uptime_seconds": %d, "load": "%s %s %s"}\n' "${up%.*}" "$l1" "$l5" "$l15"
