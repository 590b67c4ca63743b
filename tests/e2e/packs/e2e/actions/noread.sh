#!/bin/bash
echo "did not read stdin"
