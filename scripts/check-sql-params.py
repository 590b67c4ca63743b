#!/usr/bin/env python3
"""Check that every db_exec()/db_query() call in src/store binds as many
parameters (its format string) as its SQL uses ($1..$N). A mismatch reads
a wrong argument at run time, so it is caught here instead."""
import re
import sys
from pathlib import Path

CALL = re.compile(r'db_(?:exec|query)\(st->db,(.*?)\);', re.S)
STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')

def check(path):
    bad = 0
    text = path.read_text()
    for m in CALL.finditer(text):
        sql, fmt = '', None
        for s in STRING.findall(m.group(1)):
            if sql and fmt is None and re.fullmatch(r'[itb]*', s):
                fmt = s
                break
            sql += s
        if fmt is None:
            continue
        used = [int(n) for n in re.findall(r'\$(\d+)', sql)]
        want = max(used) if used else 0
        if len(fmt) != want:
            line = text.count('\n', 0, m.start()) + 1
            print(f'{path}:{line}: SQL uses ${want} but the format "{fmt}" binds {len(fmt)}')
            bad += 1
    return bad

root = Path(__file__).resolve().parent.parent
bad = sum(check(p) for p in sorted((root / 'src' / 'store').glob('*.c')))
sys.exit(1 if bad else 0)
