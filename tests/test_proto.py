"""The committed stubs must be what the build makes of protos/ecoserve/v1 today."""

import importlib
from pathlib import Path

from google.protobuf import descriptor_pb2
from grpc_tools import protoc

from ecoserve.proto import build


def test_stamp_matches_the_proto_sources() -> None:
    import ecoserve.proto

    assert not ecoserve.proto.REBUILT_AT_IMPORT, "stubs were stale (rebuilt at import now): commit ecoserve/proto/v1"
    assert not build.is_stale(), "protos/ecoserve/v1 changed since the stubs were built: python -m ecoserve.proto"


def test_generated_descriptors_equal_protoc_output(tmp_path: Path) -> None:
    """Independent of the stamp: compile the .proto files and compare with the committed modules."""
    out = tmp_path / "set.pb"
    assert protoc.main(["protoc", f"-I{build.PROTO_ROOT}", f"--descriptor_set_out={out}",
                        *(str(p) for p in build.proto_files())]) == 0
    fresh = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    assert sorted(f.name for f in fresh.file) == [f"ecoserve/v1/{p.name}" for p in build.proto_files()]
    for proto in fresh.file:
        _strip_json_names(proto.message_type)  # protoc adds them to descriptor sets, not to stubs
        module = importlib.import_module(f"ecoserve.proto.v1.{Path(proto.name).stem}_pb2")
        committed = descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
        assert committed == proto, f"{proto.name}: stubs are stale; run python -m ecoserve.proto"


def test_grpc_stubs_import_the_relocated_package() -> None:
    from ecoserve.proto import scheduler_pb2_grpc

    source = Path(scheduler_pb2_grpc.__file__).read_text()
    assert "from ecoserve.v1 import" not in source
    assert hasattr(scheduler_pb2_grpc, "SchedulerStub")


def _strip_json_names(messages) -> None:
    for message in messages:
        for field in message.field:
            field.ClearField("json_name")
        _strip_json_names(message.nested_type)
