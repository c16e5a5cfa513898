#!/bin/sh
# Packer's shell provisioner uploads this script (scp) and runs it with RUN_ID in its
# environment; the test reads the marker back from an instance launched from the image.
set -e
echo "script $RUN_ID as $(id -u)" > /root/from-script
