#!/bin/bash
echo "starting up, this line is not JSON"
echo '{"answer": 42, "items": ["a", "b"]}'
