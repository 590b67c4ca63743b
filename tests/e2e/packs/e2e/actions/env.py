import json
import os

print(json.dumps({
    "env": {k: v for k, v in os.environ.items() if k.startswith("PACKRUN_")},
    "cwd": os.path.realpath(os.getcwd()),
}))
