import hashlib
import json
import sys

params = json.loads(sys.stdin.readline())
doc = params["doc"].encode("utf-8")
print(json.dumps({"len": len(doc), "sha256": hashlib.sha256(doc).hexdigest()}))
