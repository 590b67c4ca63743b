"""sysinfo.disk: print the disk usage of the file system holding the `path` parameter."""

import json
import shutil
import sys


def main():
    line = sys.stdin.readline()
    params = json.loads(line) if line.strip() else {}
    path = params.get("path", "/")
    usage = shutil.disk_usage(path)
    print(json.dumps({"path": path, "total_bytes": usage.total,
                      "used_bytes": usage.used, "free_bytes": usage.free}))


if __name__ == "__main__":
    main()
