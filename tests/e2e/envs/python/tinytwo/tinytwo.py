"""A second tiny module, so that a build installs more than one wheel."""
VALUE = "tinytwo 2.0"
