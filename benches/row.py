"""One row of a before/after table from a `memes bench --json` report on stdin:
"label rps p50 p99 max errors" (benches/before-after.sh, benches/http-before-after.sh)."""
import json
import sys

report = json.load(sys.stdin)
latency = report["latency_ms"]
print("%-8s %9.0f req/s  p50 %.2f  p99 %.2f  max %.1f ms  errors %d"
      % (sys.argv[1], report["rps"], latency["p50"], latency["p99"], latency["max"],
         report["error_total"]))
