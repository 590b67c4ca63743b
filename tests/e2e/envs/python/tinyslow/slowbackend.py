"""A PEP 517 build backend that sleeps before it writes the wheel.

$TINYSLOW_MARK (optional): a file to append "<pid>\n" to when the build
starts, so that a test knows pip is in the middle of it.
$TINYSLOW_SLEEP (optional): how long to sleep, in seconds (default 5).
"""

import base64
import hashlib
import os
import time
import zipfile

NAME, VERSION = "tinyslow", "1.0"
DIST_INFO = f"{NAME}-{VERSION}.dist-info"
WHEEL_NAME = f"{NAME}-{VERSION}-py3-none-any.whl"
HERE = os.path.dirname(os.path.abspath(__file__))

METADATA = f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {VERSION}\n"
WHEEL = "Wheel-Version: 1.0\nGenerator: slowbackend\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def _record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}\n"


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    mark = os.environ.get("TINYSLOW_MARK")
    if mark:
        with open(mark, "a") as f:
            f.write(f"{os.getpid()}\n")
    time.sleep(float(os.environ.get("TINYSLOW_SLEEP", "5")))
    with open(os.path.join(HERE, f"{NAME}.py"), "rb") as f:
        module = f.read()
    files = [(f"{NAME}.py", module),
             (f"{DIST_INFO}/METADATA", METADATA.encode()),
             (f"{DIST_INFO}/WHEEL", WHEEL.encode())]
    record = "".join(_record_line(p, d) for p, d in files) + f"{DIST_INFO}/RECORD,,\n"
    with zipfile.ZipFile(os.path.join(wheel_directory, WHEEL_NAME), "w") as z:
        for path, data in files:
            z.writestr(path, data)
        z.writestr(f"{DIST_INFO}/RECORD", record)
    return WHEEL_NAME
