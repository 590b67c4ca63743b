// Report NODE_PATH and what require('tiny') gives.
let tiny = null, error = null;
try {
  tiny = require("tiny");
} catch (e) {
  error = String(e);
}
console.log(JSON.stringify({
  node_path: process.env.NODE_PATH || null,
  value: tiny && tiny.value,
  file: tiny ? require.resolve("tiny") : null,
  error: error,
}));
