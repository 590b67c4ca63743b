#!/bin/bash
# hello.shout: the parameters arrive as one JSON line on stdin, e.g.
#   {"text": "hi there"}
# A real action would parse them with jq or use parameter_format: dotenv;
# a sed expression is enough for this example (it does not undo JSON escapes).
read -r line
text=$(printf '%s\n' "$line" | sed -n 's/.*"text"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')
printf '%s\n' "$text" | tr '[:lower:]' '[:upper:]'
