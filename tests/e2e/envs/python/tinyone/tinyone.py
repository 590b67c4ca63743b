"""A tiny module installed from a wheel the test builds."""
VALUE = "tinyone 1.0"
