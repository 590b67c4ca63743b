#!/bin/bash
cat <<'YAML'
name: Ada
count: 3
ratio: 0.5
tags:
  - a
  - b
nested:
  ok: true
  none: null
YAML
