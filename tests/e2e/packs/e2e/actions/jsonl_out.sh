#!/bin/bash
echo '{"n": 1}'
echo '{"n": 2, "s": "two"}'
echo '[3]'
