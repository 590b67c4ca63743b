"""Report where this action runs and what the requested modules are.

Parameters (one JSON line on stdin): imports (module names), sleep
(seconds before the imports), startfile (a file to write the pid to once
running), waitfor (a file to wait for, at most 60 s, before the imports).
"""

import importlib
import json
import os
import sys
import time

params = json.loads(sys.stdin.readline() or "{}")
ready = os.path.join(sys.prefix, ".ready")
out = {"prefix": sys.prefix, "executable": sys.executable,
       "virtual_env": os.environ.get("VIRTUAL_ENV"),
       "in_venv": sys.prefix != sys.base_prefix,
       "ready_at_start": os.path.exists(ready)}
if params.get("startfile"):
    with open(params["startfile"], "w") as f:
        f.write(str(os.getpid()))
time.sleep(params.get("sleep") or 0)
if params.get("waitfor"):
    deadline = time.monotonic() + 60
    while not os.path.exists(params["waitfor"]):
        if time.monotonic() > deadline:
            sys.exit(f"{params['waitfor']} did not appear within 60 s")
        time.sleep(0.02)
modules = {}
for name in params.get("imports") or []:
    try:
        mod = importlib.import_module(name)
        modules[name] = {"value": getattr(mod, "VALUE", None), "file": mod.__file__}
    except ImportError as e:
        modules[name] = {"error": str(e)}
out["modules"] = modules
out["ready_at_end"] = os.path.exists(ready)
print(json.dumps(out))
