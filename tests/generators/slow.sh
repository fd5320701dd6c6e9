#!/bin/sh
# A generator that takes far longer than the daemon allows.
cat >/dev/null
sleep 30
