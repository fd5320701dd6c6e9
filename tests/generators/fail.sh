#!/bin/sh
# A generator that fails: reads its request, complains, exits non-zero.
cat >/dev/null
echo "model backend unreachable" >&2
exit 3
