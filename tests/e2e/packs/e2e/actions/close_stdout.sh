#!/bin/bash
echo "before close"
exec 1>&-
sleep 1
echo "still running after closing stdout" >&2
