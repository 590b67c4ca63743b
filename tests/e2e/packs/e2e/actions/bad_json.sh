#!/bin/bash
echo "this is not JSON"
echo "{neither: is this"
