#!/bin/bash
pwd -P
