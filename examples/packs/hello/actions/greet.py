"""hello.greet: read the parameters as one JSON line on stdin, print a JSON greeting."""

import json
import sys

from greeting import greeting  # lib/greeting.py: packrun puts lib/ on PYTHONPATH


def main():
    line = sys.stdin.readline()
    params = json.loads(line) if line.strip() else {}
    print(json.dumps({"greeting": greeting(params.get("name", "world"))}))


if __name__ == "__main__":
    main()
