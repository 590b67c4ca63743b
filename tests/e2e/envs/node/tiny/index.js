// A tiny local package, a "file:" dependency of the test's node pack.
module.exports = { value: "tiny 1.0.0" };
