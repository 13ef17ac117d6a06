from objvid.v1 import types_pb2 as _types_pb2
from objvid.v1 import cache_pb2 as _cache_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ViewFusion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VIEW_FUSION_UNSPECIFIED: _ClassVar[ViewFusion]
    VIEW_FUSION_SELECT: _ClassVar[ViewFusion]
    VIEW_FUSION_LATENT_MAX: _ClassVar[ViewFusion]

class GenerateStage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GENERATE_STAGE_UNSPECIFIED: _ClassVar[GenerateStage]
    GENERATE_STAGE_ENCODE: _ClassVar[GenerateStage]
    GENERATE_STAGE_DENOISE: _ClassVar[GenerateStage]
    GENERATE_STAGE_DECODE: _ClassVar[GenerateStage]
    GENERATE_STAGE_DONE: _ClassVar[GenerateStage]
VIEW_FUSION_UNSPECIFIED: ViewFusion
VIEW_FUSION_SELECT: ViewFusion
VIEW_FUSION_LATENT_MAX: ViewFusion
GENERATE_STAGE_UNSPECIFIED: GenerateStage
GENERATE_STAGE_ENCODE: GenerateStage
GENERATE_STAGE_DENOISE: GenerateStage
GENERATE_STAGE_DECODE: GenerateStage
GENERATE_STAGE_DONE: GenerateStage

class RenderSource(_message.Message):
    __slots__ = ("scene_id", "cameras", "options", "start_frame", "object_tracks")
    SCENE_ID_FIELD_NUMBER: _ClassVar[int]
    CAMERAS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    START_FRAME_FIELD_NUMBER: _ClassVar[int]
    OBJECT_TRACKS_FIELD_NUMBER: _ClassVar[int]
    scene_id: str
    cameras: _containers.RepeatedCompositeFieldContainer[_types_pb2.Camera]
    options: _cache_pb2.RenderOptions
    start_frame: int
    object_tracks: _containers.RepeatedCompositeFieldContainer[_cache_pb2.ObjectTrack]
    def __init__(self, scene_id: _Optional[str] = ..., cameras: _Optional[_Iterable[_Union[_types_pb2.Camera, _Mapping]]] = ..., options: _Optional[_Union[_cache_pb2.RenderOptions, _Mapping]] = ..., start_frame: _Optional[int] = ..., object_tracks: _Optional[_Iterable[_Union[_cache_pb2.ObjectTrack, _Mapping]]] = ...) -> None: ...

class GenerateOptions(_message.Message):
    __slots__ = ("prompt", "negative_prompt", "seed", "num_steps", "guidance", "fps", "chunk_index", "view_fusion")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    NUM_STEPS_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_INDEX_FIELD_NUMBER: _ClassVar[int]
    VIEW_FUSION_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    negative_prompt: str
    seed: int
    num_steps: int
    guidance: float
    fps: float
    chunk_index: int
    view_fusion: ViewFusion
    def __init__(self, prompt: _Optional[str] = ..., negative_prompt: _Optional[str] = ..., seed: _Optional[int] = ..., num_steps: _Optional[int] = ..., guidance: _Optional[float] = ..., fps: _Optional[float] = ..., chunk_index: _Optional[int] = ..., view_fusion: _Optional[_Union[ViewFusion, str]] = ...) -> None: ...

class GenerateProgress(_message.Message):
    __slots__ = ("step", "total", "stage", "message", "model", "preview", "status")
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    step: int
    total: int
    stage: GenerateStage
    message: str
    model: str
    preview: bool
    status: GenerateStatus
    def __init__(self, step: _Optional[int] = ..., total: _Optional[int] = ..., stage: _Optional[_Union[GenerateStage, str]] = ..., message: _Optional[str] = ..., model: _Optional[str] = ..., preview: _Optional[bool] = ..., status: _Optional[_Union[GenerateStatus, _Mapping]] = ...) -> None: ...

class GenerateStatus(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...
