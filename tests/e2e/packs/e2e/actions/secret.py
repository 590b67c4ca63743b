import json
import os
import sys

params = json.loads(sys.stdin.readline())
secret = params["password"]
with open(params["outfile"], "w") as f:
    f.write(secret)
with open("/proc/self/environ", "rb") as f:
    environ = f.read()
with open("/proc/self/cmdline", "rb") as f:
    cmdline = f.read()
print(json.dumps({
    "user": params.get("user"),
    "secret_in_environ": secret.encode() in environ,
    "secret_in_cmdline": secret.encode() in cmdline,
}))
