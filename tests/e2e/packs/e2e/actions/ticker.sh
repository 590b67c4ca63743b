#!/bin/bash
eval "$(cat)"
for i in $(seq 1 "$lines"); do
  echo "line $i"
  sleep "$pause"
done
