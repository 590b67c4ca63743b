#!/bin/bash
cat <<'JSON'
{
  "answer": 42,
  "nested": {"ok": true}
}
JSON
