#!/bin/bash
sleep 60 &
echo "daemon $!"
