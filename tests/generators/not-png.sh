#!/bin/sh
# A generator that answers with something that is not a PNG.
cat >/dev/null
echo "here is your meme: (pretend this is an image)"
