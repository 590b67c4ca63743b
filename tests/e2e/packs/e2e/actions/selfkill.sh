#!/bin/bash
echo "about to die"
kill -9 $$
