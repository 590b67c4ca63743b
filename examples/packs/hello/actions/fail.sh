#!/bin/bash
echo "hello.fail: failing on purpose" >&2
exit 3
