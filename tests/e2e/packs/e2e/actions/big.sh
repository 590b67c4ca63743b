#!/bin/bash
eval "$(cat)"
head -c "$bytes" /dev/zero | tr '\0' 'x'
