import json
import os
import urllib.request

url = os.environ["PACKRUN_API_URL"]
token = os.environ.get("PACKRUN_API_TOKEN")
me = os.environ["PACKRUN_EXECUTION_ID"]
req = urllib.request.Request(f"{url}/api/v1/executions/{me}",
                             headers={"Authorization": f"Bearer {token}"})
with urllib.request.urlopen(req, timeout=10) as r:
    seen = json.load(r)
print(json.dumps({"token": token, "status_seen": seen["status"]}))
