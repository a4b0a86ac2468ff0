#!/usr/bin/env bash
# Regenerates the protocol's Go and Python code from plugins/proto/*.proto.
# Needs: protoc (Debian package protobuf-compiler), and
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.6
#   go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.3.0
#   pip install grpcio-tools==1.68.1   (Python stubs; scripts/py-deps.sh pins the runtime)
# The generated files are committed; run this only after editing a .proto.
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$(go env GOPATH)/bin:$PATH"
protoc -I . --go_out=rewardpb --go_opt=paths=source_relative \
  --go-grpc_out=rewardpb --go-grpc_opt=paths=source_relative reward.proto
py=../sdk/python/rlif_plugin/_pb
mkdir -p "$py"
python3 -m grpc_tools.protoc -I . --python_out="$py" --grpc_python_out="$py" reward.proto goplugin.proto
# grpc_tools writes absolute imports ("import reward_pb2"); the stubs live in a package.
sed -i -E 's/^import (reward_pb2|goplugin_pb2) as/from . import \1 as/' "$py"/*_pb2_grpc.py
touch "$py/__init__.py"
