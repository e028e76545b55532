#!/bin/bash
for i in $(seq 1 ${1:-200}); do
  P=$(pgrep -f "bin/levee.js start" | tail -1)
  PORT=$(tr '\0' '\n' < /proc/$P/environ 2>/dev/null | grep ^PORT= | cut -d= -f2)
  m=$(curl -s -m 1 http://127.0.0.1:$PORT/metrics 2>/dev/null | grep -E "^levee_admission_(limit|in_flight|queued)|^levee_admission_rejected_total" | sed -E 's/\{[^}]*priority="([a-z]+)",reason="([a-z_]+)"[^}]*\}/_\1_\2/; s/\{[^}]*\}//' | awk '{printf "%s=%s ", $1, $2}' | sed 's/levee_admission_//g; s/rejected_total_//g')
  echo "$(date +%T.%N | cut -c1-10) $m"
  sleep 0.5
done
