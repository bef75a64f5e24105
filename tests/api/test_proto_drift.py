"""The committed generated modules must match protos/: regenerate and compare."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from paysidecar.v1 import channels_pb2, payment_pb2, status_pb2, tracking_pb2

ROOT = Path(__file__).resolve().parents[2]
PROTOS = sorted((ROOT / "protos" / "paysidecar" / "v1").glob("*.proto"))


def _protoc(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", str(ROOT / "protos"), *args], check=True)


def _normalized(proto: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
    """protoc fills json_name in descriptor sets but not in generated modules."""

    def strip(messages) -> None:
        for message in messages:
            for field in message.field:
                field.ClearField("json_name")
            strip(message.nested_type)

    strip(proto.message_type)
    return proto


def test_generated_descriptors_match_protos(tmp_path):
    out = tmp_path / "set.pb"
    _protoc(f"--descriptor_set_out={out}", *map(str, PROTOS))
    fresh = {f.name: f for f in descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file}
    committed = {}
    for module in (payment_pb2, tracking_pb2, status_pb2, channels_pb2):
        proto = descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
        committed[proto.name] = proto
    assert set(committed) == set(fresh) == {f"paysidecar/v1/{p.name}" for p in PROTOS}
    for name, proto in fresh.items():
        assert _normalized(committed[name]) == _normalized(proto), f"{name} drifted from its .proto: run `make proto`"


@pytest.mark.parametrize("proto", PROTOS, ids=lambda p: p.stem)
def test_generated_stubs_match_protos(tmp_path, proto):
    _protoc(f"--grpc_python_out={tmp_path}", str(proto))
    name = f"{proto.stem}_pb2_grpc.py"
    fresh = (tmp_path / "paysidecar" / "v1" / name).read_text()
    committed = (ROOT / "paysidecar" / "v1" / name).read_text()

    def body(text: str) -> list[str]:
        # The grpcio-tools version stamp may differ between machines; the API may not.
        return [line for line in text.splitlines() if "GENERATED_VERSION" not in line and "grpc_version" not in line]

    assert body(committed) == body(fresh), f"{name} drifted from {proto.name}: run `make proto`"
