#!/bin/bash
# usage: run.sh tag [server env]
cd /work/main
BENCH_WARMUP=5 BENCH_QUIET_WAIT=5 BENCH_CAPACITY=${CAP:-450} BENCH_LEVELS=${LEVELS:-4,8} BENCH_PROTECTION=on BENCH_STORM_PROTECTION=none BENCH_SECONDS=${SECS:-12} BENCH_RECOVERY_SECONDS=3 BENCH_DOCS=0 BENCH_SERVER_ENV="$2" timeout 600 npm run bench:overload > /tmp/rb/$1.log 2>&1
awk '/^load  *offered/{c++} c==1' /tmp/rb/$1.log | grep -E "^(load|4×|8×|2×|1×) " | head -12 | cut -c1-200
